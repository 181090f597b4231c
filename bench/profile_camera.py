"""Where a warm-started camera-search frame spends its time: the local swarm, the gradient refinement (and one of
its steps), the final score, each timed alone on one bench item.

    python bench/profile_camera.py --device cuda --backend nvdiffrast --preset paper --item p01_fox_walk
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from v2m4 import render as R  # noqa: E402
from v2m4.config import PipelineConfig  # noqa: E402
from v2m4.data.bench import load_item  # noqa: E402
from v2m4.generators.synthetic import SyntheticGenerator  # noqa: E402
from v2m4.scoring import SilhouetteColourScorer  # noqa: E402
from v2m4.stages.camera import sampling as SP  # noqa: E402
from v2m4.stages.camera import search as S  # noqa: E402
from _common import BENCH_DIR  # noqa: E402


def timed(fn, dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--item", default="p01_fox_walk")
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--res", type=int, default=256)
    a = ap.parse_args()
    dev = torch.device(a.device)
    item = load_item(a.item, frames=list(range(0, 4 * a.frames, 4)), resolution=(a.res, a.res), bench_dir=BENCH_DIR)
    gen = SyntheticGenerator(item, seed=0)
    meshes = [gen.generate(item.frames.rgba[t], t).to(dev) for t in range(len(item.frames))]
    cfg = PipelineConfig.preset(a.preset).camera
    ctx = R.context(a.backend, dev)
    scorer = SilhouetteColourScorer()
    g = torch.Generator().manual_seed(0)
    print(f"{a.item} {a.preset} {a.backend} on {dev}; faces per mesh {[int(m.faces.shape[0]) for m in meshes]}")

    def views(t):
        frame = item.frames.rgba[t].to(dev)
        c = replace(cfg, radius_range=SP.radius_range_for(frame, cfg), look_at_range=SP.look_at_range_for(frame, cfg))
        return c, SP.make_view(frame, cfg.search_res, cfg), SP.make_view(frame, cfg.refine_res, cfg)

    c0, s0, r0 = views(0)
    topo = R.edge_topology(meshes[0].faces)
    (pose, _), t_glob = timed(lambda: S._global_search(meshes[0], s0, c0, ctx, scorer, topo, g), dev)
    pose, t_ref0 = timed(lambda: S.refine_pose(meshes[0], pose, r0, c0, ctx, c0.refine_iters, topo, scorer), dev)
    print(f"frame 0 (global): search {t_glob:.3f} s, refine {t_ref0:.3f} s ({c0.refine_iters} steps)")
    for t in range(1, len(meshes)):
        ct, st, rt = views(t)
        mesh = meshes[t]
        topo, t_topo = timed(lambda: R.edge_topology(mesh.faces), dev)
        (p, _), t_local = timed(lambda: S._local_search(mesh, st, pose, ct, ctx, scorer, topo, g), dev)
        p2, t_ref = timed(lambda: S.refine_pose(mesh, p, rt, ct, ctx, ct.warm_refine_iters, topo, scorer), dev)
        _, t_one = timed(lambda: S.refine_pose(mesh, p, rt, ct, ctx, 1, topo, scorer), dev)
        _, t_score = timed(lambda: S.score_poses(mesh, p2[None], st, ct, ctx, scorer, topo), dev)
        batch = p2[None].repeat(ct.warm_particles, 1)
        _, t_batch = timed(lambda: S.score_poses(mesh, batch, st, ct, ctx, scorer, topo), dev)
        print(f"frame {t} (warm): topology {t_topo:.3f}, local swarm {t_local:.3f} s ({ct.warm_iters + 1} scorings "
              f"of {ct.warm_particles} views at {ct.search_res}², one {t_batch * 1000:.1f} ms), refine {t_ref:.3f} s "
              f"({ct.warm_refine_iters} steps at {ct.refine_res}², one {t_one * 1000:.1f} ms), score {t_score * 1000:.1f} ms,"
              f" total {t_topo + t_local + t_ref + t_score:.3f} s")
        pose = p2


if __name__ == "__main__":
    main()
