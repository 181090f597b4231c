"""Poses of the camera search (Sec. 4.1, Appendix A): sampling, bounds, cameras, and the views renders are compared with.

Pose vector (P, 7): yaw, pitch, radius, look-at x, y, z, roll (radians; see v2m4/camera.py for the orbit
convention); the field of view is fixed (``CameraSearchConfig.fov_deg``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ... import render as R
from ...camera import Camera, intrinsics_from_fov, orbit_camera
from ...scoring import Scorer
from ...types import Mesh
from .config import CameraSearchConfig


def pose_bounds(cfg: CameraSearchConfig, device) -> tuple[Tensor, Tensor]:
    """(7,) lower and upper bounds of a pose: full yaw turn, pitch short of the poles, cfg's radius and look-at
    ranges, and roll within cfg.roll_range (0 when roll is off)."""
    r0, r1 = cfg.radius_range
    L = cfg.look_at_range
    roll = cfg.roll_range if cfg.roll else 0.0
    lo = torch.tensor([-math.pi, -math.pi / 2 + 0.01, r0, -L, -L, -L, -roll], device=device)
    hi = torch.tensor([math.pi, math.pi / 2 - 0.01, r1, L, L, L, roll], device=device)
    return lo, hi


def sample_poses(n: int, cfg: CameraSearchConfig, *, generator: torch.Generator, device=None) -> Tensor:
    """(n, 7) poses: yaw/pitch equal-area on the sphere, radius with square-root spacing, look-at uniform."""
    u = torch.rand(n, 5, generator=generator)
    yaw = (u[:, 0] * 2 - 1) * math.pi
    pitch = torch.asin(u[:, 1] * 2 - 1)  # sin(pitch) uniform: equal area
    r0, r1 = cfg.radius_range
    radius = torch.sqrt(r0 ** 2 + u[:, 2] * (r1 ** 2 - r0 ** 2))  # density grows with r, like a sphere's area
    look = (torch.rand(n, 3, generator=generator) * 2 - 1) * cfg.look_at_range
    roll = torch.zeros(n)
    return torch.cat([yaw[:, None], pitch[:, None], radius[:, None], look, roll[:, None]], 1).to(device)


def pose_cameras(poses: Tensor, cfg: CameraSearchConfig, resolution: tuple[int, int], K: Tensor | None = None) -> Camera:
    """(P, 7) poses -> P cameras, differentiable in the poses. K (3, 3): intrinsics of a window of the frame
    (see SearchView), else the full frame's at cfg.fov_deg."""
    cams = orbit_camera(poses[:, 0], poses[:, 1], poses[:, 2], poses[:, 3:6], fov_deg=cfg.fov_deg,
                        resolution=resolution, roll=poses[:, 6] if cfg.roll else None)
    if K is None:
        return cams
    return Camera(K.to(cams.K).expand(len(poses), 3, 3), cams.cam_from_world, resolution)


@dataclass(frozen=True)
class SearchView:
    """What the search compares renders with: a square window of the frame around the object, resampled to
    res x res, and the intrinsics K (3, 3) that the full-frame camera has in that window."""

    image: Tensor
    K: Tensor

    @property
    def resolution(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])


def make_view(frame: Tensor, res: int, cfg: CameraSearchConfig) -> SearchView:
    """frame (H, W, 4) -> SearchView of res x res around the alpha mask's box (the whole frame if it is empty)."""
    H, W = frame.shape[:2]
    K = intrinsics_from_fov(cfg.fov_deg, (H, W), device=frame.device, dtype=frame.dtype)[0]
    ys, xs = torch.nonzero(frame[..., 3] > 0.5, as_tuple=True)
    if ys.numel() == 0 or cfg.crop_margin is None:
        x0, y0, size = 0.0, 0.0, float(max(H, W))
    else:
        bx0, bx1 = float(xs.min()), float(xs.max()) + 1
        by0, by1 = float(ys.min()), float(ys.max()) + 1
        size = max(bx1 - bx0, by1 - by0) * (1 + 2 * cfg.crop_margin)
        size = min(max(size, 8.0), float(max(H, W)))
        x0 = (bx0 + bx1) / 2 - size / 2
        y0 = (by0 + by1) / 2 - size / 2
    # premultiplied resampling of the window (outside the frame is transparent): each output pixel averages
    # the frame over its footprint, by area-resizing first and then sampling the window
    s = res / size
    Hs, Ws = max(1, round(H * s)), max(1, round(W * s))
    pm = torch.cat([frame[..., :3] * frame[..., 3:], frame[..., 3:]], -1).permute(2, 0, 1)[None]
    small = torch.nn.functional.interpolate(pm, size=(Hs, Ws), mode="area")[0]
    sx, sy = Ws / W, Hs / H
    ox, oy = round(x0 * sx), round(y0 * sy)
    out = torch.zeros(4, res, res, dtype=frame.dtype, device=frame.device)
    sx0, sy0 = max(ox, 0), max(oy, 0)
    sx1, sy1 = min(ox + res, Ws), min(oy + res, Hs)
    if sx1 > sx0 and sy1 > sy0:
        out[:, sy0 - oy:sy1 - oy, sx0 - ox:sx1 - ox] = small[:, sy0:sy1, sx0:sx1]
    out = out.permute(1, 2, 0)
    a = out[..., 3:]
    image = torch.cat([out[..., :3] / a.clamp_min(1e-6) * (a > 0), a], -1)
    Kv = K.clone()
    Kv[0, 0], Kv[0, 2] = K[0, 0] * sx, K[0, 2] * sx - ox
    Kv[1, 1], Kv[1, 2] = K[1, 1] * sy, K[1, 2] * sy - oy
    return SearchView(image, Kv)


