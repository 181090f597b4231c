"""The CPU's registration of the bundled demo under several spin counts of torch's OpenMP workers (GNU libgomp's
GOMP_SPINCOUNT), each in a fresh process, the counts taken in turn: claim measured, the choice of
``v2m4.OMP_SPIN_TURNS``. libgomp reads the count once, as it loads, so every count needs its own process.

    python bench/omp_spin.py                                 # 2 threads, counts 2,000 ... 300,000 (libgomp's default)
    python bench/omp_spin.py --counts 20000 300000 --repeats 5

The demo runs once (fast preset) up to registration, whose arguments are saved; each child process loads them and
times ``register_clip`` alone (the stage that runs the compiled kernels most, between torch's operators). The row of
a count is its fastest run; every run is kept in the JSON, and every run's result must be the same to the bit (the
count changes when threads sleep, not what they compute).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
LIBGOMP_DEFAULT = 300000  # libgomp's count where neither GOMP_SPINCOUNT nor OMP_WAIT_POLICY is set (GCC's manual)


def save_arguments(path: Path, threads: int) -> None:
    """The demo up to registration; register_clip's arguments saved to path."""
    sys.path.insert(0, str(ROOT))
    import torch

    import v2m4.pipeline as P
    from v2m4.config import PipelineConfig
    from v2m4.generators import make_generator
    from v2m4.io.frames import read_frames

    torch.set_num_threads(threads)
    cfg = PipelineConfig.fast()
    captured = {}

    class Stop(Exception):
        """Raised in place of registration: the run ends where its arguments are known."""

    def grab(*args, **kw):
        captured.update(args=args, kw={**{k: v for k, v in kw.items() if k != "progress"}, "state": None})
        raise Stop

    demo = ROOT / "examples" / "demo"
    frames = read_frames(demo / "frames", max_size=cfg.resolution)
    P.register_clip = grab
    with tempfile.TemporaryDirectory() as tmp:
        with contextlib.suppress(Stop):
            P.reconstruct(frames, make_generator(f"synthetic:{demo}", len(frames)), cfg, run_dir=tmp, log="quiet")
    torch.save(captured, path)


def child(path: Path, threads: int) -> None:
    """One timed registration from the saved arguments; prints a JSON line."""
    sys.path.insert(0, str(ROOT))
    import torch

    from v2m4.stages.registration import joint as J

    torch.set_num_threads(threads)
    saved = torch.load(path, weights_only=False)
    t0 = time.perf_counter()
    result = J.register_clip(*saved["args"], **saved["kw"])
    seconds = time.perf_counter() - t0
    v = result.sequence.vertices.detach().contiguous().numpy().tobytes()
    print(json.dumps({"seconds": round(seconds, 3), "parts": [round(x, 3) for x in result.seconds],
                      "result_sha": hashlib.sha256(v).hexdigest()[:16]}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", type=int, nargs="+", default=[2000, 8000, 20000, 60000, LIBGOMP_DEFAULT])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="omp_spin")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(Path(a.child), a.threads)
        return 0
    runs: dict[int, list[dict]] = {c: [] for c in a.counts}
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "arguments.pt"
        save_arguments(saved, a.threads)
        for _ in range(a.repeats):
            for c in a.counts:
                env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
                env["GOMP_SPINCOUNT"] = str(c)
                out = subprocess.run([sys.executable, __file__, "--child", str(saved), "--threads", str(a.threads)],
                                     env=env, check=True, capture_output=True, text=True).stdout
                runs[c].append(json.loads(out.strip().splitlines()[-1]))
                print(c, runs[c][-1], flush=True)
    shas = {r["result_sha"] for v in runs.values() for r in v}
    sys.path.insert(0, str(ROOT))
    from v2m4 import OMP_SPIN_TURNS
    from v2m4.bench import git_commit, machine_description

    rows = {str(c): {"fastest_seconds": min(r["seconds"] for r in v), "every_run_seconds": [r["seconds"] for r in v],
                     "fastest_parts": min(v, key=lambda r: r["seconds"])["parts"]} for c, v in runs.items()}
    out = {"program": "bench/omp_spin.py", "date": datetime.date.today().isoformat(),
           "machine": machine_description("cpu"), "commit": git_commit(), "threads": a.threads,
           "repeats": a.repeats, "chosen": OMP_SPIN_TURNS, "libgomp_default": LIBGOMP_DEFAULT,
           "results_identical": len(shas) == 1, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{a.name}.json").write_text(json.dumps(out, indent=1) + "\n")
    lines = [f"**OpenMP spin count** (GOMP_SPINCOUNT) on {out['machine']}, {out['date']}, "
             f"commit {out['commit']}: registration of the demo (fast preset) from saved arguments, each run a fresh "
             f"process, the counts in turn; the fastest of {a.repeats}. Results identical across every run: "
             f"{out['results_identical']}.\n",
             "| spin count | registration s | rest and targets | global | fit | repair and scores | every run |",
             "|---|---|---|---|---|---|---|"]
    for c, r in rows.items():
        label = c + (" (libgomp's default)" if int(c) == LIBGOMP_DEFAULT else "") + \
            (" (v2m4's)" if int(c) == OMP_SPIN_TURNS else "")
        p = r["fastest_parts"]
        lines.append(f"| {label} | {r['fastest_seconds']:.2f} | {p[0]:.2f} | {p[1]:.2f} | {p[2]:.2f} | {p[3]:.2f} | "
                     f"{', '.join(f'{s:.2f}' for s in r['every_run_seconds'])} |")
    (RESULTS / f"{a.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
