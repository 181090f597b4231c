"""Bench method `camera`: per-frame camera search and re-pose, no registration (Sec. 4.1)."""

from __future__ import annotations

import time
from dataclasses import replace

import torch

from .. import render as R
from ..errors import V2M4Error
from ..stages.camera_search import CameraSearchConfig, CameraSearchResult, repose, repose_scales, search_cameras
from ..types import Frames, Mesh
from . import MethodOutput


def camera_config(preset: str) -> CameraSearchConfig:
    """"fast" (CPU) or "paper", with optional suffixes: "-cold" turns the temporal warm start off (every frame
    searched globally), "-back" turns the backward pass on and "-noback" off."""
    base, *suffixes = preset.split("-")
    cfg = CameraSearchConfig.paper() if base == "paper" else CameraSearchConfig.fast()
    if base == "tiny":  # smoke tests of the whole pipeline: every code path, minimal work
        cfg = replace(cfg, n_samples=64, n_particles=8, pso_iters=2, refine_iters=5, search_res=32, refine_res=48,
                      warm_particles=6, warm_iters=1, warm_refine_iters=3)
    flags = {"cold": {"warm_start": False}, "back": {"backward_pass": True}, "noback": {"backward_pass": False}}
    for sfx in suffixes:
        if sfx not in flags:
            raise V2M4Error(f"unknown preset suffix -{sfx} in {preset!r}; known: " + ", ".join(f"-{k}" for k in flags))
        cfg = replace(cfg, **flags[sfx])
    return cfg


def repose_all(generated: list[Mesh], found: CameraSearchResult, times: torch.Tensor, cfg: CameraSearchConfig
               ) -> tuple[list[Mesh], torch.Tensor]:
    """Every frame's mesh in the world of the video camera. Returns the meshes and world_from_canonical (T, 4, 4).

    The video camera is the first frame's found camera, so the world is the first mesh's canonical frame: +Y up
    as the generator made it (a fixed camera looking down -Z would tilt the ground by the video's pitch) and the
    first mesh keeps its size. Each mesh is then scaled about the camera centre as the config asks
    (``repose_scales``: equal surface areas, depths smoothed over time), which leaves every image unchanged.
    """
    world_from_cam = found.cameras.world_from_cam[0]
    k = repose_scales(generated, found.cameras.cam_from_world, times, cfg)
    out = [repose(m, found.cameras.cam_from_world[t], world_from_cam, scale=float(k[t]))
           for t, m in enumerate(generated)]
    return [m for m, _ in out], torch.stack([M for _, M in out])


def run(frames: Frames, generated: list[Mesh], *, preset: str = "fast", ctx: R.RenderContext,
        generator: torch.Generator | None = None) -> MethodOutput:
    g = generator or torch.Generator().manual_seed(0)
    cfg = camera_config(preset)
    t0 = time.perf_counter()
    found = search_cameras(generated, frames, cfg, ctx, generator=g)
    meshes, world_from_canonical = repose_all(generated, found, frames.times, cfg)
    secs = time.perf_counter() - t0
    glob = found.global_search
    sec = torch.tensor(found.seconds)
    extras = {"global_search_frac": float(glob.float().mean()),
              "sec_global_frame": float(sec[glob].mean()) if glob.any() else float("nan"),
              "sec_warm_frame": float(sec[~glob].mean()) if (~glob).any() else float("nan")}
    return MethodOutput(meshes=meshes, camera=found.cameras[0], world_from_canonical=world_from_canonical.cpu(),
                        extras={k: v for k, v in extras.items() if v == v}, stage_seconds={"camera": secs})
