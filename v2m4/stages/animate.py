"""Animation from keyframes (Sec. 4.5): linear interpolation of vertex positions between reconstructed frames."""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import V2M4Error
from ..types import Animation, Mesh


def interpolate(key_vertices: Tensor, key_index: Tensor, n_frames: int) -> Tensor:
    """(K, V, 3) positions at frames key_index (K,) -> (n_frames, V, 3): exact at keyframes, linear between,
    held before the first and after the last."""
    key_index = key_index.to(torch.int64).cpu()
    if key_vertices.shape[0] != key_index.numel():
        raise V2M4Error(f"{key_vertices.shape[0]} keyframe meshes for {key_index.numel()} keyframe indices")
    if key_index.numel() > 1 and bool((key_index[1:] <= key_index[:-1]).any()):
        raise V2M4Error("keyframe indices must be strictly increasing")
    t = torch.arange(n_frames)
    j = (torch.searchsorted(key_index, t, right=True) - 1).clamp(0, max(0, key_index.numel() - 2))
    if key_index.numel() == 1:
        return key_vertices[:1].expand(n_frames, -1, -1).clone()
    a, b = key_index[j], key_index[j + 1]
    u = ((t - a).double() / (b - a).double()).clamp(0, 1).to(key_vertices)
    dev = key_vertices.device
    ja, jb = j.to(dev), (j + 1).to(dev)
    u = u.to(dev)[:, None, None]
    return key_vertices[ja] * (1 - u) + key_vertices[jb] * u


def make_animation(mesh: Mesh, key_vertices: Tensor, key_index: Tensor, n_frames: int, fps: float) -> Animation:
    """The product: ``mesh`` (rest, textured) moving through every frame at ``fps``."""
    verts = interpolate(key_vertices, key_index, n_frames)
    times = torch.arange(n_frames, dtype=torch.float32) / float(fps)
    return Animation(mesh=mesh, vertices=verts, times=times, keyframes=key_index.to(torch.int64).cpu())
