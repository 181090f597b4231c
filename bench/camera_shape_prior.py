"""The camera search's shape-continuity term (``CameraSearchConfig.shape_weight``) against none, over seeds:
rotation and translation errors and the once-aligned F-score of the re-posed meshes per item, seed and setting. The
GPU search is not deterministic, so one seed per setting says little; this runs several.

    python bench/camera_shape_prior.py --device cuda --backend nvdiffrast --items p03_cesiumman_walk \\
        --seeds 0,1,2 --settings 0:all,0.1:all,0.1:choice,0.03:all --out bench/results/camera_shape_prior_h200.json

A setting is WEIGHT:WHERE, WHERE "all" (warm swarm, fallback swarm, warm-versus-global choice) or "choice"
(``shape_swarm=False``: the fallback's swarm and the choice only).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from v2m4 import render as R  # noqa: E402
from v2m4.bench import load_selected_item, machine_description  # noqa: E402
from v2m4.config import PipelineConfig  # noqa: E402
from v2m4.generators.synthetic import SyntheticGenerator  # noqa: E402
from v2m4.metrics import geometry as G  # noqa: E402
from v2m4.metrics.pose import pose_errors  # noqa: E402
from v2m4.stages.camera import search_cameras  # noqa: E402
from _common import BENCH_DIR  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", default="p03_cesiumman_walk,p09_quaternius_stag_gallop")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--settings", default="0:all,0.1:all")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    dev = torch.device(a.device)
    rows = []
    for item_id in a.items.split(","):
        item = load_selected_item(item_id, a.frames, a.resolution, BENCH_DIR)
        gen = SyntheticGenerator(item, seed=0)
        meshes = [gen.generate(item.frames.rgba[t], t).to(dev) for t in range(len(item.frames))]
        removed = torch.stack([gen.removed_transform(t) for t in range(len(item.frames))])
        ctx = R.context(a.backend, dev)
        for setting in a.settings.split(","):
            w, _, where = setting.partition(":")
            cfg = replace(PipelineConfig.preset(a.preset).camera, shape_weight=float(w), shape_swarm=where != "choice")
            for seed in (int(s) for s in a.seeds.split(",")):
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                found = search_cameras(meshes, item.frames, item.frames.times, cfg, ctx,
                                       generator=torch.Generator().manual_seed(seed))
                out, W = found.repose(meshes)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                sec = time.perf_counter() - t0
                geo = G.sequence_geometry_scores([m.vertices.cpu() for m in out], [m.faces.cpu() for m in out],
                                                 item.gt_vertices, item.faces, n_points=4000, seed=0)
                row = {"item": item_id, "weight": float(w), "where": where or "all", "seed": seed, "sec": sec,
                       **pose_errors(W.cpu(), removed.cpu(), item.gt_vertices.cpu()),
                       "fscore2_once": geo["fscore2_once"], "fscore2_once_first": geo["fscore2_once_first"],
                       "fscore2_once_last": geo["fscore2_once_last"]}
                rows.append(row)
                print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                      flush=True)
    if a.out:
        head = {"machine": machine_description(a.device), "preset": a.preset, "resolution": a.resolution,
                "frames": a.frames, "backend": a.backend}
        Path(a.out).write_text(json.dumps({**head, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
