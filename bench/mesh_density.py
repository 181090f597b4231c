"""Generated meshes at any density: the camera search and registration at the working resolution.

Claim measured: with each generated mesh simplified to ``GenerationConfig.max_faces`` before the camera search, a
generator giving 30k or 300k faces costs the camera and registration stages about what 3k faces cost (seconds
per keyframe within 1.5x), and scores the same within noise (rotation median, input-view IoU, F-score@2% once);
the noise is the spread between two seeds at 3k faces. Method `register` (camera search, re-pose,
registration), synthetic generator, 8 frames at 256², CPU.

    python bench/mesh_density.py [--items ...] [--jobs 4] [--threads 1]   # -> bench/results/mesh_density.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import BENCH_DIR  # noqa: E402
from v2m4.bench import git_commit, machine_description  # noqa: E402

RUNS = [(3000, 0), (3000, 1), (30000, 0), (300000, 0)]   # (faces, seed); 3000 is the generator's default
COLUMNS = ["generated_faces", "sec_camera_per_frame", "sec_register_per_frame", "rot_err_med_deg", "mask_iou",
           "fscore2_once"]


def one(item: str, faces: int, seed: int, a, tmp: Path) -> dict:
    name = f"{item}_{faces}_{seed}"
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)}
    cmd = [sys.executable, "-m", "v2m4.bench", "--method", "register", "--items", item, "--resolution",
           str(a.resolution), "--max-frames", str(a.max_frames), "--seed", str(seed), "--out", str(tmp), "--name",
           name, "--bench-dir", str(a.bench_dir)]
    if faces != 3000:
        cmd += ["--generated-faces", str(faces)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"}
    row = json.loads((tmp / f"{name}.json").read_text())["items"][item]
    return {k: row.get(k) for k in COLUMNS} if "error" not in row else {"error": row["error"]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", nargs="*", default=["p01_fox_walk", "p03_cesiumman_walk", "p08_kaykit_knight_run"])
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--max-frames", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=1, help="runs side by side (each with --threads threads)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bench-dir", default=str(BENCH_DIR))
    ap.add_argument("--name", default="mesh_density")
    ap.add_argument("--runs", nargs="*", default=None, help="only these runs (FACES_SEED, e.g. 30000_0), kept beside "
                    "the table's other rows (each row names its commit)")
    a = ap.parse_args()
    runs = RUNS if a.runs is None else [tuple(int(x) for x in r.split("_")) for r in a.runs]
    jobs = [(item, faces, seed) for item in a.items for faces, seed in runs]
    old = ROOT / "bench" / "results" / f"{a.name}.json"
    table: dict = json.loads(old.read_text())["items"] if a.runs is not None and old.exists() else {}
    head = {"claim": "30k and 300k generated faces cost <= 1.5x the seconds per keyframe of 3k, same quality "
                     "within the two-seed noise at 3k", "date": datetime.date.today().isoformat(),
            "machine": machine_description("cpu"), "commit": git_commit(), "jobs": a.jobs, "threads": a.threads,
            "settings": {"method": "register", "resolution": a.resolution, "max_frames": a.max_frames}}
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(a.jobs) as pool:
        futures = {pool.submit(one, *j, a, Path(tmp)): j for j in jobs}
        for fut in as_completed(futures):  # the table is rewritten as each run ends: an interrupted run keeps them
            item, faces, seed = futures[fut]
            table.setdefault(item, {})[f"{faces}_seed{seed}"] = {**fut.result(), "commit": head["commit"]}
            write(a.name, {**head, "items": table, "summary": {i: summarise(r) for i, r in table.items()}})
    print(markdown({**head, "items": table, "summary": {i: summarise(r) for i, r in table.items()}}))
    return 0


def write(name: str, out: dict) -> None:
    res = ROOT / "bench" / "results"
    (res / f"{name}.json").write_text(json.dumps(out, indent=1) + "\n")
    (res / f"{name}.md").write_text(markdown(out))


def summarise(runs: dict) -> dict:
    """Per density: time ratio against 3k (seed 0) per stage, and each quality figure's difference from 3k
    against the two-seed noise at 3k."""
    base, other = runs.get("3000_seed0"), runs.get("3000_seed1")
    if base is None or other is None:
        return {}
    if "error" in base or "error" in other:
        return {"error": "a 3k run failed"}
    out = {}
    for key in ("30000_seed0", "300000_seed0"):
        r = runs.get(key)
        if r is None:
            continue
        if "error" in r:
            out[key] = {"error": r["error"]}
            continue
        s = {f"{st}_time_ratio": r[f"sec_{st}_per_frame"] / base[f"sec_{st}_per_frame"]
             for st in ("camera", "register")}
        for q in ("rot_err_med_deg", "mask_iou", "fscore2_once"):
            s[f"{q}_diff"] = r[q] - base[q]
            s[f"{q}_noise"] = abs(other[q] - base[q])
        out[key] = s
    return out


def markdown(out: dict) -> str:
    lines = [f"**mesh_density** on {out['machine']}, {out['date']}, commit {out['commit']} (of the last runs; each "
             f"row's own in its last column), {out['jobs']} jobs x {out['threads']} threads; "
             f"{json.dumps(out['settings'])}", "",
             "| item | run | " + " | ".join(COLUMNS) + " | commit |", "|---|---|" + "---|" * (len(COLUMNS) + 1)]
    for item, runs in out["items"].items():
        for key, r in runs.items():
            cells = [r.get("error", "")] if "error" in r else [f"{r[c]:.4g}" if isinstance(r.get(c), float)
                                                                else str(r.get(c)) for c in COLUMNS]
            lines.append(f"| {item} | {key} | " + " | ".join(cells) + f" | {r.get('commit', '')} |")
    lines += ["", "| item | run | camera time ratio | register time ratio | rot diff (noise) | IoU diff (noise) | "
                  "F diff (noise) |", "|---|---|---|---|---|---|---|"]
    for item, s in out["summary"].items():
        for key, r in s.items() if isinstance(s, dict) and "error" not in s else []:
            if "error" in r:
                lines.append(f"| {item} | {key} | {r['error']} |")
                continue
            lines.append(f"| {item} | {key} | {r['camera_time_ratio']:.2f} | {r['register_time_ratio']:.2f} | "
                         + " | ".join(f"{r[q + '_diff']:+.3g} ({r[q + '_noise']:.3g})"
                                      for q in ("rot_err_med_deg", "mask_iou", "fscore2_once")) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
