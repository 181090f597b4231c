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

Each kept run is resumed (``reconstruct(resume=True)``): stages whose checkpoints are missing run again.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from v2m4 import render as R  # noqa: E402
from v2m4.bench import (PIPELINE_METHODS, BenchSettings, _render_outputs, git_commit,  # noqa: E402
                        machine_description, pipeline_config, synthetic_generator)
from v2m4.data.bench import item_dir, load_item  # noqa: E402
from v2m4.io.frames import read_frames  # noqa: E402
from v2m4.metrics import image as I  # noqa: E402
from v2m4.pipeline import reconstruct  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def per_frame(run: Path, settings: BenchSettings) -> dict:
    item_id = settings.items[0]
    path = item_dir(item_id, settings.bench_dir)
    fps = float(json.loads((path / "meta.json").read_text())["fps"])
    cfg = PIPELINE_METHODS[settings.method](pipeline_config(settings))
    frames = read_frames(path / "frames", fps=fps, max_size=cfg.resolution)
    gen = synthetic_generator(load_item(path), settings)
    res = reconstruct(frames, gen, cfg, run_dir=run, resume=True, log="quiet")
    anim = res.animation
    with torch.no_grad():
        _, mask = _render_outputs(R.context("torch", "cpu"), [anim.frame(t) for t in range(len(anim))],
                                  res.video_camera)
    iou = [round(v, 4) for v in I.mask_iou(mask, frames.rgba[..., 3]).tolist()]
    key = res.keyframes.tolist()
    between = [t for t in range(len(iou)) if t not in key and key[0] < t < key[-1]]
    # each in-between frame against the mean of the keyframes on either side of it
    diffs = []
    for t in between:
        hi = next(k for k in key if k > t)
        lo = max(k for k in key if k < t)
        diffs.append(iou[t] - (iou[lo] + iou[hi]) / 2)
    keyed = [iou[k] for k in key]
    return {"iou": iou, "keyframes": key,
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
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{a.name}.json").write_text(json.dumps(out, indent=1) + "\n")
    lines = [f"**per-frame input-view IoU** of kept `full` runs on {out['machine']}, {out['date']}, commit "
             f"{out['commit']}; `*` marks a keyframe\n",
             "| item | keyframes: median, mean | every frame: median, mean | in-between minus its keyframes' mean: "
             "median, min | every frame's IoU |", "|---|---|---|---|---|"]
    for item, r in rows.items():
        frames = " ".join(f"{t}{'*' if t in r['keyframes'] else ''}:{v:.3f}" for t, v in enumerate(r["iou"]))
        lines.append(f"| {item} | {r['key_median']}, {r['key_mean']} | {r['all_median']}, {r['all_mean']} | "
                     f"{r['between_minus_keys_median']}, {r['between_minus_keys_min']} | {frames} |")
    (RESULTS / f"{a.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