def center_poses(mesh: Mesh, poses: Tensor, view: SearchView, cfg: CameraSearchConfig, ctx: R.RenderContext,
                 topology) -> Tensor:
    """Adjust each pose's radius and look-at so its silhouette has the frame's area and centroid.

    Area scales as 1 / radius^2 and moving the look-at by d across the view shifts the image by f d / radius
    pixels, so one render per pose fixes both; what is left to search is the orientation.
    """
    res = view.resolution
    h, w = res
    fm = view.image[..., 3]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=fm.dtype, device=fm.device) + 0.5,
                            torch.arange(w, dtype=fm.dtype, device=fm.device) + 0.5, indexing="ij")
    area_f = fm.sum().clamp_min(1.0)
    cf = torch.stack([(fm * xs).sum(), (fm * ys).sum()]) / area_f
    out = []
    with torch.no_grad():
        for chunk in poses.split(cfg.max_batch):
            cams = pose_cameras(chunk, cfg, res, view.K)
            m = R.render(ctx, mesh, cams, channels=("mask",), topology=topology, antialias_edges=False)["mask"]
            area = m.sum((1, 2))
            ok = area > 0
            cr = torch.stack([(m * xs).sum((1, 2)), (m * ys).sum((1, 2))], -1) / area.clamp_min(1)[:, None]
            # at most a factor of 2 per step: a silhouette cut by the image border under-reports its area
            r_new = chunk[:, 2] * torch.sqrt(area.clamp_min(1) / area_f).clamp(0.5, 2.0)
            r_new = torch.where(ok, r_new.clamp(*cfg.radius_range), chunk[:, 2])
            f = cams.K[:, 0, 0]
            # offsets from the image centre shrink as the camera backs off: where the centroid will be at r_new
            centre = view.K[:2, 2].to(cr)  # the principal point: where the view axis meets the image
            cr = centre + (cr - centre) * (chunk[:, 2] / r_new)[:, None]
            d = (cf[None] - cr) * (r_new / f)[:, None]  # image shift wanted, in scene units at the target
            right = cams.cam_from_world[:, 0, :3]
            up = cams.cam_from_world[:, 1, :3]
            # the object moves left when the target moves right, and down when the target moves up
            target = chunk[:, 3:6] - d[:, :1] * right + d[:, 1:] * up
            target = torch.where(ok[:, None], target, chunk[:, 3:6]).clamp(-cfg.look_at_range, cfg.look_at_range)
            out.append(torch.cat([chunk[:, :2], r_new[:, None], target, chunk[:, 6:]], 1))
    return torch.cat(out)


def radius_range_for(frame: Tensor, cfg: CameraSearchConfig) -> tuple[float, float]:
    """cfg.radius_range widened to [0.4, 2.5] x the distance at which a unit object spans the mask's box."""
    ys, xs = torch.nonzero(frame[..., 3] > 0.5, as_tuple=True)
    if ys.numel() == 0:
        return cfg.radius_range
    extent = float(max(xs.max() - xs.min(), ys.max() - ys.min())) + 1
    f = frame.shape[0] / (2 * math.tan(math.radians(cfg.fov_deg) / 2))
    r = f / extent
    return min(cfg.radius_range[0], 0.4 * r), max(cfg.radius_range[1], 2.5 * r)


def look_at_range_for(frame: Tensor, cfg: CameraSearchConfig) -> float:
    """cfg.look_at_range widened for an object far from the frame's centre.

    The orbit target lies on the camera's axis (the frame's centre ray). An object seen at angle a off that axis,
    at distance r, sits r tan(a) to the side of it, so the target must be able to go that far from the mesh's
    centre: the paper's [-1, 1]^3 clips it for a small object near the border (one running across the frame).
    """
    ys, xs = torch.nonzero(frame[..., 3] > 0.5, as_tuple=True)
    if ys.numel() == 0:
        return cfg.look_at_range
    H, W = frame.shape[:2]
    f = H / (2 * math.tan(math.radians(cfg.fov_deg) / 2))
    off = math.hypot((float(xs.min() + xs.max()) + 1) / 2 - W / 2, (float(ys.min() + ys.max()) + 1) / 2 - H / 2)
    return max(cfg.look_at_range, 1.25 * radius_range_for(frame, cfg)[1] / 2.5 * off / f + 0.5)


def score_poses(mesh: Mesh, poses: Tensor, view: SearchView, cfg: CameraSearchConfig, ctx: R.RenderContext,
                scorer: Scorer, topology) -> Tensor:
    """(P,) scores of P poses, rendered in batches of cfg.max_batch views (one render call per batch)."""
    res = view.resolution
    out = []
    with torch.no_grad():
        for chunk in poses.split(cfg.max_batch):
            r = R.render(ctx, mesh, pose_cameras(chunk, cfg, res, view.K), channels=("rgb", "mask"),
                         topology=topology, background=0.5)
            out.append(scorer(r["rgb"], r["mask"], view.image))
    return torch.cat(out)


def mask_iou_poses(mesh: Mesh, poses: Tensor, view: SearchView, cfg: CameraSearchConfig, ctx: R.RenderContext,
                   topology) -> Tensor:
    """(P,) silhouette IoU of P poses' renders with the view's mask (both thresholded at 0.5)."""
    res = view.resolution
    f = view.image[..., 3] > 0.5
    out = []
    with torch.no_grad():
        for chunk in poses.split(cfg.max_batch):
            m = R.render(ctx, mesh, pose_cameras(chunk, cfg, res, view.K), channels=("mask",), topology=topology,
                         antialias_edges=False)["mask"] > 0.5
            out.append((m & f).sum((1, 2)) / (m | f).sum((1, 2)).clamp_min(1))
    return torch.cat(out).float()
