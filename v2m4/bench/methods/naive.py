"""The paper's "Naive TRELLIS" row (Table 2): every frame's generated mesh on its own, no re-pose, no
registration, no shared texture, seen from one default camera.

The camera is a front view (+Z, looking at the origin where generators centre their output) with the field of
view the camera search uses, at the distance where the first mesh's silhouette area matches the first frame's.
"""

from __future__ import annotations

import math
import time

import torch

from ... import render as R
from ...camera import DEFAULT_FOV_DEG, orbit_camera
from ...config import PipelineConfig
from ...types import Frames, Mesh
from . import MethodOutput

FOV_DEG = DEFAULT_FOV_DEG  # the field of view the camera search assumes


def front_camera(mesh: Mesh, frame_mask: torch.Tensor, ctx: R.RenderContext, *, fov_deg: float = FOV_DEG):
    """One front-view camera at the distance where mesh's silhouette area equals frame_mask's (H, W)."""
    res = tuple(frame_mask.shape[-2:])
    dev = mesh.vertices.device

    def cam(d):
        z = torch.zeros(1, device=dev)
        return orbit_camera(z, z, torch.full((1,), d, device=dev), torch.zeros(1, 3, device=dev), fov_deg=fov_deg,
                            resolution=res)

    radius = float(mesh.vertices.norm(dim=-1).max())
    d = max(3.0, 2.5 * radius / math.tan(math.radians(fov_deg) / 2))
    target = float(frame_mask.sum())
    for _ in range(3):  # area ~ 1 / d^2; a few fixed-point steps absorb the perspective's non-linearity
        with torch.no_grad():
            area = float(R.render(ctx, mesh, cam(d), channels=("mask",))["mask"].sum())
        if area <= 0 or target <= 0:
            break
        d = d * math.sqrt(area / target)
        d = max(d, 1.05 * radius)
    return cam(d)


def run(frames: Frames, generated: list[Mesh], *, config: PipelineConfig, ctx: R.RenderContext,
        generator: torch.Generator | None = None) -> MethodOutput:
    t0 = time.perf_counter()
    camera = front_camera(generated[0], frames.mask[0].to(generated[0].vertices.device), ctx)
    return MethodOutput(meshes=list(generated), camera=camera,
                        stage_seconds={"naive": time.perf_counter() - t0})
