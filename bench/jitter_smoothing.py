"""What a temporal smoothness prior can do against the generator's shape noise: the ground truth itself, at its true
poses and with its own topology, carrying the synthetic generator's per-frame shape noise, smoothed over time.

The bench's `jitter` column asks for at most 1.2x the ground truth's jitter. Each generated mesh carries a smooth
random displacement drawn anew for every frame (``SyntheticGenerator.shape_noise``, 0.01 of the object's size), and
a fit that follows its keyframe meshes follows that noise. This program takes the most favourable case for a
smoothness prior: the true surface with the same vertices at every frame, no pose error, no remeshing, only the
noise, and smooths every vertex's trajectory with the quadratic prior the registration's temporal term uses,

    x = argmin  sum_t |x_t - y_t|^2 + lam * sum_t |x_{t+1} - 2 x_t + x_{t-1}|^2     (one T x T solve),

for a grid of weights lam; with the weight generalised cross-validation picks from the sequence alone (the usual
data-driven choice); and with the weight an oracle picks per item (the least jitter whose F-score@2% once-aligned
stays within 0.01 of the unsmoothed sequence's). It reports the jitter against the ground truth's, and the
F-score@2% once-aligned (as the bench scores it). `motion` is the video's silhouette change per frame (pixels that
change between consecutive frames' masks over the mask's area, median over the clip): what a method sees of how
much the object moves.

    python bench/jitter_smoothing.py [--items p01_fox_walk,...] [--frames 12]
"""

from __future__ import annotations

import argparse
import datetime
import sys

from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from v2m4.bench import BenchSettings, git_commit, load_selected_item, machine_description, synthetic_generator  # noqa: E402
from v2m4.data.bench import list_items  # noqa: E402
from v2m4.metrics import geometry as G  # noqa: E402
from _common import write_table  # noqa: E402

WEIGHTS = (0.0, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0)
KEEP = 0.01  # the geometry a smoothing may cost: the acceptance's own margin on F-score@2%


def smoother(T: int, lam: float) -> np.ndarray:
    """(T, T) hat matrix of the quadratic second-difference prior: x = H y."""
    D = np.zeros((max(T - 2, 0), T))
    for i in range(T - 2):
        D[i, i:i + 3] = (1.0, -2.0, 1.0)
    return np.linalg.inv(np.eye(T) + lam * D.T @ D)


def noisy_truth(item, gen) -> np.ndarray:
    """(T, V, 3) the ground truth with the generator's shape noise of each frame, at its true pose (world units)."""
    out = []
    for t, v in enumerate(item.gt_vertices.double().numpy()):
        M = gen.removed_transform(t).double().numpy()  # canonical_from_world
        c = v @ M[:3, :3].T + M[:3, 3]
        c = c + gen.shape_noise(c, t)
        out.append((c - M[:3, 3]) @ np.linalg.inv(M[:3, :3]).T)
    return np.stack(out)


def silhouette_motion(item) -> float:
    m = item.frames.rgba[..., 3].float() > 0.5
    change = (m[1:] != m[:-1]).float().sum((1, 2)) / m[:-1].float().sum((1, 2)).clamp_min(1)
    return float(change.median())


def score(item, y: np.ndarray, lam: float, diag: float, j_gt: float) -> dict:
    T = y.shape[0]
    x = np.einsum("st,tvc->svc", smoother(T, lam), y)
    s, _ = G.sequence_geometry([torch.from_numpy(v).float() for v in x], [item.faces] * T,
                               item.gt_vertices.float(), item.faces, per_frame=False)
    j = G.vertex_jitter(torch.from_numpy(x / diag))
    return {"jitter_ratio": round(j / j_gt, 3), "fscore2_once": round(s["fscore2_once"], 4)}


