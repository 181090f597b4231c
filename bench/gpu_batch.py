"""`v2m4 batch` on the GPUs of one host: clips per hour for N demo-sized clips (synthetic generator, paper preset,
nvdiffrast), on one GPU (the local batch, one clip after another, as a user types it) and, where Ray is installed
and the host has several GPUs, on every GPU through a local Ray instance. Claim measured: the multi-GPU batch's
scaling against the one-GPU figure (target: at least 0.8 x N on N GPUs).

    python bench/gpu_batch.py --clips 8            # -> bench/results/gpu_batch.json and .md
    python bench/gpu_batch.py --device cpu --clips 2 --name gpu_batch_smoke   # the program's own check, on a CPU

A run that cannot be made here (Ray missing, one GPU only) is written as a row saying why, not left out. Keyframe
generation throughput with the full-size TRELLIS models is measured by bench/trellis_full.py (trellis_batch.json).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _common import write_table  # noqa: E402
from batch_speed import DEMO, batch_row, demo_clips, timed_command  # noqa: E402
from v2m4.bench import git_commit, machine_description  # noqa: E402


def write(out: dict, name: str) -> None:
    lines = [f"**v2m4 batch on GPUs** ({out['preset']} preset, {out['backend']}) on {out['machine']} "
             f"({out['gpus']} GPU), {out['date']}, commit {out['commit']}; {out['clips']} demo clips\n",
             "| run | GPUs | clips done | wall s | clips / hour | seconds per clip | stage s per clip | note |",
             "|---|---|---|---|---|---|---|---|"]
    for run, r in out["rows"].items():
        if "wall_s" not in r:
            lines.append(f"| {run} | {r.get('gpus', '')} |  |  |  |  |  | not run: {r['not_run']} |")
            continue
        lines.append(f"| {run} | {r['gpus']} | {r['done']} | {r['wall_s']} | {r['clips_per_hour']} | "
                     f"{', '.join(map(str, r['clip_s']))} | {', '.join(map(str, r['stage_s']))} | "
                     f"{r.get('note', '')}{'; failed: ' + ' | '.join(r['errors']) if r.get('errors') else ''} |")
    if out.get("scaling") is not None:
        lines.append(f"\nScaling on {out['gpus']} GPUs: {out['scaling']:.2f} x the one-GPU clips per hour "
                     f"(target {0.8 * out['gpus']:.1f}).")
    write_table(name, out, lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--preset", default=None, help="default: paper on CUDA, fast on the CPU")
    ap.add_argument("--backend", default=None, help="default: nvdiffrast on CUDA, torch on the CPU")
    ap.add_argument("--threads", type=int, default=4, help="torch threads of the batch's process")
    ap.add_argument("--name", default="gpu_batch")
    args = ap.parse_args()
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        sys.exit("gpu_batch needs a CUDA GPU (or --device cpu for a check of the program itself)")
    preset = args.preset or ("paper" if cuda else "fast")
    backend = args.backend or ("nvdiffrast" if cuda else "torch")
    gpus = torch.cuda.device_count() if cuda else 0
    out = {"program": "bench/gpu_batch.py", "date": datetime.date.today().isoformat(),
           "machine": machine_description(args.device), "gpus": gpus, "commit": git_commit(), "preset": preset,
           "backend": backend, "clips": args.clips, "rows": {}, "scaling": None}
    common = ["--generator", f"synthetic:{DEMO}", "--device", args.device, "--backend", backend,
              "--preset", preset, "--quiet"]
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        clips = demo_clips(tmp, args.clips)
        row = batch_row(timed_command(["batch", *clips, "-o", str(tmp / "one"), *common], threads=args.threads),
                        tmp / "one", len(clips))
        row.update(gpus=min(gpus, 1), note="local batch: one clip after another" + (" on GPU 0" if cuda else ""))
        out["rows"]["local"] = row
        write(out, args.name)
        if gpus < 2:
            out["rows"]["all_gpus_ray"] = {"gpus": gpus, "not_run": f"{gpus} GPU on this host (Ray runs the batch "
                                                                    "on two or more)"}
        elif importlib.util.find_spec("ray") is None:
            out["rows"]["all_gpus_ray"] = {"gpus": gpus, "not_run": "Ray is not installed (pip install "
                                                                    "'v2m4[cluster]')"}
        else:
            row = batch_row(timed_command(["batch", *clips, "-o", str(tmp / "ray"), *common, "--ray", "local"],
                                          {"num_gpus": gpus}, threads=args.threads), tmp / "ray", len(clips))
            row.update(gpus=gpus, note="Ray on every GPU of the host")
            out["rows"]["all_gpus_ray"] = row
            out["scaling"] = round(row["clips_per_hour"] / out["rows"]["local"]["clips_per_hour"], 3)
        write(out, args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
