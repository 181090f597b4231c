"""`v2m4 batch` throughput and memory: clips per hour for four demo-sized clips here and on a local Ray (the same
machine, the same command), and a 240-frame clip's time and peak memory. Claims measured: Ray's overhead against
the local batch (target: at most 10%), and that a 240-frame clip fits in 4 GB on a CPU.

Each measurement is the `v2m4 batch` command as a user types it, in a process of its own (its wall time from
start to exit, imports and Ray's start included), with one torch thread per clip (OMP_NUM_THREADS=1, what Ray gives
a one-CPU task): two threads on a shared 2-core machine spend their time waiting for each other. The 240-frame clip
first (local), then three runs of the four clips: local (one clip after another), Ray on a local instance of 1 CPU
(the same layout, one clip at a time on one thread: the difference is Ray's overhead), and Ray on 2 CPUs (two clips
side by side: its throughput here).

The clips: the bundled demo (24 frames of the Khronos Fox at 256², the synthetic generator
`synthetic:examples/demo`), four times under four names; the long clip: the demo's walk cycle (its first 17
frames, one period of the looping walk) repeated to 240 frames (10 s at 24 fps), with the ground truth repeated
alike for its synthetic generator. CPU, fast preset (the CLI's default on a CPU).

    python bench/batch_speed.py                   # all four runs
    python bench/batch_speed.py --skip-long       # only the four-clip comparison
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from v2m4.bench import git_commit, machine_description  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DEMO = ROOT / "examples" / "demo"
CYCLE = 17  # frames in one period of the demo's walk (its meta.json times restart at frame 17)


def timed_command(args: list[str], ray: dict | None = None, *, threads: int = 1) -> dict:
    """Run ``v2m4 ARGS`` (with ``ray``: after ``ray.init(**ray)`` in the same process, e.g. ``{"num_cpus": 1}``,
    which ``--ray local`` then uses) with ``threads`` torch threads: wall seconds, exit code, the process's peak RSS
    (GB), CPU seconds, load."""
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    code = "import sys; from v2m4.cli import main; "
    if ray:
        code += f"import ray; ray.init(**{ray!r}); "
    code += "sys.exit(main(sys.argv[1:]))"
    p = subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    print(out[-3000:])
    return {"wall_s": round(wall, 1), "exit_code": p.returncode, "peak_rss_gb": round(usage.ru_maxrss / 2**20, 3),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "load_avg": [round(load0, 2), round(os.getloadavg()[0], 2)]}  # the machine's 1-minute load, start and end


def demo_clips(tmp: Path, n: int = 4) -> list[str]:
    """n clips: the bundled demo's frames under n names (each its own output folder and checkpoints)."""
    clips = []
    for i in range(1, n + 1):
        d = tmp / "clips" / f"demo_{i}"
        d.parent.mkdir(parents=True, exist_ok=True)
        d.symlink_to(DEMO / "frames", target_is_directory=True)
        clips.append(str(d))
    return clips


def long_item(tmp: Path, n: int = 240) -> Path:
    """A bench-format item of ``n`` frames: the demo's walk cycle repeated, its ground truth alike."""
    import numpy as np

    item = tmp / "walk240"
    (item / "frames").mkdir(parents=True)
    shutil.copytree(DEMO / "materials", item / "materials")
    src = sorted((DEMO / "frames").glob("*.png"))
    for i in range(n):
        (item / "frames" / f"{i:04d}.png").symlink_to(src[i % CYCLE])
    meta = json.loads((DEMO / "meta.json").read_text())
    fps = float(meta["fps"])
    meta.update(n_frames=n, times=[i / fps for i in range(n)], loop=False)
    (item / "meta.json").write_text(json.dumps(meta))
    gt = dict(np.load(DEMO / "gt_mesh.npz"))
    take = np.arange(n) % CYCLE
    gt["verts"] = gt["verts"][take]
    gt["times"] = (np.arange(n) / fps).astype(gt["times"].dtype)
    np.savez(item / "gt_mesh.npz", **gt)
    return item


