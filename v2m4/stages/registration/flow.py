"""The video's own motion as evidence for the whole-clip fit: dense optical flow between consecutive frames, and a
term asking every vertex the video sees to move in the image as the flow says.

Silhouettes and the keyframes' targets fix the surface, not where each vertex lies on it: a vertex may slide along
the surface from frame to frame and no such term changes. The flow sees that sliding wherever the object is
textured, so it ties each frame's vertices to the same points of the object as the next frame's. The flow is
OpenCV's DIS (Kroeger et al. 2016; weight-free), kept only where forward and backward flow agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ... import render as R
from ...camera import Camera
from ...errors import V2M4Error
from ...types import Mesh


@dataclass(frozen=True)
class VideoFlow:
    """forward (T-1, H, W, 2): each pixel's motion in pixels (u, v) from frame t to frame t+1; reliable
    (T-1, H, W) bool: inside frame t's mask, ending inside frame t+1's, and the backward flow from its end
    returning within ``consistency`` pixels (occlusions and textureless areas fail this)."""

    forward: Tensor
    reliable: Tensor

    def __len__(self) -> int:
        return self.forward.shape[0] + 1


def flow_tensors(flow: VideoFlow | None) -> tuple[Tensor, ...]:
    """What a saved fit's digest must cover of the flow (nothing without one)."""
    return () if flow is None else (flow.forward, flow.reliable)


def video_flow(rgba: Tensor, *, consistency: float = 0.5) -> VideoFlow:
    """Dense flow between consecutive frames of rgba (T, H, W, 4) float in [0, 1] (alpha: the object's mask)."""
    try:
        import cv2
    except ImportError:
        raise V2M4Error("the video's optical flow needs OpenCV: pip install opencv-python-headless") from None
    if rgba.ndim != 4 or rgba.shape[0] < 2:
        raise V2M4Error(f"optical flow needs at least two frames (T, H, W, 4), got {tuple(rgba.shape)}")
    rgb = (rgba[..., :3].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in rgb]
    mask = rgba[..., 3].cpu().numpy() > 0.5
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    T, H, W = mask.shape
    v, u = np.mgrid[0:H, 0:W].astype(np.float32)
    fw, ok = np.zeros((T - 1, H, W, 2), np.float32), np.zeros((T - 1, H, W), bool)
    for t in range(T - 1):
        f = dis.calc(grey[t], grey[t + 1], None)
        b = dis.calc(grey[t + 1], grey[t], None)
        eu, ev = u + f[..., 0], v + f[..., 1]
        back = cv2.remap(b, eu, ev, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=1e3)
        inside = cv2.remap(mask[t + 1].astype(np.float32), eu, ev, cv2.INTER_NEAREST, borderValue=0) > 0.5
        fw[t] = f
        ok[t] = mask[t] & inside & (np.linalg.norm(f + back, axis=-1) < consistency)
    return VideoFlow(torch.from_numpy(fw), torch.from_numpy(ok))


class FlowTerm:
    """The flow's term of positions x (T, V, 3) (world frame) seen by the fixed video camera: for every frame pair
    and every vertex visible in both frames where the flow is reliable, the Charbonnier penalty (pixels) of its
    image motion against the flow at its pixel, averaged over those vertices. Which vertices count and the flow
    each should follow are read at ``refresh`` (held fixed between refreshes, as the ARAP rotations are), into
    tensors updated in place so a captured step reads them."""

    def __init__(self, flow: VideoFlow, camera: Camera, n_vertices: int, device, dtype):
        T = len(flow)
        self.camera = Camera(camera.K.expand(T, 3, 3), camera.cam_from_world.expand(T, 4, 4), camera.resolution)
        H, W = camera.resolution
        if tuple(flow.forward.shape[1:3]) != (H, W):
            raise V2M4Error(f"the flow's frames are {tuple(flow.forward.shape[1:3])}, the camera's {(H, W)}")
        self.field = flow.forward.to(device, dtype).permute(0, 3, 1, 2).contiguous()  # (T-1, 2, H, W)
        self.reliable = flow.reliable.to(device, dtype)[:, None]  # (T-1, 1, H, W)
        self.size = torch.tensor([W, H], device=device, dtype=dtype)
        self.target = torch.zeros(T - 1, n_vertices, 2, device=device, dtype=dtype)
        self.weight = torch.zeros(T - 1, n_vertices, device=device, dtype=dtype)
        self.ready = False

    def _grid(self, pix: Tensor) -> Tensor:
        return (pix / self.size * 2 - 1)[:, :, None]  # pixel corners at integers: align_corners=False

    @torch.no_grad()
    def refresh(self, ctx, template: Mesh, x: Tensor) -> None:
        """Which vertices count, and the flow at each one's pixel, at positions x (T, V, 3)."""
        seen = visible_vertices(ctx, template, self.camera, x)
        pix, _ = self.camera.project(x)
        grid = self._grid(pix[:-1])
        flow = torch.nn.functional.grid_sample(self.field, grid, align_corners=False)[..., 0].transpose(1, 2)
        ok = torch.nn.functional.grid_sample(self.reliable, grid, mode="nearest", align_corners=False)[:, 0, :, 0]
        self.target.copy_(flow)
        self.weight.copy_((seen[:-1] & seen[1:]).to(ok) * (ok > 0.5).to(ok))
        self.ready = True

    def saved(self) -> dict:
        """What a resumed fit needs to go on as an uninterrupted one: the held targets and weights."""
        return {"target": self.target, "weight": self.weight, "ready": self.ready}

    def load(self, saved: dict) -> None:
        self.target.copy_(saved["target"])
        self.weight.copy_(saved["weight"])
        self.ready = bool(saved["ready"])

    def __call__(self, x: Tensor) -> Tensor:
        """(T-1,) each frame pair's mean penalty."""
        pix, _ = self.camera.project(x)
        d = pix[1:] - pix[:-1] - self.target
        rho = torch.sqrt((d * d).sum(-1) + 1.0) - 1.0  # quadratic under a pixel, linear past it
        return (self.weight * rho).sum(1) / self.weight.sum(1).clamp_min(1.0)


@torch.no_grad()
def visible_vertices(ctx, template: Mesh, camera: Camera, x: Tensor) -> Tensor:
    """(T, V) bool: vertex v of positions x (T, V, 3) is the surface the camera (T views) sees at its pixel: the
    rendered surface point there lies within the frame's median edge length of it. A distance, not a depth ratio:
    a piece a little behind another (a strap, a wheel) is hidden however far the camera is."""
    points = R.render(ctx, template, camera, channels=("points", "mask"), vertices=x, antialias_edges=False)
    pix, _ = camera.project(x)
    H, W = camera.resolution
    u = pix[..., 0].floor().long().clamp(0, W - 1)
    v = pix[..., 1].floor().long().clamp(0, H - 1)
    at = (v * W + u)[..., None].expand(-1, -1, 3)
    seen = points["points"].flatten(1, 2).gather(1, at)
    covered = points["mask"].flatten(1).gather(1, v * W + u) > 0.5
    e = template.faces[:, :2]
    edge = (x[:, e[:, 0]] - x[:, e[:, 1]]).norm(dim=-1).median(dim=1).values  # (T,)
    return covered & ((seen - x).norm(dim=-1) <= edge[:, None])
