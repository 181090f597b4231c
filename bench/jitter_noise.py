"""Temporal smoothing at the weight the generator's own noise gives (the discrepancy principle), against the truth.

``jitter_smoothing`` and ``jitter_cv`` found that a per-clip smoothing weight passes the jitter line where one weight
for every clip cannot, and that neither cross-validation nor GCV finds it: both need a measure of noise against
motion. The pipeline measures the noise (``registration.noise``): a few keyframes generated again with another
seed, one sample's noise variance along the normal taken from the two, three times that a vertex's (the noise taken
as the same in every direction). The discrepancy principle (``smoothing.noise_weight``) then takes the largest
weight whose smoothing moves the keyframes by no more than that variance.

Two cases, scored at the keyframes as the bench scores them (jitter over the ground truth's, F@2% once-aligned):
- the noisy truth (``jitter_smoothing``'s favourable case: the ground truth's vertices at their true poses with the
  generator's noise, every frame data), with the noise's exact variance per vertex;
- the registered keyframes of kept ``full`` runs (made without the noise rule: ``--runs``), smoothed from the
  keyframes alone (``smooth_from_keyframes``), the variance measured as the pipeline does (``generator_noise``) on
  every keyframe, at c = 1 (the normal's variance alone) and c = 3 (the pipeline's: three directions).
    python bench/jitter_noise.py --runs /tmp/keep_full --note "kept runs of full_<commit>"
"""

from __future__ import annotations

import argparse
import datetime
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from v2m4.bench import (BenchSettings, git_commit, load_selected_item, machine_description,  # noqa: E402
                        synthetic_generator)
from v2m4.data.bench import list_items, load_item  # noqa: E402
from v2m4.stages.camera.stage import CameraResult  # noqa: E402
from v2m4.stages.keyframes import Keyframes  # noqa: E402
from v2m4.stages.registration import RegistrationResult  # noqa: E402
from v2m4.stages.registration.noise import generator_noise  # noqa: E402
from v2m4.stages.registration.smoothing import smooth_from_keyframes  # noqa: E402
from v2m4.types import Mesh  # noqa: E402
from _common import BENCH_DIR, write_table  # noqa: E402
from jitter_smoothing import KEEP, noisy_truth, smoother, score  # noqa: E402

WEIGHTS = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0)  # the pipeline's grid (JointConfig.temporal_weights)
FACTORS = (1.0, 3.0)
LINE = 1.2  # issue 30's jitter line: at most 1.2x the ground truth's


def discrepancy(residuals: list[float], sigma2: float, c: float) -> float:
    """The largest weight whose residual stays within c sigma^2 (the residual grows with the weight)."""
    return max([w for w, r in zip(WEIGHTS, residuals) if r <= c * sigma2] or [0.0])


def choices(residuals: list[float], sigma2: float, grid: dict, factors: tuple[float, ...]) -> dict:
    out = {}
    for c in factors:
        w = discrepancy(residuals, sigma2, c)
        out[f"c{c:g}"] = {"weight": w, **grid[str(w)]}
    return out


def truth_row(item_id: str) -> dict:
    item = load_selected_item(item_id, 12, 128, bench_dir=BENCH_DIR)
    gen = synthetic_generator(item, BenchSettings(method="true_pose", items=(item_id,), max_frames=12))
    y = noisy_truth(item, gen)
    sigma2 = float(((y - item.gt_vertices.double().numpy()) ** 2).sum(-1).mean())
    grid, res = {}, []
    for lam in WEIGHTS:
        x = np.einsum("st,tvc->svc", smoother(y.shape[0], lam), y)
        res.append(float(((x - y) ** 2).sum(-1).mean()))
        grid[str(lam)] = score(x, item.faces, item.gt_vertices, item.faces)
    return {"sigma": sigma2 ** 0.5, "residual_over_sigma2": [r / sigma2 for r in res], "grid": grid,
            "picked": choices(res, sigma2, grid, (1.0,))}


def run_row(item_id: str, runs: Path) -> dict | None:
    ck = runs / item_id / "run" / "checkpoints"
    if not (ck / "registration.npz").is_file():
        return None
    reg = RegistrationResult.load(ck / "registration.npz")
    key = Keyframes.load(ck / "keyframes.json").indices.tolist()
    cam = CameraResult.load(ck / "camera.npz")
    item = load_item(item_id, bench_dir=BENCH_DIR)
    first = []
    for k in key:
        d = np.load(ck / f"gen_{k:05d}.npz")
        first.append(Mesh(torch.as_tensor(d["vertices"]).float(), torch.as_tensor(d["faces"]).long()))
    _, world = cam.repose(first)
    other = synthetic_generator(item, BenchSettings(method="full", items=(item_id,), seed=1))
    per_key = generator_noise(first, [other.generate(None, k) for k in key], world,
                              generator=torch.Generator().manual_seed(0))
    sigma2 = float(np.mean(per_key))
    y, kt = reg.sequence.vertices.double(), torch.as_tensor(key)
    grid, res = {}, []
    for lam in WEIGHTS:
        x = smooth_from_keyframes(y, kt, lam)[kt]
        res.append(float(((x - y[kt]) ** 2).sum(-1).mean()))
        grid[str(lam)] = score(x.numpy(), reg.sequence.rest.faces, item.gt_vertices[key], item.faces)
    return {"sigma": sigma2 ** 0.5, "sigma_spread": [min(per_key) ** 0.5, max(per_key) ** 0.5],
            "residual_over_sigma2": [r / sigma2 for r in res], "grid": grid,
            "picked": choices(res, sigma2, grid, FACTORS), "run_weight": reg.temporal_weight}


