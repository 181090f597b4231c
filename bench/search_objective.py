"""Is the camera search or its objective the limit? The search's own refinement objective at the pose it found
against the objective at the true pose, frame by frame.

The true pose is the generated mesh moved by the inverse of what the synthetic generator removed, seen through
the true camera (the `true_pose` bench row). The objective is what `refine_poses` descends: the mask MSE plus the
weight-free scorer, at the refinement's resolution, on the window the search crops. Where the found pose scores
lower than the true pose, more search cannot help: the generator's noise and decimation have moved the
objective's minimum away from the truth, and only a better objective (a learned scorer, more views) could.

    python bench/search_objective.py --out bench/results/search_objective.json
    python bench/search_objective.py --device cuda --backend nvdiffrast --preset paper --resolution 256 \
        --frames 12 --out bench/results/search_objective_h200.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from v2m4 import render as R  # noqa: E402
from v2m4.bench import git_commit, load_selected_item, machine_description, true_pose_output  # noqa: E402
from v2m4.camera import Camera  # noqa: E402
from v2m4.config import PipelineConfig  # noqa: E402
from v2m4.data.bench import list_items  # noqa: E402
from v2m4.generators.synthetic import SyntheticGenerator  # noqa: E402
from v2m4.metrics.pose import pose_errors  # noqa: E402
from v2m4.scoring import SilhouetteColourScorer  # noqa: E402
from v2m4.stages.camera import CameraResult, make_view, pose_cameras, repose_scales, search_poses  # noqa: E402
from v2m4.stages.camera.search import refinement_loss  # noqa: E402
from _common import BENCH_DIR  # noqa: E402


def objective(ctx, mesh, cam: Camera, frame: torch.Tensor, scorer) -> float:
    """refine_poses' loss of one view (``refinement_loss``)."""
    with torch.no_grad():
        r = R.render(ctx, mesh, cam, channels=("rgb", "mask"), background=0.5)
        return float(refinement_loss(r["rgb"], r["mask"], frame[None], scorer)[0])


def world_from_canonical(meshes, found, times: torch.Tensor, cfg) -> torch.Tensor:
    """(K, 4, 4): the re-pose of the found cameras, as the camera stage (``search_cameras``) makes it."""
    scales = repose_scales(meshes, found.cameras.cam_from_world, times, cfg)
    result = CameraResult(found.cameras, scales, found.global_search.cpu().bool(),
                          torch.tensor(found.seconds, dtype=torch.float64))
    return result.repose(meshes)[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", default=None, help="comma-separated ids (default: every p* item)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    dev = torch.device(a.device)
    cfg = PipelineConfig.preset(a.preset).camera
    scorer = SilhouetteColourScorer()
    head = {"machine": machine_description(a.device), "device": a.device, "backend": a.backend, "preset": a.preset,
            "resolution": a.resolution, "frames": a.frames, "seed": a.seed, "commit": git_commit(),
            "date": time.strftime("%Y-%m-%d")}
    rows = []
    print("| item | found <= true (frames) | objective found / true (median) | rot_err_med_deg | trans_err_med | sec |")
    print("|---|---|---|---|---|---|")
    items = a.items.split(",") if a.items else [i for i in list_items(BENCH_DIR) if i.startswith("p")]
    for item_id in items:
        item = load_selected_item(item_id, a.frames, a.resolution, BENCH_DIR)
        gen = SyntheticGenerator(item, seed=0)
        meshes = [gen.generate(item.frames.rgba[t], t).to(dev) for t in range(len(item.frames))]
        ctx = R.context(a.backend, dev)
        t0 = time.perf_counter()
        found = search_poses(meshes, item.frames, cfg, ctx, generator=torch.Generator().manual_seed(a.seed))
        sec = time.perf_counter() - t0
        true = true_pose_output(item, gen, meshes)
        f_found, f_true = [], []
        for t in range(len(meshes)):
            view = make_view(item.frames.rgba[t].to(dev), cfg.refine_res, cfg)
            res = view.resolution
            f_found.append(objective(ctx, meshes[t], pose_cameras(found.poses[t:t + 1], cfg, res, view.K),
                                     view.image, scorer))
            f_true.append(objective(ctx, true.meshes[t], Camera(view.K[None], true.camera.cam_from_world, res),
                                    view.image, scorer))
        W = world_from_canonical(meshes, found, item.frames.times, cfg)
        removed = torch.stack([gen.removed_transform(t) for t in range(len(meshes))])
        err = pose_errors(W.cpu(), removed, item.gt_vertices)
        beats = sum(x <= y for x, y in zip(f_found, f_true))
        ratio = statistics.median(x / y for x, y in zip(f_found, f_true))
        rows.append({"item": item_id, "found_beats_true": beats, "frames": len(meshes), "ratio_median": ratio,
                     "objective_found": [round(x, 6) for x in f_found],
                     "objective_true": [round(x, 6) for x in f_true], **err, "sec": sec})
        if a.out:  # after every row, so a run cut short keeps what it measured
            Path(a.out).write_text(json.dumps({**head, "rows": rows}, indent=1) + "\n")
        print(f"| {item_id} | {beats}/{len(meshes)} | {ratio:.3f} | {err['rot_err_med_deg']:.2f} | "
              f"{err['trans_err_med']:.4f} | {sec:.1f} |", flush=True)


if __name__ == "__main__":
    main()
