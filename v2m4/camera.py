"""Cameras, in batches, and the one camera convention of the project.

Convention (every camera the package reads or writes, files included):
- World: glTF, +Y up, right-handed.
- Camera frame: OpenGL, the camera looks down its -Z axis, +Y is up, +X is right.
- Pixels: (u, v) with u to the right and v **downward**; the centre of the pixel in row i, column j is
  (j + 0.5, i + 0.5). Images are stored row 0 first (top row first), as image files are.
- Intrinsics K (3x3) in pixels: u = fx * x / (-z) + cx, v = cy - fy * y / (-z).
- Clip space (what the rasteriser takes): ndc_x = 2u / W - 1 and ndc_y = 2v / H - 1, so ndc_y grows downward
  and row i of every rendered image is row i of the photo. (This flips the handedness of screen space compared
  with OpenGL; the rasteriser never culls back faces, so nothing depends on winding.)

Orbit parameters (Sec. 4.1): yaw and pitch in radians, radius, look-at (3,), and an optional roll. The camera sits
at ``look_at + radius * (cos(pitch) sin(yaw), sin(pitch), cos(pitch) cos(yaw))`` and looks at ``look_at`` with
world +Y as up; yaw = pitch = 0 is a front view from +Z. Roll turns the image about the viewing axis,
counter-clockwise as seen by the camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import V2M4Error

# vertical field of view for views the package chooses itself (not in the paper): the official V2M4 code renders
# generated meshes at a 40 degree field of view
DEFAULT_FOV_DEG = 40.0


@dataclass(frozen=True)
class Camera:
    """B pinhole cameras.

    K (B, 3, 3) intrinsics in pixels; cam_from_world (B, 4, 4) rigid OpenGL-style extrinsics;
    resolution (H, W) the image size K refers to.
    """

    K: Tensor
    cam_from_world: Tensor
    resolution: tuple[int, int]

    def __post_init__(self):
        if self.K.ndim != 3 or self.K.shape[1:] != (3, 3):
            raise V2M4Error(f"camera K must have shape (B, 3, 3), got {tuple(self.K.shape)}")
        if self.cam_from_world.ndim != 3 or self.cam_from_world.shape[1:] != (4, 4):
            raise V2M4Error(f"camera cam_from_world must have shape (B, 4, 4), got {tuple(self.cam_from_world.shape)}")
        if self.K.shape[0] != self.cam_from_world.shape[0]:
            raise V2M4Error(f"camera K has {self.K.shape[0]} views but cam_from_world has {self.cam_from_world.shape[0]}")

    def __len__(self) -> int:
        return self.K.shape[0]

    def __getitem__(self, index) -> "Camera":
        K, E = self.K[index], self.cam_from_world[index]
        if K.ndim == 2:
            K, E = K[None], E[None]
        return Camera(K, E, self.resolution)

    @property
    def device(self) -> torch.device:
        return self.K.device

    def to(self, device) -> "Camera":
        return Camera(self.K.to(device), self.cam_from_world.to(device), self.resolution)

    @property
    def world_from_cam(self) -> Tensor:
        """(B, 4, 4) inverse of the rigid extrinsics."""
        R = self.cam_from_world[:, :3, :3]
        t = self.cam_from_world[:, :3, 3:]
        out = torch.zeros_like(self.cam_from_world)
        out[:, :3, :3] = R.transpose(1, 2)
        out[:, :3, 3:] = -R.transpose(1, 2) @ t
        out[:, 3, 3] = 1
        return out

    @property
    def position(self) -> Tensor:
        """(B, 3) camera centres in world coordinates."""
        return self.world_from_cam[:, :3, 3]

    def with_resolution(self, resolution: tuple[int, int]) -> "Camera":
        """The same cameras for images of another size (same field of view)."""
        h0, w0 = self.resolution
        h, w = resolution
        scale = torch.tensor([[w / w0], [h / h0], [1.0]], dtype=self.K.dtype, device=self.K.device)
        return Camera(self.K * scale, self.cam_from_world, (int(h), int(w)))

    def clip_from_cam(self, near: float | Tensor, far: float | Tensor) -> Tensor:
        """(B, 4, 4) projection to the rasteriser's clip space (see module docstring)."""
        h, w = self.resolution
        K = self.K
        B = K.shape[0]
        near = torch.as_tensor(near, dtype=K.dtype, device=K.device).expand(B)
        far = torch.as_tensor(far, dtype=K.dtype, device=K.device).expand(B)
        P = torch.zeros(B, 4, 4, dtype=K.dtype, device=K.device)
        P[:, 0, 0] = 2 * K[:, 0, 0] / w
        P[:, 0, 2] = -(2 * K[:, 0, 2] / w - 1)
        P[:, 1, 1] = -2 * K[:, 1, 1] / h
        P[:, 1, 2] = -(2 * K[:, 1, 2] / h - 1)
        P[:, 2, 2] = -(far + near) / (far - near)
        P[:, 2, 3] = -2 * far * near / (far - near)
        P[:, 3, 2] = -1
        return P

    def clip_from_world(self, near: float | Tensor, far: float | Tensor) -> Tensor:
        """(B, 4, 4)"""
        return self.clip_from_cam(near, far) @ self.cam_from_world

    def project(self, points_world: Tensor) -> tuple[Tensor, Tensor]:
        """points_world (B, N, 3) or (N, 3) -> pixels (B, N, 2) in (u, v), depth (B, N) along the view axis."""
        if points_world.ndim == 2:
            points_world = points_world.expand(len(self), -1, -1)
        R = self.cam_from_world[:, :3, :3]
        t = self.cam_from_world[:, :3, 3]
        pc = points_world @ R.transpose(1, 2) + t[:, None]
        depth = -pc[..., 2]
        K = self.K
        u = K[:, None, 0, 0] * pc[..., 0] / depth + K[:, None, 0, 2]
        v = K[:, None, 1, 2] - K[:, None, 1, 1] * pc[..., 1] / depth
        return torch.stack([u, v], -1), depth


