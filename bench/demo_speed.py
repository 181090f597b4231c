"""The bundled demo end to end, whole-clip registration against the chain of pairs, in one process at one commit:
seconds per stage (what `v2m4 demo` runs: 24 frames, the synthetic generator, the preset of the device) and the
run's input-view figures. Claim measured: the whole-clip fit's total stage time against the chain's.

Each method runs ``--repeats`` times, the two alternating (fit, chain, fit, chain, ...), so that neither always pays
the process's first-run costs or meets the machine's quieter moments; the row is each method's fastest run (by
total stage time), and every run's total is kept in the JSON.

    python bench/demo_speed.py                       # CPU, fast preset
    python bench/demo_speed.py --device cuda --backend nvdiffrast --name demo_speed_h200
    python bench/demo_speed.py --frames 240 --repeats 1 --name demo_speed_240   # a long clip: the walk looped
    python bench/demo_speed.py --baseline 6244a98 --repeats 3   # also an older commit's `v2m4 demo`, alternating

``--baseline COMMIT`` adds a third row: that commit's own `v2m4 demo` (its preset, its code), run from a detached
git worktree in a subprocess on the same machine, in turn with the other two; its total leaves out the export, which
the other rows do not run. It re-measures a figure quoted from an older commit on today's machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import v2m4  # noqa: E402
from v2m4.bench import git_commit, machine_description  # noqa: E402
from v2m4.config import PipelineConfig  # noqa: E402
from v2m4.data.bench import looped_item  # noqa: E402
from v2m4.generators import make_generator  # noqa: E402
from v2m4.io.frames import read_frames  # noqa: E402
from v2m4.pipeline import reconstruct  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DEMO = ROOT / "examples" / "demo"


def run(cfg: PipelineConfig, demo: Path = DEMO) -> dict:
    frames = read_frames(demo / "frames", max_size=cfg.resolution)
    with tempfile.TemporaryDirectory() as tmp:
        result = reconstruct(frames, make_generator(f"synthetic:{demo}", len(frames)), cfg, run_dir=tmp, log="quiet")
    return summary(result.report)


def summary(rep: dict, leave_out: tuple[str, ...] = ("generate", "keyframes", "report")) -> dict:
    """A run's row from its report: seconds per stage, their total without ``leave_out``, input-view figures."""
    sec = {k: round(v, 2) for k, v in rep["seconds"].items()}
    stages = round(sum(v for k, v in rep["seconds"].items() if k not in leave_out), 2)
    return {"seconds": sec, "post_generation_seconds": stages, "input_view": rep["input_view"],
            "frames": rep.get("frames"), "keyframes": len(rep.get("keyframes", []))}


def run_commit(worktree: Path, device: str) -> dict:
    """An older commit's `v2m4 demo` in a subprocess (its own code on sys.path), read back from its report."""
    with tempfile.TemporaryDirectory() as tmp:
        # the environment a fresh shell gives that commit: without the OpenMP setting this process's v2m4 made
        env = {**os.environ, "PYTHONPATH": str(worktree)}
        if v2m4.OMP_SPIN_SET:
            env.pop("GOMP_SPINCOUNT", None)
        subprocess.run([sys.executable, "-m", "v2m4", "demo", "--out", tmp, "--device", device], cwd=worktree, env=env,
                       check=True, stdout=subprocess.DEVNULL)
        rep = json.loads((Path(tmp) / "report.json").read_text())
    return summary(rep, ("generate", "keyframes", "report", "export"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--name", default="demo_speed")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--frames", type=int, default=0, help="the demo's walk looped to this many frames (0: its 24)")
    ap.add_argument("--baseline", default=None, help="also this commit's own `v2m4 demo`, in turn with the others")
    args = ap.parse_args()
    preset = "paper" if args.device.startswith("cuda") else "fast"
    cfg = PipelineConfig.preset(preset, device=args.device, backend=args.backend)
    configs = {"joint": cfg.with_joint_registration(), "chain": cfg.with_pairwise_registration()}
    runs: dict[str, list[dict]] = {k: [] for k in configs}
    base = None
    if args.baseline:
        if args.frames:
            raise SystemExit("--baseline runs the commit's own demo: it cannot take --frames")
        short = subprocess.run(["git", "rev-parse", "--short", args.baseline], cwd=ROOT, check=True,
                               capture_output=True, text=True).stdout.strip()
        base = f"baseline {short}"
        runs[base] = []
    with tempfile.TemporaryDirectory() as tmp:
        demo = looped_item(DEMO, args.frames, Path(tmp) / "demo") if args.frames else DEMO
        if base:
            wt = Path(tmp) / "baseline"
            subprocess.run(["git", "worktree", "add", "--detach", "-f", str(wt), args.baseline], cwd=ROOT, check=True,
                           capture_output=True)
            tools = ROOT / "tools" / "node_modules"
            if tools.exists() and (wt / "tools").exists():
                (wt / "tools" / "node_modules").symlink_to(tools)
        try:
            for _ in range(max(1, args.repeats)):
                for name, c in configs.items():
                    runs[name].append(run(c, demo))
                if base:
                    runs[base].append(run_commit(wt, args.device))
        finally:
            if base:
                subprocess.run(["git", "worktree", "remove", "--force", str(wt)], cwd=ROOT, capture_output=True)
    rows = {k: {**min(v, key=lambda r: r["post_generation_seconds"]),
                "every_run_total": [r["post_generation_seconds"] for r in v]} for k, v in runs.items()}
    out = {"program": "bench/demo_speed.py", "date": datetime.date.today().isoformat(),
           "machine": machine_description(args.device), "commit": git_commit(), "preset": preset,
           "repeats": args.repeats, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(out, indent=1) + "\n")
    clip = next(iter(rows.values()))
    lines = [f"**demo speed** ({preset} preset) on {out['machine']}, {out['date']}, commit {out['commit']}; "
             f"{clip['frames']} frames, {clip['keyframes']} keyframes; the fastest of {args.repeats} alternating runs "
             "of each method\n",
             "| registration | total stage s (no generation) | camera | register | texture | export | mask IoU | "
             "PSNR | every run's total |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        s = r["seconds"]
        lines.append(f"| {name} | {r['post_generation_seconds']} | {s.get('camera')} | {s.get('register')} | "
                     f"{s.get('texture')} | {s.get('export', '')} | {r['input_view']['mask_iou']:.3f} | "
                     f"{r['input_view']['psnr']:.2f} | {', '.join(str(t) for t in r['every_run_total'])} |")
    if base:
        lines.append(f"\n{base}: that commit's own `v2m4 demo` (its preset and code) in a subprocess; its total leaves "
                     "out its export, which the other rows do not run.")
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
