"""How a registered clip moves in the image against how the video moves: each visible vertex's motion from one
frame to the next, through the fixed video camera, against the video's optical flow at its pixel.

The silhouettes and the keyframes' targets fix the surface, not which point of the object each vertex is; a fit
may slide its vertices along the surface from frame to frame and no silhouette changes. The video's flow sees that
sliding wherever the object is textured. The ground truth's own vertices, through the true camera, give the flow's
accuracy (what the figure would be for a clip that moves exactly as the object does). Median over visible vertices
of the pixel distance, median over frame pairs; the flow and visibility are the library's (``registration.flow``).

    python bench/flow_agreement.py --runs /tmp/keep_full [--runs /tmp/keep_other ...] --note "..."
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from v2m4 import render as R  # noqa: E402
from v2m4.bench import git_commit, machine_description  # noqa: E402
from v2m4.camera import Camera  # noqa: E402
from v2m4.data.bench import list_items, load_item  # noqa: E402
from v2m4.stages.camera.stage import CameraResult  # noqa: E402
from v2m4.stages.registration import RegistrationResult  # noqa: E402
from v2m4.stages.registration.flow import video_flow, visible_vertices  # noqa: E402
from v2m4.types import Mesh  # noqa: E402
from _common import write_table  # noqa: E402

CTX = R.context("torch", "cpu")


def disagreement(x: torch.Tensor, faces: torch.Tensor, camera: Camera, flow) -> dict:
    """Median pixel distance between the image motion of positions x (T, V, 3) and the flow, over the vertices
    visible in both frames where the flow is reliable, median over frame pairs; and the median image motion."""
    T = x.shape[0]
    cams = Camera(camera.K.expand(T, 3, 3), camera.cam_from_world.expand(T, 4, 4), camera.resolution)
    seen = visible_vertices(CTX, Mesh(x[0], faces), cams, x)
    pix, _ = cams.project(x)
    H, W = camera.resolution
    per_pair, motion = [], []
    for t in range(T - 1):
        p = pix[t]
        u, v = p[:, 0].floor().long().clamp(0, W - 1), p[:, 1].floor().long().clamp(0, H - 1)
        ok = seen[t] & seen[t + 1] & flow.reliable[t][v, u]
        if int(ok.sum()) < 10:
            continue
        step = pix[t + 1][ok] - p[ok]
        per_pair.append(float((step - flow.forward[t][v[ok], u[ok]]).norm(dim=-1).median()))
        motion.append(float(step.norm(dim=-1).median()))
    med = torch.tensor(per_pair).median() if per_pair else torch.tensor(float("nan"))
    return {"px": round(float(med), 3), "motion_px": round(float(torch.tensor(motion).median()), 3) if motion
            else None, "pairs": len(per_pair)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", action="append", required=True, help="a --keep-runs folder of `v2m4.bench --method "
                    "full` (repeat for several; each becomes a column)")
    ap.add_argument("--labels", default=None, help="comma-separated column names for the --runs folders")
    ap.add_argument("--items", default=None)
    ap.add_argument("--bench-dir", default=None)
    ap.add_argument("--name", default="flow_agreement")
    ap.add_argument("--note", default="")
    a = ap.parse_args()
    labels = a.labels.split(",") if a.labels else [Path(r).name for r in a.runs]
    rows = {}
    for item_id in a.items.split(",") if a.items else list_items(a.bench_dir):
        row, flow = {}, None
        for label, runs in zip(labels, a.runs):
            ck = Path(runs) / item_id / "run" / "checkpoints"
            if not (ck / "registration.npz").is_file():
                continue
            cam = CameraResult.load(ck / "camera.npz").video_camera
            if flow is None:
                item = load_item(item_id, bench_dir=a.bench_dir, resolution=tuple(cam.resolution))
                flow = video_flow(item.frames.rgba)
                truth = disagreement(item.gt_vertices.float(), item.faces, item.camera, flow)
                row["ground truth"] = truth
            reg = RegistrationResult.load(ck / "registration.npz")
            row[label] = disagreement(reg.sequence.vertices.float(), reg.sequence.rest.faces, cam, flow)
        if row:
            rows[item_id] = row
            print(item_id, row, flush=True)
    out = {"program": "bench/flow_agreement.py", "commit": git_commit(), "machine": machine_description("cpu"),
           "date": datetime.date.today().isoformat(), "runs": dict(zip(labels, a.runs)), "note": a.note,
           "items": rows}
    cols = ["ground truth", *labels]
    lines = [f"**flow_agreement** (bench/flow_agreement.py) on {out['machine']}, {out['date']}, commit "
             f"{out['commit']}; {a.note}. Cells: median pixel distance between each visible vertex's image motion "
             "and the video's flow (median over frame pairs), and the median image motion in pixels; the ground "
             "truth's row measures the flow's own error", "",
             "| item | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for item_id, row in rows.items():
        lines.append(f"| {item_id} | " + " | ".join(f"{row[c]['px']:.2f} px (moves {row[c]['motion_px']:.2f})"
                                                     if c in row else "n/a" for c in cols) + " |")
    write_table(a.name, out, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
