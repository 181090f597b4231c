"""Adaptive vs fixed keyframes at an equal budget (the paper's stated limitation).

For each bench item: the paper's stride (3, or 5 at >= 50 fps) sets the budget; the fixed and the adaptive picks
choose that many frames from the input video alone; the ground-truth meshes at the picked frames are interpolated
linearly over the whole clip (what the exported animation plays), and the result is scored on every frame against
the ground truth: input-view mask IoU (through the true camera) and F-score@2% of the diagonal. Using ground-truth
keyframes isolates the choice of keyframes from every other stage's error.

    python bench/keyframes.py            # all p* items -> bench/results/keyframes.json
"""

from __future__ import annotations

import datetime
import json
import platform
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from v2m4 import render as R  # noqa: E402
from v2m4.data.bench import list_items, load_item  # noqa: E402
from v2m4.metrics.geometry import fscore, sample_surface  # noqa: E402
from v2m4.metrics.image import mask_iou  # noqa: E402
from v2m4.stages.animate import interpolate  # noqa: E402
from v2m4.stages.keyframes import KeyframeConfig, adaptive_keyframes, fixed_keyframes  # noqa: E402
from v2m4.types import Mesh  # noqa: E402
from _common import BENCH_DIR  # noqa: E402


def score(item, key, ctx, n_points=3000):
    gt = item.gt_vertices.float()
    T = gt.shape[0]
    pred = interpolate(gt[key], key, T)
    mesh = Mesh(gt[0], item.faces.long())
    cams = item.camera
    with torch.no_grad():
        iou = []
        for s in range(0, T, 16):
            n = min(T, s + 16) - s
            c = type(cams)(cams.K.expand(n, 3, 3), cams.cam_from_world.expand(n, 4, 4), cams.resolution)
            m = R.render(ctx, mesh, c, channels=("mask",), vertices=pred[s: s + n])["mask"]
            iou += mask_iou(m, item.frames.mask[s: s + n]).tolist()
    diag = float((gt[0].amax(0) - gt[0].amin(0)).norm())
    g = torch.Generator().manual_seed(0)
    fs = [fscore(sample_surface(pred[t], item.faces, n_points, generator=g),
                 sample_surface(gt[t], item.faces, n_points, generator=g), 0.02 * diag) for t in range(T)]
    off = [t for t in range(T) if t not in set(key.tolist())]
    return {"mask_iou_mean": statistics.mean(iou), "mask_iou_min": min(iou),
            "fscore2_mean": statistics.mean(fs), "fscore2_min": min(fs),
            "fscore2_mean_between": statistics.mean([fs[t] for t in off]) if off else 1.0}


def main():
    ctx = R.context("torch", "cpu")
    items = [i for i in list_items(BENCH_DIR) if i.startswith("p")]
    rows = {}
    for item_id in items:
        item = load_item(item_id, resolution=(128, 128), bench_dir=BENCH_DIR)
        T = item.gt_vertices.shape[0]
        stride = KeyframeConfig().stride_for(item.frames.fps)
        fixed = fixed_keyframes(T, stride)
        adaptive = adaptive_keyframes(item.frames, len(fixed))
        r = {"frames": T, "fps": item.frames.fps, "budget": len(fixed), "adaptive_keyframes": adaptive.tolist()}
        for name, key in (("fixed", fixed), ("adaptive", adaptive)):
            for k, v in score(item, key, ctx).items():
                r[f"{name}_{k}"] = round(v, 5)
        rows[item_id] = r
        print(item_id, {k: v for k, v in r.items() if k != "adaptive_keyframes"}, flush=True)
    out = {"date": datetime.date.today().isoformat(), "machine": f"{platform.machine()} CPU", "items": rows}
    cols = ["budget", "fixed_mask_iou_mean", "adaptive_mask_iou_mean", "fixed_fscore2_mean", "adaptive_fscore2_mean",
            "fixed_fscore2_min", "adaptive_fscore2_min"]
    lines = ["| item | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for i, r in rows.items():
        lines.append(f"| {i} | " + " | ".join(f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    (ROOT / "bench" / "results" / "keyframes.json").write_text(json.dumps(out, indent=1) + "\n")
    (ROOT / "bench" / "results" / "keyframes.md").write_text(
        f"Adaptive vs fixed keyframes, ground-truth keyframes interpolated, {out['date']}\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