def item_rows(args: tuple[str, str | None]) -> tuple[str, dict]:
    item_id, runs = args
    torch.set_num_threads(1)
    row = {"truth": truth_row(item_id)}
    if runs:
        row["run"] = run_row(item_id, Path(runs))
    print(item_id, "done", flush=True)
    return item_id, row


def tally(rows: dict, case: str, pick: str) -> dict:
    ok = [i for i, r in rows.items() if r.get(case) and r[case]["picked"][pick]["jitter_ratio"] <= LINE]
    lost = [i for i, r in rows.items() if r.get(case) and r[case]["picked"][pick]["fscore2_once"]
            < r[case]["grid"]["0.0"]["fscore2_once"] - KEEP]
    return {"passed": ok, "lost_geometry": lost, "of": sum(bool(r.get(case)) for r in rows.values())}


def table(rows: dict, case: str, factors: tuple[float, ...]) -> list[str]:
    lines = ["| item | sigma | " + " | ".join(f"lam {w:g}" for w in WEIGHTS) + " | "
             + " | ".join(f"picked, c = {c:g}" for c in factors) + " |",
             "|---" * (len(WEIGHTS) + 2 + len(factors)) + "|"]
    for i, r in rows.items():
        if not r.get(case):
            continue
        q = r[case]
        cells = [f"{g['jitter_ratio']:.2f}x, {g['fscore2_once']:.3f} ({s:.2g})"
                 for g, s in zip(q["grid"].values(), q["residual_over_sigma2"])]
        picks = [f"lam {p['weight']:g}: {p['jitter_ratio']:.2f}x, {p['fscore2_once']:.3f}" for p in q["picked"].values()]
        lines.append(f"| {i} | {q['sigma']:.4f} | " + " | ".join(cells) + " | " + " | ".join(picks) + " |")
    for c in factors:
        t = tally(rows, case, f"c{c:g}")
        lines.append(f"\nc = {c:g}: jitter within {LINE}x on {len(t['passed'])} of {t['of']} "
                     f"({', '.join(x[:3] for x in t['passed'])}); F@2% down by more than {KEEP}: "
                     f"{', '.join(x[:3] for x in t['lost_geometry']) or 'none'}")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default=None, help="a --keep-runs folder of `python -m v2m4.bench --method full`")
    ap.add_argument("--items", nargs="*", default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--note", default="", help="what the kept runs are (their table, commit)")
    a = ap.parse_args()
    items = a.items or list_items(BENCH_DIR)
    with ProcessPoolExecutor(a.workers) as ex:
        rows = dict(ex.map(item_rows, [(i, a.runs) for i in items]))
    out = {"program": "bench/jitter_noise.py", "date": datetime.date.today().isoformat(),
           "machine": machine_description("cpu"), "commit": git_commit(), "note": a.note, "weights": WEIGHTS,
           "factors": FACTORS, "keep": KEEP, "items": rows,
           "summary": {"truth": {"c1": tally(rows, "truth", "c1")},
                       "run": {f"c{c:g}": tally(rows, "run", f"c{c:g}") for c in FACTORS}}}
    lines = [f"**jitter_noise** (bench/jitter_noise.py) on {out['machine']}, {out['date']}, commit {out['commit']}. "
             "Smoothing at the weight the discrepancy principle takes from the generator's noise: the largest weight "
             "whose smoothing moves the data by at most c sigma^2 per vertex. Cells: jitter / the ground truth's, "
             "F@2% once-aligned (mean squared move / sigma^2), at the keyframes.", "",
             "The noisy truth (12 frames, every one data), sigma^2 the noise's own variance per vertex (three "
             "directions):", "", *table(rows, "truth", (1.0,))]
    if a.runs:
        lines += ["", f"The registered keyframes of kept runs ({a.note or a.runs}), smoothed from the keyframes alone; "
                  "sigma^2 one sample's noise variance along the normal, measured as the pipeline does from a second "
                  "synthetic sample of every keyframe (seed 1); c = 3 is the pipeline's rule (three directions). "
                  "Runs whose pipeline smoothed "
                  "already start from that smoothing (their chosen weight: "
                  + ", ".join(f"{i[:3]} {r['run']['run_weight']:g}" for i, r in rows.items()
                              if r.get("run") and r["run"]["run_weight"]) + "):", "", *table(rows, "run", FACTORS)]
    write_table("jitter_noise", out, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
