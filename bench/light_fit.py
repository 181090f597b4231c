"""How well the texture stage's fitted light matches the light the frames were rendered under, per bench item.

Claim measured: the light fitted against the generated appearance (``stages.lighting.fit_light``, kept in a
`full` run's texture checkpoint) is close to the light the ground truth's own base colour and normals give, on
the normals the camera sees; dividing the frames by it at the ground truth's normals takes them close to the
base colour. So where the texture stage's base colour falls short, what falls short is our surface's normals
(where the light is divided out), not the light.

For each item: the light fitted the same way from the ground truth (its base colour and normals through the true
camera, 9 frames evenly spread); the two lights' shadings compared over camera-facing normals (RMS difference as
a share of the truth's mean there); the frames divided by each light at the ground truth's normals, against the
base colour (PSNR over pixels both cover fully), beside the frames as they are; and the SH model's own fit of the
frames (the ground truth relit by its light).

    python -m v2m4.bench --method full --resolution 256 --max-frames 12 --keep-runs /tmp/keep_full
    python bench/light_fit.py --keep /tmp/keep_full
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import BENCH_DIR, write_table  # noqa: E402
from v2m4 import render as R  # noqa: E402
from v2m4.bench import git_commit, machine_description  # noqa: E402
from v2m4.data.bench import load_item, render_ground_truth  # noqa: E402
from v2m4.metrics.image import masked_psnr  # noqa: E402
from v2m4.stages.lighting import fit_light, relight, shading, unlight  # noqa: E402
from v2m4.stages.texture import TextureResult  # noqa: E402
from v2m4.types import Mesh  # noqa: E402



def item_row(item_id: str, keep: Path, resolution: int, frames: int) -> dict:
    ctx = R.context("torch", "cpu")
    it = load_item(item_id, bench_dir=BENCH_DIR, resolution=(resolution, resolution))
    T = len(it.gt_vertices)
    sel = sorted(set(np.linspace(0, T - 1, frames).round().astype(int).tolist()))
    gts, nrms = [], []
    with torch.no_grad():
        for t in sel:
            rgb, mask = render_ground_truth(it, it.gt_vertices[t], it.camera, ctx)
            nrms.append(R.render(ctx, Mesh(it.gt_vertices[t], it.faces), it.camera, channels=("normal",))["normal"])
            gts.append(torch.cat([rgb, mask[..., None]], -1))
    gt, nrm, fr = torch.cat(gts), torch.cat(nrms), it.frames.rgba[sel]
    light_gt = fit_light(fr, gt, nrm)
    run = keep / item_id / "run" / "checkpoints"
    light_fit = TextureResult.load(run / "texture.npz").light
    # the two lights live in different world frames (the truth's, the run's): compare them on camera-frame normals
    ours = np.load(run / "camera.npz")
    E_ours = torch.as_tensor(ours["cam_from_world"], dtype=torch.float32).reshape(-1, 4, 4)[0]
    E_gt = it.camera.cam_from_world[0]
    dirs = torch.nn.functional.normalize(torch.randn(20000, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    facing = dirs[dirs[:, 2] > 0.2]  # normals turned towards the camera (OpenGL: it looks down -z)
    s_gt, s_fit = shading(facing @ E_gt[:3, :3], light_gt), shading(facing @ E_ours[:3, :3], light_fit)
    inner = ((fr[..., 3] > 0.99) & (gt[..., 3] > 0.99)).float()

    def psnr(img):
        return round(float(masked_psnr(img, gt[..., :3], inner).median()), 2)

    return {"frames": sel,
            "light_rms_diff_facing": round(float(((s_fit - s_gt) ** 2).mean().sqrt() / s_gt.mean()), 4),
            "sh_model_psnr": round(float(masked_psnr(relight(gt[..., :3], nrm, light_gt), fr[..., :3], inner).median()),
                                   2),
            "frames_psnr": psnr(fr[..., :3]),
            "unlit_true_light_psnr": psnr(unlight(fr[..., :3], nrm, light_gt)),
            "unlit_fitted_light_psnr": psnr(unlight(fr[..., :3], nrm, light_fit))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", required=True, help="kept runs of a `full` table (its --keep-runs folder)")
    ap.add_argument("--items", nargs="*", default=None)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--name", default="light_fit")
    a = ap.parse_args()
    torch.set_num_threads(1)
    keep = Path(a.keep)
    items = a.items or sorted(p.name for p in keep.iterdir() if (p / "run" / "checkpoints" / "texture.npz").is_file())
    rows = {}
    for i in items:
        rows[i] = item_row(i, keep, a.resolution, a.frames)
        print(i, rows[i], file=sys.stderr, flush=True)
    out = {"program": "bench/light_fit.py", "date": datetime.date.today().isoformat(),
           "machine": machine_description("cpu"), "commit": git_commit(), "kept_runs": str(keep),
           "resolution": a.resolution, "items": rows}
    cols = ("light_rms_diff_facing", "sh_model_psnr", "frames_psnr", "unlit_true_light_psnr", "unlit_fitted_light_psnr")
    lines = [f"**light fit** on {out['machine']}, {out['date']}, commit {out['commit']}; kept runs {keep.name}; PSNR "
             "against the ground truth's base colour (dB) over pixels both cover fully, the truth's normals\n",
             "| item | fitted vs true light (RMS, camera-facing) | SH model of the frames | frames as they are | "
             "divided by the true light | divided by the fitted light |", "|---|---|---|---|---|---|"]
    for i, r in rows.items():
        lines.append(f"| {i} | " + " | ".join(f"{r[c]}" for c in cols) + " |")
    lines.append("| median | " + " | ".join(f"{statistics.median(r[c] for r in rows.values()):.4g}" for c in cols)
                 + " |")
    write_table(a.name, out, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
