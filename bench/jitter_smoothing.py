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

With ``--runs``, the registered sequences of kept ``full`` runs are smoothed the same way after the fit (the
output's own noise: the generator's, the found poses', the fit's) and scored at their keyframes, also at a weight
each run's own evidence gives (``video_weight``: the generated meshes' silhouette disagreement with the video, squared,
over the video's own second difference, squared: the ratio of noise to motion variance a smoothing spline wants).

    python bench/jitter_smoothing.py [--items p01_fox_walk,...] [--frames 12] [--runs runs/]
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

from v2m4 import render as R  # noqa: E402
from v2m4.bench import (BenchSettings, git_commit, load_selected_item, machine_description,  # noqa: E402
                        synthetic_generator)
from v2m4.data.bench import list_items, load_item  # noqa: E402
from v2m4.metrics import geometry as G  # noqa: E402
from v2m4.stages.camera.stage import CameraResult  # noqa: E402
from v2m4.stages.keyframes import Keyframes  # noqa: E402
from v2m4.stages.registration import RegistrationResult  # noqa: E402
from v2m4.types import Mesh  # noqa: E402
from _common import write_table  # noqa: E402

WEIGHTS = (0.0, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0)
KEEP = 0.01  # the geometry a smoothing may cost: the acceptance's own margin on F-score@2%


def smoother(T: int, lam: float) -> np.ndarray:
    """(T, T) hat matrix of the quadratic second-difference prior: x = H y."""
    D = np.diff(np.eye(T), n=2, axis=0)  # rows (1, -2, 1): the second difference
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


def score(x: np.ndarray, faces, gt: torch.Tensor, gt_faces) -> dict:
    """Jitter against the ground truth's and F-score@2% once-aligned (the bench's columns) of positions x (T, V, 3)
    with faces against the ground truth gt (T, V', 3) at the same frames."""
    s, _ = G.sequence_geometry([torch.from_numpy(v).float() for v in x], [faces] * len(x), gt.float(), gt_faces,
                               per_frame=False)
    return {"jitter_ratio": round(s["jitter"] / s["jitter_gt"], 3), "fscore2_once": round(s["fscore2_once"], 4)}


def weigh(smoothed, faces, gt: torch.Tensor, gt_faces) -> dict:
    """The grid of weights and the oracle's choice: smoothed(lam) -> positions (T, V, 3) at gt's frames."""
    grid = {str(lam): score(smoothed(lam), faces, gt, gt_faces) for lam in WEIGHTS}
    f0 = grid["0.0"]["fscore2_once"]
    kept = [k for k, r in grid.items() if r["fscore2_once"] >= f0 - KEEP]
    oracle = min(kept, key=lambda k: grid[k]["jitter_ratio"])
    return {"grid": grid, "oracle_weight": float(oracle), "oracle": grid[oracle]}


def kept_run(folder: Path, item_id: str, bench_dir) -> dict | None:
    """The registered sequence of a kept ``full`` run, every frame's trajectory smoothed (lam scaled by the keyframes'
    spacing to the fourth power, so that lam acts at the keyframes as on the noisy truth) and scored at the
    keyframes, as ``jitter_parts`` takes it (the registered mesh, before its atlas splits it)."""
    ck = folder / item_id / "run" / "checkpoints"
    if not (ck / "registration.npz").is_file():
        return None
    reg = RegistrationResult.load(ck / "registration.npz")
    key = Keyframes.load(ck / "keyframes.json").indices.tolist()
    item = load_item(item_id, bench_dir=bench_dir)
    y = reg.sequence.vertices.double().numpy()
    k = (key[-1] - key[0]) / max(1, len(key) - 1)

    def smoothed(lam):
        return np.einsum("st,tvc->svc", smoother(y.shape[0], lam * k ** 4), y)[key]

    row = weigh(smoothed, reg.sequence.rest.faces, item.gt_vertices[key], item.faces)
    row["video_weight"] = video_weight(ck, key, item_id, bench_dir)
    row["video"] = score(smoothed(row["video_weight"]), reg.sequence.rest.faces, item.gt_vertices[key], item.faces)
    return row


def _perimeter(m: torch.Tensor) -> torch.Tensor:
    """(K,) boundary length in pixels of binary masks m (K, H, W)."""
    return (m[:, 1:] != m[:, :-1]).sum((1, 2)) + (m[:, :, 1:] != m[:, :, :-1]).sum((1, 2))


