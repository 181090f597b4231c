"""Bench method ``register``: camera search and re-pose (Sec. 4.1), then topology-consistent registration
(Sec. 4.3). The output is one mesh (the first frame's, with its generated colours) moving through every frame."""

from __future__ import annotations

import statistics
import time
from dataclasses import replace

import torch

from .. import render as R
from ..stages.registration import RegistrationConfig, edge_change, register_sequence, unique_edges
from ..types import Frames, Mesh
from . import MethodOutput
from . import camera as camera_method


def registration_config(preset: str) -> RegistrationConfig:
    base = preset.split("-")[0]
    if base == "tiny":  # smoke tests of the whole pipeline
        return replace(RegistrationConfig.fast(), global_iters=4, local_iters=6, render_res=32, view_pool=6,
                       global_views=2, local_views=2, chamfer_points=200, sample_sets=2, input_view_iters=3)
    return RegistrationConfig.paper() if base == "paper" else RegistrationConfig.fast()


def sequence_quality(vertices: torch.Tensor, rest: Mesh) -> dict[str, float]:
    """Collapse measures of a registered sequence against its rest mesh: the 99th percentile of relative edge-length
    change over all frames and edges, and the largest per-frame share of folded or collapsed triangles."""
    from ..stages.registration import flipped_fraction
    edges = unique_edges(rest.faces)
    ch = torch.cat([edge_change(v, rest.vertices, edges) for v in vertices[1:]]) if len(vertices) > 1 else \
        torch.zeros(1)
    fl = [flipped_fraction(v, rest.vertices, rest.faces, edges) for v in vertices[1:]] or [0.0]
    return {"edge_change_p99": float(torch.quantile(ch.double().cpu(), 0.99)), "flipped_frac": max(fl)}


def stages(frames: Frames, generated: list[Mesh], *, preset: str, ctx: R.RenderContext,
           generator: torch.Generator | None = None):
    """Camera search + re-pose, then registration: (camera MethodOutput, RegistrationResult, seconds)."""
    cam = camera_method.run(frames, generated, preset=preset, ctx=ctx, generator=generator)
    cfg = registration_config(preset)
    t0 = time.perf_counter()
    res = register_sequence(cam.meshes, cfg, ctx, times=frames.times)
    return cam, res, time.perf_counter() - t0


def registration_extras(cam: MethodOutput, res) -> dict[str, float]:
    seq = res.sequence
    extras = dict(cam.extras)
    extras.update(sequence_quality(seq.vertices, seq.rest))
    if res.chamfer:
        extras["chamfer_generated"] = statistics.median(res.chamfer)
        extras["chamfer_generated_max"] = max(res.chamfer)
        extras["sec_per_pair"] = statistics.mean(res.seconds)
        extras["retried_pairs"] = float(sum(res.retried))
    return extras


def run(frames: Frames, generated: list[Mesh], *, preset: str = "fast", ctx: R.RenderContext,
        generator: torch.Generator | None = None) -> MethodOutput:
    cam, res, secs = stages(frames, generated, preset=preset, ctx=ctx, generator=generator)
    seq = res.sequence
    return MethodOutput(meshes=[seq.mesh(k) for k in range(len(seq))], camera=cam.camera,
                        world_from_canonical=cam.world_from_canonical, extras=registration_extras(cam, res),
                        stage_seconds={**cam.stage_seconds, "register": secs})
