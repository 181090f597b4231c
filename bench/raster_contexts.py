"""The whole-clip fit with one nvdiffrast rasteriser context per batch shape against one shared context.

nvdiffrast's CUDA rasteriser frees and reallocates its buffers whenever a call's batch shape differs from the
previous call's, and the fit's step renders two shapes (the keyframes' views, the video's frames). This times the
demo's registration both ways, alternating, on the same inputs: ``render._nvdiffrast.raster_context`` (one context
per shape, the default) and the same function made to hand back the one context every time (the code before it).

The inputs are the demo's registration inputs, captured once (``--save-inputs``, any machine: the camera stage runs
there) so that the device spends its time on registration alone:

    python bench/raster_contexts.py --save-inputs demo_registration.pt                  # CPU, once
    python bench/raster_contexts.py --inputs demo_registration.pt --device cuda        # the device
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import v2m4.pipeline as P  # noqa: E402
from v2m4 import render as R  # noqa: E402
from v2m4.bench import git_commit, machine_description  # noqa: E402
from v2m4.camera import Camera  # noqa: E402
from v2m4.config import PipelineConfig  # noqa: E402
from v2m4.generators import make_generator  # noqa: E402
from v2m4.io.frames import read_frames  # noqa: E402
from v2m4.render import _nvdiffrast  # noqa: E402
from v2m4.stages.registration.joint import register_clip  # noqa: E402
from v2m4.types import Mesh  # noqa: E402
from _common import write_table  # noqa: E402

DEMO = ROOT / "examples" / "demo"


class _Captured(Exception):
    """Raised once registration's inputs are saved: the run stops there."""


def save_inputs(path: Path) -> None:
    # the fast preset's camera stage at the paper preset's resolution: the masks are the paper run's size
    cfg = replace(PipelineConfig.preset("fast"), resolution=PipelineConfig.preset("paper").resolution)
    frames = read_frames(DEMO / "frames", max_size=cfg.resolution)

    def capture(meshes, key, masks, camera, *a, times, **k):
        torch.save({"meshes": [(m.vertices.cpu(), m.faces.cpu()) for m in meshes], "key": key.cpu(),
                    "masks": masks.cpu().contiguous().clone(), "K": camera.K.cpu(),
                    "cam_from_world": camera.cam_from_world.cpu(), "resolution": list(camera.resolution),
                    "times": times.cpu()}, path)
        raise _Captured

    P.register_clip = capture
    try:
        P.reconstruct(frames, make_generator(f"synthetic:{DEMO}", len(frames)), cfg, log="quiet")
    except _Captured:
        print(f"wrote {path}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--save-inputs", default=None)
    ap.add_argument("--inputs", default=None)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--iters", type=int, default=300, help="joint steps per run (the paper's 1,000: a third)")
    ap.add_argument("--global-iters", type=int, default=150)
    ap.add_argument("--name", default="raster_contexts")
    a = ap.parse_args()
    if a.save_inputs:
        save_inputs(Path(a.save_inputs))
        return 0
    d = torch.load(a.inputs, weights_only=False)
    dev = torch.device(a.device)
    meshes = [Mesh(v.to(dev), f.to(dev)) for v, f in d["meshes"]]
    camera = Camera(d["K"].to(dev), d["cam_from_world"].to(dev), tuple(d["resolution"]))
    cfg = replace(PipelineConfig.preset("paper").joint, iters=a.iters, global_iters=a.global_iters)
    ctx = R.context("nvdiffrast", dev)
    per_shape = _nvdiffrast.raster_context

    def shared(c, shape, keep=4):
        return c._glctx

    rows = {"one context per shape": [], "one shared context": []}
    for r in range(a.repeats + 1):  # the first round warms up (plugin, kernels, graphs) and is not kept
        for name, fn in (("one context per shape", per_shape), ("one shared context", shared)):
            _nvdiffrast.raster_context = fn
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            res = register_clip(meshes, d["key"].to(dev), d["masks"].to(dev), camera, cfg, ctx,
                                generator=torch.Generator().manual_seed(0), times=d["times"].to(dev))
            torch.cuda.synchronize()
            wall = time.perf_counter() - t0
            if r:
                rows[name].append({"seconds": round(wall, 2), "global_ms_per_step": round(1000 * res.seconds[1] /
                                   cfg.global_iters, 2), "fit_ms_per_step": round(1000 * res.seconds[2] / cfg.iters, 2),
                                   "chamfer_mean": float(sum(res.chamfer) / len(res.chamfer))})
            print(r, name, rows[name][-1] if r else round(wall, 2), flush=True)
    _nvdiffrast.raster_context = per_shape
    out = {"program": "bench/raster_contexts.py", "date": datetime.date.today().isoformat(),
           "machine": machine_description(a.device), "commit": git_commit(), "iters": a.iters,
           "global_iters": a.global_iters, "rows": rows}
    lines = [f"**nvdiffrast contexts** on {out['machine']}, {out['date']}, commit {out['commit']}: the demo's "
             f"registration at the paper preset with {a.global_iters} global and {a.iters} joint steps, each way "
             f"{a.repeats} times in turn after a warm-up round\n",
             "| rasteriser contexts | seconds (each run) | global ms/step | fit ms/step |", "|---|---|---|---|"]
    for name, rs in rows.items():
        lines.append(f"| {name} | {', '.join(str(x['seconds']) for x in rs)} | "
                     f"{min(x['global_ms_per_step'] for x in rs)} | {min(x['fit_ms_per_step'] for x in rs)} |")
    write_table(a.name, out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
