"""A per-clip smoothing weight chosen by the video itself: cross-validation on the frames between keyframes.

``jitter_smoothing`` found that one temporal-smoothing weight cannot serve every clip (the jitter line needs a
weight per clip) and that an oracle's weight per clip would pass 8 of 10 items with no geometry lost. This program
tries the data-driven choice that uses only what a run has: the registered keyframe positions are smoothed in
time with the quadratic second-difference prior, the keyframes alone as data, so the smoothed trajectory predicts
every frame between them; the largest weight whose predicted in-between silhouettes (through the found video
camera) match those frames' masks (mean IoU) at least as well as the unsmoothed keyframes' is chosen: the library's
rule (``registration.smoothing.pick_weight``). The best-scoring weight is reported beside it (``argmax``), and a
frame-level variant: every frame's fitted position as data, the rule applied to half the in-betweens held out in
turn (``frame_*``). A still clip's keyframes differ only by the generator's noise, and
smoothing them costs the in-betweens nothing; a moving clip's keyframes differ by its motion, which the video
confirms between them.

Scored at the keyframes against the ground truth (as ``jitter_smoothing``): the trajectory the chosen weight gives
from the keyframes alone (``key``), and the whole registered clip smoothed at that weight (``all``, every frame's
fitted position as data). Weights are per keyframe spacing to the fourth power, as in ``jitter_smoothing``.

    python -m v2m4.bench --method full --resolution 256 --max-frames 12 --keep-runs /tmp/keep_full
    python bench/jitter_cv.py --runs /tmp/keep_full --note "kept runs of full_<commit>"
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from v2m4 import render as R  # noqa: E402
from v2m4.bench import git_commit, machine_description  # noqa: E402
from v2m4.data.bench import load_item  # noqa: E402
from v2m4.stages.camera.stage import CameraResult  # noqa: E402
from v2m4.stages.keyframes import Keyframes  # noqa: E402
from v2m4.stages.registration import RegistrationResult  # noqa: E402
from v2m4.stages.registration.smoothing import pick_weight, silhouette_iou  # noqa: E402
from _common import BENCH_DIR, write_table  # noqa: E402
from jitter_smoothing import KEEP, score  # noqa: E402

WEIGHTS = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0)
LINE = 1.2  # issue 30's jitter line: at most 1.2x the ground truth's


def item_row(args: tuple[str, str]) -> tuple[str, dict]:
    item_id, runs = args
    torch.set_num_threads(1)
    ck = Path(runs) / item_id / "run" / "checkpoints"
    reg = RegistrationResult.load(ck / "registration.npz")
    key = Keyframes.load(ck / "keyframes.json").indices.tolist()
    cam = CameraResult.load(ck / "camera.npz").video_camera
    item = load_item(item_id, resolution=tuple(cam.resolution), bench_dir=BENCH_DIR)
    y = reg.sequence.vertices.double().numpy()
    T, mesh = y.shape[0], reg.sequence.rest
    k = (key[-1] - key[0]) / max(1, len(key) - 1)
    between = [t for t in range(key[0], key[-1] + 1) if t not in key]
    masks = item.frames.rgba[between, ..., 3].float()
    D = np.diff(np.eye(T), n=2, axis=0)
    DD = D.T @ D
    W = np.diag(np.isin(np.arange(T), key).astype(float))
    ctx = R.context("torch", "cpu")
    gt, faces = item.gt_vertices[key], mesh.faces

    def iou(x):
        return float(silhouette_iou(torch.from_numpy(x[between]).float(), masks, cam, mesh, ctx, chunk=8))

    # the frame-level variant: every frame's fitted position as data, half the in-betweens held out in turn
    folds = [between[0::2], between[1::2]]
    every = item.frames.rgba[..., 3].float()

    def frame_cv(lam):
        total = 0.0
        for held in folds:  # each fold's mean, weighted by its frames: the mean over every held-out frame
            w = np.ones(T)
            w[held] = 0.0
            x = np.einsum("st,tvc->svc", np.linalg.solve(np.diag(w) + max(lam, 1e-6) * k ** 4 * DD, np.diag(w)), y)
            total += len(held) * float(silhouette_iou(torch.from_numpy(x[held]).float(), every[held], cam, mesh, ctx,
                                                      chunk=8))
        return round(total / len(between), 4)

    grid = {}
    for lam in WEIGHTS:
        # lam 0 from the keyframes alone is the interpolating limit: a tiny weight keeps the system solvable
        xk = np.einsum("st,tvc->svc", np.linalg.solve(W + max(lam, 1e-6) * k ** 4 * DD, W), y)
        xa = np.einsum("st,tvc->svc", np.linalg.inv(np.eye(T) + lam * k ** 4 * DD), y)
        grid[str(lam)] = {"cv_iou": round(iou(xk), 4), "key": score(xk[key], faces, gt, item.faces),
                          "all": score(xa[key], faces, gt, item.faces), "frame_cv_iou": frame_cv(lam)}
    chosen = str(pick_weight(WEIGHTS, tuple(grid[str(w)]["cv_iou"] for w in WEIGHTS)))
    best = max(grid, key=lambda s: grid[s]["cv_iou"])
    frame = str(pick_weight(WEIGHTS, tuple(grid[str(w)]["frame_cv_iou"] for w in WEIGHTS)))
    return item_id, {"fit_between_iou": round(iou(y), 4), "grid": grid, "chosen": float(chosen),
                     "key": grid[chosen]["key"], "all": grid[chosen]["all"], "unsmoothed": grid["0.0"]["all"],
                     "argmax": float(best), "argmax_key": grid[best]["key"],
                     "frame_chosen": float(frame), "frame_all": grid[frame]["all"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", required=True, help="a --keep-runs folder of `python -m v2m4.bench --method full`")
    ap.add_argument("--items", nargs="*", default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--note", default="", help="what the kept runs are (their table, commit)")
    a = ap.parse_args()
    runs = Path(a.runs)
    items = a.items or sorted(p.name for p in runs.iterdir() if (p / "run" / "checkpoints").is_dir())
    with ProcessPoolExecutor(a.workers) as ex:
        table = dict(ex.map(item_row, [(i, str(runs)) for i in items]))

    def tally(kind: str) -> dict:
        passed = [i for i, r in table.items() if r[kind]["jitter_ratio"] <= LINE]
        lost = [i for i, r in table.items()
                if r[kind]["fscore2_once"] < r["unsmoothed"]["fscore2_once"] - KEEP]
        return {"passed": len(passed), "passed_items": passed, "lost_geometry": lost}

    summary = {k: tally(k) for k in ("unsmoothed", "key", "all", "argmax_key", "frame_all")}
    out = {"date": datetime.date.today().isoformat(), "machine": machine_description("cpu"), "commit": git_commit(),
           "note": a.note, "weights": WEIGHTS, "summary": summary, "items": table}
    lines = [f"**jitter_cv** (bench/jitter_cv.py) on {out['machine']}, {out['date']}, commit {out['commit']}; "
             f"{a.note}. The largest weight whose keyframe-only smoothing predicts the in-between frames' masks "
             "(mean IoU) as well as none does (the library's rule), and the best-scoring one (argmax); jitter "
             "(x the ground truth's) / F@2% once-aligned at the keyframes. Frame-level variant: every frame's fit "
             "smoothed as data, the weight chosen by the same rule on half the in-betweens held out in turn (two "
             "folds), scored as `all`.", "",
             "| item | IoU between (fit) | IoU between, weight 0 / chosen | chosen weight | unsmoothed | key | all | "
             "argmax weight | argmax, key | frame-level weight | frame-level, all |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for i, r in table.items():
        c = r["grid"][str(r["chosen"])]["cv_iou"]
        cells = [f"{r[k]['jitter_ratio']:.2f}x / {r[k]['fscore2_once']:.3f}" for k in ("unsmoothed", "key", "all")]
        lines.append(f"| {i} | {r['fit_between_iou']:.3f} | {r['grid']['0.0']['cv_iou']:.4f} / {c:.4f} | "
                     f"{r['chosen']:g} | " + " | ".join(cells) + f" | {r['argmax']:g} | "
                     f"{r['argmax_key']['jitter_ratio']:.2f}x / {r['argmax_key']['fscore2_once']:.3f} | "
                     f"{r['frame_chosen']:g} | {r['frame_all']['jitter_ratio']:.2f}x / "
                     f"{r['frame_all']['fscore2_once']:.3f} |")
    lines += ["", "| trajectory | items within 1.2x | items losing more than 0.01 of F@2% |", "|---|---|---|"]
    for k, s in summary.items():
        lines.append(f"| {k} | {s['passed']} ({', '.join(x[:3] for x in s['passed_items'])}) | "
                     f"{', '.join(x[:3] for x in s['lost_geometry']) or 'none'} |")
    lines.append(f"\nMedian chosen weight {statistics.median(r['chosen'] for r in table.values()):g}.")
    write_table("jitter_cv", out, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
