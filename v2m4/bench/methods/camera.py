"""Bench method `camera`: per-frame camera search and re-pose, no registration (Sec. 4.1)."""

from __future__ import annotations

import time

import torch

from ... import render as R
from ...config import PipelineConfig
from ...stages.camera import search_cameras
from ...types import Frames, Mesh
from . import MethodOutput


def run(frames: Frames, generated: list[Mesh], *, config: PipelineConfig, ctx: R.RenderContext,
        generator: torch.Generator | None = None) -> MethodOutput:
    """Every frame's generated mesh, found and re-posed into the world of the video camera (the first frame's)."""
    g = generator or torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    found = search_cameras(generated, frames, frames.times, config.camera, ctx, generator=g)
    meshes, world_from_canonical = found.repose(generated)
    secs = time.perf_counter() - t0
    glob, sec = found.global_search, found.seconds
    extras = {"global_search_frac": float(glob.float().mean()),
              "sec_global_frame": float(sec[glob].mean()) if glob.any() else float("nan"),
              "sec_warm_frame": float(sec[~glob].mean()) if (~glob).any() else float("nan")}
    return MethodOutput(meshes=meshes, camera=found.video_camera, world_from_canonical=world_from_canonical,
                        extras={k: v for k, v in extras.items() if v == v}, stage_seconds={"camera": secs})
