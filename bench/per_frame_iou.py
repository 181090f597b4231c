"""Input-view mask IoU of every frame of kept `full` runs: keyframes against the frames between them.

The bench's `mask_iou` is the median over the keyframes and `mask_iou_all` the median over every frame. On a clip
whose frames fall into two groups of different fit (a limb raised for part of the clip), the two medians land in
different groups whenever the groups' shares differ between the keyframes and the whole clip, whatever the frames
between keyframes do. This program shows the frames themselves: each frame's IoU, the means beside the medians, and
each in-between frame against the mean of the two keyframes around it (what a fit that carried the keyframes'
quality to every frame would give).

    python -m v2m4.bench --method full --items p10_quaternius_dino_wave --resolution 256 --max-frames 12 \
        --keep-runs runs/                                                      # then:
    python bench/per_frame_iou.py --runs runs/ --items p10_quaternius_dino_wave

Each kept run is resumed (``v2m4.bench.run_item``): stages whose checkpoints are missing run again.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from v2m4 import render as R  # noqa: E402
from v2m4.bench import BenchSettings, _render_outputs, git_commit, machine_description, run_item  # noqa: E402
from v2m4.metrics import image as I  # noqa: E402
from _common import write_table  # noqa: E402


def per_frame(run: Path, settings: BenchSettings) -> dict:
    frames, _, _, res = run_item(settings.items[0], settings, run, resume=True)
    anim = res.animation
    with torch.no_grad():
        _, mask = _render_outputs(R.context("torch", "cpu"), [anim.frame(t) for t in range(len(anim))],
                                  res.video_camera)
    iou = torch.tensor([round(v, 4) for v in I.mask_iou(mask, frames.rgba[..., 3]).tolist()], dtype=torch.float64)
    key = res.keyframes.long()
    # each in-between frame against the mean of the keyframes on either side of it
    t = torch.arange(int(key[0]) + 1, int(key[-1]))
    t = t[~torch.isin(t, key)]
    hi = torch.searchsorted(key, t)
    diffs = (iou[t] - (iou[key[hi - 1]] + iou[key[hi]]) / 2).tolist()
    keyed = iou[key].tolist()
    iou = iou.tolist()
    return {"iou": iou, "keyframes": key.tolist(),
            "key_median": round(statistics.median(keyed), 4), "all_median": round(statistics.median(iou), 4),
            "key_mean": round(statistics.mean(keyed), 4), "all_mean": round(statistics.mean(iou), 4),
            "between_minus_keys_median": round(statistics.median(diffs), 4) if diffs else None,
            "between_minus_keys_min": round(min(diffs), 4) if diffs else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", required=True, help="the folder given to the bench's --keep-runs")
    ap.add_argument("--items", required=True, help="comma-separated item ids")
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--max-frames", type=int, default=12)
    ap.add_argument("--name", default="per_frame_iou")
    a = ap.parse_args()
    rows = {}
    for item in a.items.split(","):
        s = BenchSettings(method="full", items=(item,), resolution=a.resolution, max_frames=a.max_frames)
        rows[item] = per_frame(Path(a.runs) / item / "run", s)
        print(item, {k: v for k, v in rows[item].items() if k not in ("iou",)}, flush=True)
    out = {"program": "bench/per_frame_iou.py", "date": datetime.date.today().isoformat(),
           "machine": machine_description("cpu"), "commit": git_commit(), "resolution": a.resolution,
           "max_frames": a.max_frames, "items": rows}
    lines = [f"**per-frame input-view IoU** of kept `full` runs on {out['machine']}, {out['date']}, commit "
             f"{out['commit']}; `*` marks a keyframe\n",
             "| item | keyframes: median, mean | every frame: median, mean | in-between minus its keyframes' mean: "
             "median, min | every frame's IoU |", "|---|---|---|---|---|"]
    for item, r in rows.items():
        frames = " ".join(f"{t}{'*' if t in r['keyframes'] else ''}:{v:.3f}" for t, v in enumerate(r["iou"]))
        lines.append(f"| {item} | {r['key_median']}, {r['key_mean']} | {r['all_median']}, {r['all_mean']} | "
                     f"{r['between_minus_keys_median']}, {r['between_minus_keys_min']} | {frames} |")
    write_table(a.name, out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
