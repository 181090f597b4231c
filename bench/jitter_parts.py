"""Where the registered keyframes' jitter comes from: the whole body's pose from keyframe to keyframe, or its shape.

For each run kept by ``python -m v2m4.bench --method full --keep-runs DIR``, the registered sequence at the
keyframes the bench scores is taken as the ``jitter`` column takes it (vertices once-aligned to the ground truth at
the first keyframe, the mean norm of their second difference over the keyframes, in units of the ground truth's
first-frame diagonal), and again with every keyframe aligned to its own ground-truth frame (a similarity per
keyframe, as ``fscore2_per_frame`` aligns): what is left then is the jitter of the shape, and the difference is the
rigid pose's from keyframe to keyframe (the generated meshes' found poses, which the fit follows).

    python -m v2m4.bench --method full --items p04_riggedfigure --keep-runs runs/   # then:
    python bench/jitter_parts.py --runs runs/
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from v2m4.bench import git_commit, machine_description  # noqa: E402
from v2m4.data.bench import load_item  # noqa: E402
from v2m4.metrics import geometry as G  # noqa: E402
from v2m4.stages.keyframes import Keyframes  # noqa: E402
from v2m4.stages.registration import RegistrationResult  # noqa: E402
from _common import write_table  # noqa: E402


def parts(run: Path, item_id: str, bench_dir: str | None, n_points: int = 5000, seed: int = 0) -> dict:
    ck = run / "run" / "checkpoints" if (run / "run").exists() else run / "checkpoints"
    reg = RegistrationResult.load(ck / "registration.npz")
    key = Keyframes.load(ck / "keyframes.json").indices.tolist()
    item = load_item(item_id, bench_dir=bench_dir)
    gt = item.gt_vertices[key].float()
    verts = reg.sequence.vertices[key].float()
    faces = reg.sequence.rest.faces
    _, once = G.sequence_geometry(list(verts), [faces] * len(key), gt, item.faces, n_points=n_points, seed=seed,
                                  per_frame=False)
    diag = float((gt[0].max(0).values - gt[0].min(0).values).norm())
    g = torch.Generator().manual_seed(seed)
    per = []
    for t in range(len(key)):
        src = G.sample_surface(verts[t] / diag, faces, n_points, generator=g)
        dst = G.sample_surface(gt[t] / diag, item.faces, n_points, generator=g)
        T = G.align_similarity(src, dst, generator=g)
        per.append(G.apply(T, verts[t].double() / diag))
    j_gt = G.vertex_jitter(gt / diag)
    j_once = G.vertex_jitter(torch.stack([G.apply(once, v.double()) for v in verts]) / diag)
    j_per = G.vertex_jitter(torch.stack(per))
    return {"keyframes": len(key), "jitter_gt": round(j_gt, 6), "jitter": round(j_once, 6),
            "jitter_per_frame_aligned": round(j_per, 6), "ratio": round(j_once / j_gt, 2),
            "ratio_per_frame_aligned": round(j_per / j_gt, 2),
            "pose_share": round(1 - j_per / j_once, 3) if j_once > 0 else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", required=True, help="a --keep-runs folder of `python -m v2m4.bench --method full`")
    ap.add_argument("--bench-dir", default=None)
    ap.add_argument("--name", default="jitter_parts")
    ap.add_argument("--note", default="")
    a = ap.parse_args()
    rows = {}
    for run in sorted(p for p in Path(a.runs).iterdir() if p.is_dir()):
        rows[run.name] = parts(run, run.name, a.bench_dir)
        print(run.name, rows[run.name], flush=True)
    out = {"program": "bench/jitter_parts.py", "date": datetime.date.today().isoformat(),
           "machine": machine_description("cpu"), "commit": git_commit(), "runs": str(a.runs), "note": a.note,
           "items": rows}
    lines = [f"**jitter parts** of kept `full` runs, {out['date']}, commit {out['commit']}: the keyframes' jitter "
             "once-aligned (the bench's column) and with each keyframe aligned to its own ground-truth frame; "
             "ratios to the ground truth's\n",
             "| item | keyframes | jitter / gt | per-frame aligned / gt | pose share |", "|---|---|---|---|---|"]
    for k, r in rows.items():
        lines.append(f"| {k} | {r['keyframes']} | {r['ratio']} | {r['ratio_per_frame_aligned']} | {r['pose_share']} |")
    write_table(a.name, out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
