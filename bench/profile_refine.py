"""The camera search's gradient refinement alone (``refine_poses``), timed per path: replayed as CUDA graphs, the
same static step op by op, and the dynamic step; one frame (the global frame's 300 steps) and eight frames
together (the warm frames' 100 steps), on the bundled demo. Each is run twice (the second is the warm figure),
and each result's refinement loss is evaluated with the dynamic render, so the paths' optima can be compared.

    python bench/profile_refine.py --device cuda --backend nvdiffrast

Prints one JSON object (``--out`` also writes it); a diagnostic, not a table.
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
from v2m4.camera import Camera  # noqa: E402
from v2m4.bench import git_commit, machine_description  # noqa: E402
from v2m4.config import PipelineConfig  # noqa: E402
from v2m4.generators import make_generator  # noqa: E402
from v2m4.io.frames import read_frames  # noqa: E402
from v2m4.scoring import SilhouetteColourScorer  # noqa: E402
from v2m4.stages.camera import sampling as SP  # noqa: E402
from v2m4.stages.camera import search as S  # noqa: E402
from v2m4.stages.camera.refine import refinement_loss  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--preset", default=None)
    ap.add_argument("--profile-steps", type=int, default=30)
    ap.add_argument("--out", default=None)
    ap.add_argument("--paths", nargs="*", default=None, help="only these paths (graphs, static, dynamic)")
    ap.add_argument("--step-times", action="store_true", help="also time each step's visibility pass and step "
                    "(a synchronisation after each) in the first run, to see where a first call's time goes")
    a = ap.parse_args()
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    preset = a.preset or ("paper" if dev.type == "cuda" else "fast")
    cfg = PipelineConfig.preset(preset, device=a.device, backend=a.backend).camera
    ctx = R.context(a.backend, dev)
    scorer = SilhouetteColourScorer()
    demo = ROOT / "examples" / "demo"
    frames = read_frames(demo / "frames", max_size=512)
    gen = make_generator(f"synthetic:{demo}", len(frames))
    ts = list(range(0, len(frames), 2))[:9]
    meshes = [gen.generate(frames.rgba[t], t).to(dev) for t in ts]
    rgba = [frames.rgba[t].to(dev) for t in ts]
    cfgs = [replace(cfg, radius_range=SP.radius_range_for(f, cfg), look_at_range=SP.look_at_range_for(f, cfg))
            for f in rgba]
    search = [SP.make_view(f, cfg.search_res, cfg) for f in rgba]
    refine = [SP.make_view(f, cfg.refine_res, cfg) for f in rgba]
    topo = [R.edge_topology(m.faces, m.vertices) for m in meshes]
    g = torch.Generator().manual_seed(0)
    start, _ = S._global_search(meshes[0], search[0], cfgs[0], ctx, scorer, topo[0], g)

    def loss(ms, poses, vs, tp):
        with torch.no_grad():
            cams = SP.pose_cameras(poses, cfg, vs[0].resolution)
            cams = Camera(torch.stack([v.K for v in vs]).to(cams.K), cams.cam_from_world, vs[0].resolution)
            r = R.render_each(ctx, ms, cams, channels=("rgb", "mask"), topologies=tp, background=0.5)
            return refinement_loss(r["rgb"], r["mask"], torch.stack([v.image for v in vs]), scorer).tolist()

    one, eight = f"one frame, {cfg.refine_iters} steps", f"eight frames, {cfg.warm_refine_iters} steps"
    cases = {one: (meshes[:1], start[None], refine[:1], cfgs[0], cfg.refine_iters, topo[:1]),
             eight: (meshes[1:9], start[None].repeat(8, 1), refine[1:9], cfgs[1],
                                         cfg.warm_refine_iters, topo[1:9])}
    paths = {"graphs": dict(static=None, graphs=True), "static op by op": dict(static=True, graphs=False),
             "dynamic": dict(static=False, graphs=True)}
    if a.paths:
        paths = {k: v for k, v in paths.items() if k.split()[0] in a.paths}
    steps = {"visibility": [], "step": []}
    if a.step_times:
        from v2m4 import _graphs

        def timing(cls, name, label):
            real = getattr(cls, name)

            def wrapper(*args, **kw):
                sync()
                t0 = time.perf_counter()
                out = real(*args, **kw)
                sync()
                steps[label].append(round(1000 * (time.perf_counter() - t0), 2))
                return out
            setattr(cls, name, wrapper)
        timing(_graphs.StepVisibility, "update", "visibility")
        timing(_graphs.StepGraphs, "__call__", "step")
    out = {"machine": machine_description(a.device), "backend": a.backend, "preset": preset, "commit": git_commit(),
           "faces": [int(m.faces.shape[0]) for m in meshes], "start_loss": {}, "runs": []}
    for case, (ms, p0, vs, c, iters, tp) in cases.items():
        out["start_loss"][case] = loss(ms, p0, vs, tp)
        for path, kw in paths.items():
            for rep in range(2):
                sync()
                t0 = time.perf_counter()
                p = S.refine_poses(ms, p0, vs, replace(c, refine_graphs=kw["graphs"]), ctx, iters, tp, scorer,
                                   static=kw["static"])
                sync()
                secs = time.perf_counter() - t0
                out["runs"].append({"case": case, "path": path, "run": rep + 1, "seconds": round(secs, 3),
                                    "ms_per_step": round(1000 * secs / iters, 2),
                                    "loss": [round(x, 5) for x in loss(ms, p, vs, tp)]})
                if a.step_times:  # ms of the first 12 and the total, per part
                    out["runs"][-1]["step_ms"] = {k: (v[:12], round(sum(v), 1)) for k, v in steps.items()}
                    for v in steps.values():
                        v.clear()
                print(json.dumps(out["runs"][-1]), flush=True)
    if dev.type == "cuda" and a.profile_steps:
        from torch.profiler import ProfilerActivity, profile
        ms, p0, vs, c, _, tp = cases[one]
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            S.refine_poses(ms, p0, vs, c, ctx, a.profile_steps, tp, scorer)
            sync()
        ev = prof.key_averages()
        out["profile_host_ms"] = {e.key: round(e.cpu_time_total / 1000, 2) for e in
                                  sorted(ev, key=lambda e: -e.self_cpu_time_total)[:15]}
        out["profile_gpu_ms"] = {e.key: round(e.device_time_total / 1000, 2) for e in
                                 sorted(ev, key=lambda e: -e.device_time_total)[:10]}
        out["profile_calls"] = {e.key: e.count for e in ev if e.key in (
            "cudaStreamSynchronize", "cudaGraphLaunch", "cudaLaunchKernel", "cudaMemcpyAsync", "cudaMalloc",
            "cudaFree")}
    print(json.dumps(out, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