def gcv_weight(y: np.ndarray) -> float:
    """The weight of WEIGHTS (> 0) with the least generalised cross-validation score, mean squared residual over
    (1 - tr(H) / T)^2, every vertex's coordinates pooled."""
    T, best = y.shape[0], None
    for lam in WEIGHTS[1:]:
        H = smoother(T, lam)
        r = np.einsum("st,tvc->svc", H, y) - y
        v = float((r ** 2).mean()) / (1 - np.trace(H) / T) ** 2
        if best is None or v < best[0]:
            best = (v, lam)
    return best[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", default=None, help="comma-separated item ids (default: every item)")
    ap.add_argument("--frames", type=int, default=12, help="frames evenly spread over each clip (the bench's 12)")
    ap.add_argument("--name", default="jitter_smoothing")
    a = ap.parse_args()
    items = a.items.split(",") if a.items else list_items()
    rows = {}
    for item_id in items:
        item = load_selected_item(item_id, a.frames, 128)
        gen = synthetic_generator(item, BenchSettings(method="true_pose", items=(item_id,), max_frames=a.frames))
        gt = item.gt_vertices.double()
        diag = float((gt[0].max(0).values - gt[0].min(0).values).norm())
        j_gt = G.vertex_jitter(gt / diag)
        y = noisy_truth(item, gen)
        grid = {str(lam): score(item, y, lam, diag, j_gt) for lam in WEIGHTS}
        f0 = grid["0.0"]["fscore2_once"]
        kept = [k for k, r in grid.items() if r["fscore2_once"] >= f0 - KEEP]
        oracle = min(kept, key=lambda k: grid[k]["jitter_ratio"])
        gcv = gcv_weight(y)
        rows[item_id] = {"jitter_gt": round(j_gt, 5), "motion": round(silhouette_motion(item), 3), "grid": grid,
                         "gcv_weight": gcv, "gcv": score(item, y, gcv, diag, j_gt), "oracle_weight": float(oracle),
                         "oracle": grid[oracle]}
        print(item_id, rows[item_id], flush=True)

    def tally(get) -> dict:
        rs = [get(k) for k in rows]
        return {"jitter_pass": sum(r["jitter_ratio"] <= 1.2 for r in rs),
                "geometry_lost": [k for k, r in zip(rows, rs) if r["fscore2_once"] < rows[k]["grid"]["0.0"]
                                  ["fscore2_once"] - KEEP]}

    summary = {str(lam): tally(lambda k, lam=lam: rows[k]["grid"][str(lam)]) for lam in WEIGHTS}
    summary["gcv"] = tally(lambda k: rows[k]["gcv"])
    summary["oracle"] = tally(lambda k: rows[k]["oracle"])
    out = {"program": "bench/jitter_smoothing.py", "date": datetime.date.today().isoformat(),
           "machine": machine_description("cpu"), "commit": git_commit(), "frames": a.frames,
           "weights": list(WEIGHTS), "keep": KEEP, "summary": summary, "items": rows}
    lines = [f"**jitter smoothing**: the ground truth with the synthetic generator's per-frame shape noise at its true "
             f"poses, every vertex's trajectory smoothed by the quadratic second-difference prior of weight lam; "
             f"{a.frames} frames evenly spread; {out['date']}, commit {out['commit']}. Cells: jitter / the ground "
             f"truth's, F-score@2% once-aligned\n",
             "| item | gt jitter | motion | " + " | ".join(f"lam {w:g}" for w in WEIGHTS) + " | GCV | oracle |",
             "|---" * (len(WEIGHTS) + 5) + "|"]
    for k, r in rows.items():
        cells = [f"{c['jitter_ratio']:.2f}x, {c['fscore2_once']:.3f}" for c in r["grid"].values()]
        lines.append(f"| {k} | {r['jitter_gt']:.4f} | {r['motion']:.3f} | " + " | ".join(cells) +
                     f" | {r['gcv']['jitter_ratio']:.2f}x, {r['gcv']['fscore2_once']:.3f} (lam {r['gcv_weight']:g}) "
                     f"| {r['oracle']['jitter_ratio']:.2f}x, {r['oracle']['fscore2_once']:.3f} "
                     f"(lam {r['oracle_weight']:g}) |")
    cells = [f"{s['jitter_pass']}/{len(rows)}; {len(s['geometry_lost'])} lose > {KEEP}" for s in summary.values()]
    lines.append("| **jitter <= 1.2x; items whose F@2% falls by more than 0.01** | | | " + " | ".join(cells) + " |")
    write_table(a.name, out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
