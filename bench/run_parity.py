"""`v2m4 run --generator synthetic:ITEM` against `v2m4 bench --method full`, item by item (issue #8).

For each item both commands run as a user would type them, with the same settings, and every quality figure of
the run's report (``report.json["bench"]``) is compared with the bench's row (timings excluded: they are wall
clock). Writes bench/results/run_parity.json (and .md); with --against FILE the bench rows are read from an
existing bench result (same commit and settings) instead of being recomputed.

    python bench/run_parity.py --max-frames 8 --resolution 128 --preset fast [--jobs 4] [--device cuda]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from v2m4.bench import machine_description  # noqa: E402
from v2m4.data.bench import bench_dir, list_items  # noqa: E402


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "v2m4.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO)


def quality(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith(("sec_", "gen_sec")) and k != "error"}


def one_item(item: str, a, against: dict | None) -> dict:
    path = bench_dir(a.bench_dir) / item
    fps = json.loads((path / "meta.json").read_text())["fps"]
    common = ["--device", a.device, "--backend", a.backend, "--preset", a.preset, "--resolution", a.resolution,
              "--seed", a.seed]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if against is None:
            b = _cli("bench", "--method", "full", "--items", item, "--max-frames", a.max_frames, "--out", tmp,
                     "--name", "row", "--bench-dir", bench_dir(a.bench_dir), *common)
            if b.returncode:
                return {"error": "bench: " + b.stderr.strip().splitlines()[-1]}
            row = json.loads(Path(tmp, "row.json").read_text())["items"][item]
        else:
            row = against["items"][item]
        r = _cli("run", path / "frames", "-o", Path(tmp) / "run", "--generator", f"synthetic:{path}", "--fps", fps,
                 "--keyframes", a.max_frames, "--quiet", "--no-preview", *common)
        if r.returncode:
            return {"error": "run: " + r.stderr.strip().splitlines()[-1]}
        rep = json.loads((Path(tmp) / "run" / "report.json").read_text())["bench"]
    q_b, q_r = quality(row), quality(rep)
    keys = sorted(set(q_b) | set(q_r))
    diff = [k for k in keys if q_b.get(k) != q_r.get(k)]
    num = [abs(q_b[k] - q_r[k]) for k in keys if isinstance(q_b.get(k), float) and isinstance(q_r.get(k), float)]
    return {"figures": len(keys), "equal": len(keys) - len(diff), "differing": diff,
            "max_abs_diff": max(num) if num else 0.0, "psnr": rep.get("psnr"), "fscore2_once": rep.get("fscore2_once"),
            "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", nargs="*", default=None)
    ap.add_argument("--max-frames", type=int, default=8)
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bench-dir", default=None)
    ap.add_argument("--jobs", type=int, default=1, help="items in parallel")
    ap.add_argument("--against", default=None, help="an existing bench result (JSON) to compare with")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    ap.add_argument("--name", default="run_parity")
    a = ap.parse_args()
    items = a.items or [i for i in list_items(bench_dir=a.bench_dir) if i.startswith("p")]
    against = json.loads(Path(a.against).read_text()) if a.against else None
    with ThreadPoolExecutor(a.jobs) as pool:
        rows = dict(zip(items, pool.map(lambda i: one_item(i, a, against), items)))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip() or os.environ.get("V2M4_COMMIT", "")
    result = {"date": datetime.date.today().isoformat(), "machine": machine_description(a.device),
              "commit": commit, "settings": {k: v for k, v in vars(a).items() if k not in ("out", "name")},
              "items": rows, "all_equal": all(not r.get("error") and not r["differing"] for r in rows.values())}
    lines = ["| item | figures | equal | max abs diff | differing | psnr | fscore2_once | s |", "|---|---|---|---|---|---|---|---|"]
    for i, r in rows.items():
        if "error" in r:
            lines.append(f"| {i} | error: {r['error']} |")
        else:
            lines.append(f"| {i} | {r['figures']} | {r['equal']} | {r['max_abs_diff']:.3g} | "
                         f"{', '.join(r['differing']) or '-'} | {r['psnr']} | {r['fscore2_once']} | {r['seconds']} |")
    md = (f"**run vs bench --method full** on {result['machine']}, {result['date']}, commit {commit}; settings: "
          f"{json.dumps(result['settings'])}; all equal: {result['all_equal']}\n\n" + "\n".join(lines) + "\n")
    print(md)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{a.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{a.name}.md").write_text(md)


if __name__ == "__main__":
    main()
