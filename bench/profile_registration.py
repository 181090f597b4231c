"""Where a registration step spends its time: each loss term timed alone, and a torch.profiler table.

    python bench/profile_registration.py --device cuda --backend nvdiffrast --preset paper
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

from v2m4 import geometry as GM  # noqa: E402
from v2m4 import render as R  # noqa: E402
from v2m4.optim import SmoothSolver  # noqa: E402
from v2m4.stages import registration as RG  # noqa: E402
from v2m4.stages.registration import align as AL  # noqa: E402
from v2m4.stages.registration.sequence import _normaliser  # noqa: E402
from v2m4.types import Mesh  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from registration_speed import pair  # noqa: E402


def timeit(fn, dev, n=20):
    for _ in range(3):
        fn()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - t0) / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--preset", default="fast")
    a = ap.parse_args()
    dev = torch.device(a.device)
    cfg = RG.RegistrationConfig.paper() if a.preset == "paper" else RG.RegistrationConfig.fast()
    ctx = R.context(a.backend, dev)
    m0, m1 = pair("p01_fox_walk", dev)
    from v2m4.stages.remesh import remesh_isotropic
    rest = remesh_isotropic(m0)
    c, k = _normaliser(rest.vertices)
    rest = Mesh((rest.vertices - c) / k, rest.faces)
    tgt_mesh = Mesh((m1.vertices - c) / k, m1.faces)
    g = torch.Generator().manual_seed(0)
    tgt = RG.Target(tgt_mesh, cfg, ctx, g)
    topo = R.edge_topology(rest.faces)
    edges = GM.unique_edges(rest.faces)
    solver = SmoothSolver(rest.vertices.shape[0], rest.faces, cfg.smooth_lambda)
    u = solver.to_u(rest.vertices).clone().requires_grad_(True)
    samples = AL._sample_sets(rest.faces, GM.face_areas(rest.vertices, rest.faces), cfg.chamfer_points, 4, g)
    picks = tgt.picks(8, cfg.local_views, g)
    rot = RG.arap_rotations(rest.vertices, rest.vertices, edges)
    terms = {
        "solve": lambda: solver.to_x(u),
        "render_l1": lambda: AL._render_l1(ctx, rest, solver.to_x(u), tgt, picks[0], topo),
        "chamfer": lambda: GM.chamfer(GM.barycentric_points(solver.to_x(u), samples[0]), tgt.points),
        "arap(cached R)": lambda: RG.arap_energy(solver.to_x(u), rest.vertices, edges, 1.0, rot),
        "arap rotations": lambda: RG.arap_rotations(rest.vertices, rest.vertices, edges),
        "area+edge": lambda: RG.area_energy(solver.to_x(u), rest.vertices, rest.faces) + RG.edge_energy(
            solver.to_x(u), rest.vertices, edges),
    }
    print(f"V={rest.vertices.shape[0]} F={rest.faces.shape[0]} views={cfg.local_views} res={cfg.render_res} "
          f"backend={a.backend} device={a.device}")
    for name, fn in terms.items():
        fwd = timeit(fn, dev)
        def fb():
            out = fn()
            if out.requires_grad:
                out.sum().backward()
        print(f"  {name:16s} forward {fwd:7.2f} ms   forward+backward {timeit(fb, dev):7.2f} ms")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU] +
                                ([torch.profiler.ProfilerActivity.CUDA] if dev.type == "cuda" else [])) as prof:
        RG.local_align(rest.vertices, rest.vertices, 1.0, rest, tgt, solver, edges,
                       replace(cfg, local_iters=20), ctx, g, topo)
        if dev.type == "cuda":
            torch.cuda.synchronize()
    key = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=50))


if __name__ == "__main__":
    main()