def intrinsics_from_fov(fov_deg: float, resolution: tuple[int, int], *, batch: int = 1, device=None,
                        dtype=torch.float32) -> Tensor:
    """(B, 3, 3) square-pixel intrinsics with the given vertical field of view, principal point at the centre."""
    h, w = resolution
    f = h / (2 * math.tan(math.radians(fov_deg) / 2))
    K = torch.tensor([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]], dtype=dtype, device=device)
    return K.expand(batch, 3, 3).clone()


def look_at(eye: Tensor, target: Tensor, up: Tensor | None = None) -> Tensor:
    """eye (B, 3), target (B, 3) -> cam_from_world (B, 4, 4), camera looking from eye to target, +Y up."""
    # constants made by fills, not copied from the host: a CUDA graph captures no copy (camera refinement)
    if up is None:
        up = eye.new_zeros(3)
        up[1].fill_(1.0)  # an element set by assignment copies a CPU scalar in
        up = up.expand_as(eye)
    fwd = torch.nn.functional.normalize(target - eye, dim=-1)
    right = torch.nn.functional.normalize(torch.cross(fwd, up, dim=-1), dim=-1)
    true_up = torch.cross(right, fwd, dim=-1)
    R = torch.stack([right, true_up, -fwd], dim=1)  # rows: camera axes in world coordinates
    t = -(R @ eye[..., None])[..., 0]
    top = torch.cat([R, t[..., None]], dim=-1)
    bottom = eye.new_zeros(4)
    bottom[3].fill_(1.0)
    bottom = bottom.expand(eye.shape[0], 1, 4)
    return torch.cat([top, bottom], dim=1)


def orbit_cam_from_world(yaw: Tensor, pitch: Tensor, radius: Tensor, target: Tensor,
                         roll: Tensor | None = None) -> Tensor:
    """Orbit parameters (B,), (B,), (B,), (B, 3), optional roll (B,) -> cam_from_world (B, 4, 4), differentiable.

    Pitch is clamped just inside +-90 degrees where the +Y up vector would make the view direction degenerate.
    """
    pitch = pitch.clamp(-1.5697, 1.5697)
    offset = torch.stack([torch.cos(pitch) * torch.sin(yaw), torch.sin(pitch), torch.cos(pitch) * torch.cos(yaw)], -1)
    eye = target + radius[..., None] * offset
    E = look_at(eye, target)
    if roll is not None:
        c, s = torch.cos(roll), torch.sin(roll)
        z, o = torch.zeros_like(roll), torch.ones_like(roll)
        # rotation about the camera's own z axis, applied after the look-at
        Rz = torch.stack([torch.stack([c, s, z, z], -1), torch.stack([-s, c, z, z], -1),
                          torch.stack([z, z, o, z], -1), torch.stack([z, z, z, o], -1)], -2)
        E = Rz @ E
    return E


def orbit_camera(yaw: Tensor, pitch: Tensor, radius: Tensor, target: Tensor, *, fov_deg: float,
                 resolution: tuple[int, int], roll: Tensor | None = None) -> Camera:
    """B orbit cameras sharing one vertical field of view."""
    E = orbit_cam_from_world(yaw, pitch, radius, target, roll)
    K = intrinsics_from_fov(fov_deg, resolution, batch=E.shape[0], device=E.device, dtype=E.dtype)
    return Camera(K, E, resolution)


def near_far(vertices: Tensor, cameras: Camera, *, margin: float = 0.05, mask: Tensor | None = None
             ) -> tuple[Tensor, Tensor]:
    """Per-view (B,) near and far planes that bracket a point set (V, 3) or (B, V, 3) with a relative margin.

    Tight planes keep depth precision for the z-test; a mesh partly behind the camera is clipped at near.
    mask (B, V) bool: only these points count in each view (render_each: each view's own mesh).
    """
    with torch.no_grad():
        E = cameras.cam_from_world.to(vertices.dtype)
        # depth alone (-z in the camera frame): the pixel coordinates of a full projection are not needed here
        if vertices.ndim == 2:
            depth = -(E[:, 2, :3] @ vertices.detach().T + E[:, 2, 3:])  # (B, V)
        else:
            depth = -((vertices.detach() @ E[:, 2, :3, None])[..., 0] + E[:, 2, 3:])
        if mask is None:
            dmin = depth.min(dim=1).values
            dmax = depth.max(dim=1).values
        else:
            dmin = torch.where(mask, depth, torch.inf).min(dim=1).values
            dmax = torch.where(mask, depth, -torch.inf).max(dim=1).values
        span = (dmax - dmin).clamp_min(1e-6)
        far = dmax + margin * span + 1e-6
        near = torch.maximum(dmin - margin * span, far * 1e-3)
    return near, far