def video_weight(ck: Path, key: list[int], item_id: str, bench_dir) -> float:
    """A per-clip weight from what a run sees, (noise / motion)^2 in boundary pixels: the noise, each generated
    mesh's silhouette under its found camera against its frame's mask; the motion, each frame's mask against the
    midpoint of its neighbours' (the silhouettes' second difference). Both as the area between the two silhouettes
    over the mask's perimeter, mean squared over the keyframes."""
    cam = CameraResult.load(ck / "camera.npz")
    item = load_item(item_id, frames=key, resolution=tuple(cam.cameras.resolution), bench_dir=bench_dir)
    video = item.frames.rgba[..., 3] > 0.5
    meshes = []
    for k in key:
        d = np.load(ck / f"gen_{k:05d}.npz")
        meshes.append(Mesh(torch.as_tensor(d["vertices"]).float(), torch.as_tensor(d["faces"]).long()))
    seen = R.render_each(R.context("torch", "cpu"), meshes, cam.cameras, channels=("mask",))["mask"] > 0.5
    per = _perimeter(video).clamp_min(1).double()
    noise = (seen != video).sum((1, 2)) / per
    mid = (video[:-2].double() + video[2:].double()) / 2
    motion = (video[1:-1].double() - mid).abs().sum((1, 2)) / per[1:-1]
    return round(float((noise ** 2).mean() / (motion ** 2).mean().clamp_min(1e-6)), 4)


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
    ap.add_argument("--runs", default=None, help="a --keep-runs folder of `python -m v2m4.bench --method full`: "
                    "its registered sequences smoothed and scored too")
    ap.add_argument("--bench-dir", default=None)
    ap.add_argument("--name", default="jitter_smoothing")
    ap.add_argument("--note", default="", help="what the kept runs are (their table, commit)")
    a = ap.parse_args()
    items = a.items.split(",") if a.items else list_items()
    rows, runs = {}, {}
    for item_id in items:
        item = load_selected_item(item_id, a.frames, 128)
        gen = synthetic_generator(item, BenchSettings(method="true_pose", items=(item_id,), max_frames=a.frames))
        y = noisy_truth(item, gen)

        def smoothed(lam, y=y):
            return np.einsum("st,tvc->svc", smoother(y.shape[0], lam), y)

        row = weigh(smoothed, item.faces, item.gt_vertices, item.faces)
        gt = item.gt_vertices.double()
        diag = float((gt[0].max(0).values - gt[0].min(0).values).norm())
        gcv = gcv_weight(y)
        rows[item_id] = {"jitter_gt": round(G.vertex_jitter(gt / diag), 5), "motion": round(silhouette_motion(item), 3),
                         **row, "gcv_weight": gcv, "gcv": score(smoothed(gcv), item.faces, item.gt_vertices,
                                                                item.faces)}
        print(item_id, rows[item_id], flush=True)
        if a.runs:
            run = kept_run(Path(a.runs), item_id, a.bench_dir)
            if run is not None:
                runs[item_id] = run
                print(item_id, "kept run", run, flush=True)

    def tally(table, get) -> dict:
        rs = [get(table[k]) for k in table]
        return {"jitter_pass": sum(r["jitter_ratio"] <= 1.2 for r in rs),
                "geometry_lost": [k for k, r in zip(table, rs) if r["fscore2_once"] < table[k]["grid"]["0.0"]
                                  ["fscore2_once"] - KEEP]}

    def summarise(table) -> dict:
        out = {str(lam): tally(table, lambda r, lam=lam: r["grid"][str(lam)]) for lam in WEIGHTS}
        if all("gcv" in r for r in table.values()):
            out["gcv"] = tally(table, lambda r: r["gcv"])
        if all("video" in r for r in table.values()):
            out["video"] = tally(table, lambda r: r["video"])
        out["oracle"] = tally(table, lambda r: r["oracle"])
        return out

    summary = summarise(rows)
    out = {"program": "bench/jitter_smoothing.py", "date": datetime.date.today().isoformat(),
           "machine": machine_description("cpu"), "commit": git_commit(), "frames": a.frames,
           "note": a.note, "weights": list(WEIGHTS), "keep": KEEP, "summary": summary, "items": rows, "runs": a.runs,
           "runs_summary": summarise(runs) if runs else None, "run_items": runs}
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
    total = "| **jitter <= 1.2x; items whose F@2% falls by more than 0.01** | | | "
    lines.append(total + " | ".join(f"{s['jitter_pass']}/{len(rows)}; {len(s['geometry_lost'])} lose > {KEEP}"
                                     for s in summary.values()) + " |")
    if runs:
        lines += ["", f"The same smoothing applied to the registered sequences of the kept `full` runs in `{a.runs}` "
                  f"({a.note or 'runs of no stated table'}) "
                  "(every frame of the clip, lam times the keyframes' spacing to the fourth power), scored at the "
                  "keyframes; no cross-validation column (the output's noise is not the generator's alone)\n",
                  "| item | " + " | ".join(f"lam {w:g}" for w in WEIGHTS) + " | the video's weight | oracle |",
                  "|---" * (len(WEIGHTS) + 3) + "|"]
        for k, r in runs.items():
            lines.append(f"| {k} | " + " | ".join(f"{c['jitter_ratio']:.2f}x, {c['fscore2_once']:.3f}"
                                                   for c in r["grid"].values()) +
                         f" | {r['video']['jitter_ratio']:.2f}x, {r['video']['fscore2_once']:.3f} "
                         f"(lam {r['video_weight']:g}) | {r['oracle']['jitter_ratio']:.2f}x, "
                         f"{r['oracle']['fscore2_once']:.3f} "
                         f"(lam {r['oracle_weight']:g}) |")
        rs = out["runs_summary"]
        lines.append("| **jitter <= 1.2x; F@2% down by more than 0.01** | " + " | ".join(
            f"{s['jitter_pass']}/{len(runs)}; {len(s['geometry_lost'])} lose" for s in rs.values()) + " |")
    write_table(a.name, out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