def batch_row(cmd: dict, out: Path, n_clips: int) -> dict:
    s = json.loads((out / "summary.json").read_text())
    row = {**cmd, "clips": n_clips, "done": s["done"], "failed": s["failed"],
           "clips_per_hour": round(3600 * s["done"] / cmd["wall_s"], 2),
           "startup_s": s["startup_seconds"], "batch_s": s["seconds"],
           "clip_s": [round(c["seconds"], 1) for c in s["clips"]],
           "stage_s": [round(sum(c["figures"].get("stage_seconds", {}).values()), 1) for c in s["clips"]]}
    errors = sorted({c["error"] for c in s["clips"] if c.get("error")})
    if errors:  # a row of failed clips says why, in the table itself
        row["errors"] = errors
        print(f"{s['failed']} clip(s) failed: " + " | ".join(errors), file=sys.stderr)
    return row


def write_results(rows: dict, name: str) -> None:
    """The JSON and Markdown tables of the rows so far (rewritten after each run: a stopped bench keeps them)."""
    overhead = (round(rows["ray_1cpu"]["wall_s"] / rows["local"]["wall_s"] - 1, 3)
                if {"ray_1cpu", "local"} <= set(rows) else None)
    out = {"program": "bench/batch_speed.py", "date": datetime.date.today().isoformat(),
           "machine": machine_description("cpu"), "commit": git_commit(), "preset": "fast",
           "ray_overhead": overhead, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=1) + "\n")
    lines = [f"**v2m4 batch** (fast preset, CPU) on {out['machine']}, {out['date']}, commit {out['commit']}\n",
             "| run | clips | done | wall s | clips / hour | Ray start s | seconds per clip | stage s per clip | "
             "load, start / end |", "|---|---|---|---|---|---|---|---|---|"]
    for run, r in rows.items():
        lines.append(f"| {run} | {r['clips']} | {r['done']} | {r['wall_s']} | {r['clips_per_hour']} | "
                     f"{r['startup_s'] if run.startswith('ray') else ''} | {', '.join(map(str, r['clip_s']))} | "
                     f"{', '.join(map(str, r['stage_s']))} | {' / '.join(map(str, r['load_avg']))} |")
    if overhead is not None:
        lines.append(f"\nRay's overhead on the four clips: {100 * overhead:+.1f}% of the local batch's wall time "
                     "(Ray on 1 CPU, one clip at a time like the local batch).")
    if "long" in rows:
        r = rows["long"]
        lines.append(f"\n240-frame clip ({r['keyframes']} keyframes): {r['wall_s']} s wall, peak RSS "
                     f"{r['peak_rss_gb']} GB, input-view mask IoU {r['mask_iou']}; stage seconds "
                     + ", ".join(f"{k} {v}" for k, v in r["stage_seconds"].items()) + ".")
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-long", action="store_true", help="leave out the 240-frame clip")
    ap.add_argument("--name", default="batch_speed")
    args = ap.parse_args()
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        clips = demo_clips(tmp)
        if not args.skip_long:  # first: the memory bound is the claim that must be measured
            item = long_item(tmp)
            out = tmp / "long"
            cmd = timed_command(["batch", str(item / "frames"), "-o", str(out), "--generator", f"synthetic:{item}",
                                 "--quiet"])
            row = batch_row(cmd, out, 1)
            rep = json.loads((out / "walk240" / "report.json").read_text())
            row.update(frames=rep["frames"], keyframes=len(rep["keyframes"]),
                       stage_seconds={k: round(v, 1) for k, v in rep["seconds"].items()},
                       mask_iou=round(rep["input_view"]["mask_iou"], 3))
            rows["long"] = row
            write_results(rows, args.name)
        gen = ["--generator", f"synthetic:{DEMO}", "--quiet"]
        for name, ray_cpus in (("local", None), ("ray_1cpu", 1), ("ray_2cpu", 2)):
            out = tmp / name
            extra = ["--ray", "local"] if ray_cpus else []
            row = batch_row(timed_command(["batch", *clips, "-o", str(out), *gen, *extra],
                                          {"num_cpus": ray_cpus} if ray_cpus else None), out,
                            len(clips))
            del row["peak_rss_gb"]  # of the driver only: on Ray the clips run in other processes
            if ray_cpus:
                del row["cpu_s"]  # the workers are not this command's children
            rows[name] = row
            write_results(rows, args.name)
    write_results(rows, args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
