"""The whole-clip fit's per-frame terms, batched over frames: positions x (T, V, 3), one frame a row. The
large-steps change of variables for every frame in one solve, and the shape regularisers (ARAP, area, edge) and
the temporal smoothness term of every frame at once, and the keyframes' values interpolated to every frame
(``joint`` composes them)."""

from __future__ import annotations

import torch
from torch import Tensor

from ...camera import Camera
from ...geometry import chamfer, face_areas
from ...optim import SmoothSolver
from . import _shape_cpu
from .align import _sample_sets
from .energies import arap_rotations


def frames_to_x(solver: SmoothSolver, u: Tensor) -> Tensor:
    """(T, V, 3) -> (T, V, 3): x_t = (I + lambda L)^-1 u_t for every frame, as ONE solve with 3T right-hand sides
    (V, 3T); ``SmoothSolver.to_x`` takes any number of columns."""
    T, V, _ = u.shape
    x = solver.to_x(u.permute(1, 0, 2).reshape(V, 3 * T))
    return x.reshape(V, T, 3).permute(1, 0, 2)


def frames_to_u(solver: SmoothSolver, x: Tensor) -> Tensor:
    """(T, V, 3) -> (T, V, 3): u_t = (I + lambda L) x_t for every frame in one product."""
    T, V, _ = x.shape
    u = solver.to_u(x.permute(1, 0, 2).reshape(V, 3 * T))
    return u.reshape(V, T, 3).permute(1, 0, 2)


def _rows(x: Tensor, idx: Tensor) -> Tensor:
    """x (T, V, C) at vertex indices idx (any shape) -> (T, *idx.shape, C): x[:, idx], by index_select, whose
    backward is an index_add (advanced indexing's is an accumulating index_put, several times slower on the CPU)."""
    return x.index_select(1, idx.reshape(-1)).view(x.shape[0], *idx.shape, x.shape[-1])


def _points(x: Tensor, samples: tuple[Tensor, Tensor]) -> Tensor:
    """(B, N, 3) positions of one barycentric sample set on every row of x (B, V, 3)."""
    corners, b = samples
    return (_rows(x, corners) * b[..., None].to(x)).sum(2)


def _directed(edges: Tensor) -> tuple[Tensor, Tensor]:
    return torch.cat([edges[:, 0], edges[:, 1]]), torch.cat([edges[:, 1], edges[:, 0]])


class _Shape:
    """ARAP + area + edge energies of every frame against the rest mesh at each frame's reference size (the pair's
    terms, ``energies``, per frame). What does not move between steps is computed once: the rest's directed
    edges, face areas and edge lengths at each frame's size, and, at each ARAP refresh, each directed edge as the
    frame's rotation of its one-ring turns it (the rotations are fixed between refreshes, so the ARAP residual is
    one subtraction a step, not a batched 3 x 3 product per edge).

    Vertex-major inside: the fit's positions come from the solve as (V, T, 3) storage, so the edges' and corners'
    rows are gathered whole along its first axis (T x 3 values each) and their gradients added back the same way;
    gathered along the frame-major view's vertex axis, the backward's index_add wrote one frame at a time (on the
    demo, one thread: 0.63 ms for each of three gathers a step)."""

    def __init__(self, rest: Tensor, faces: Tensor, edges: Tensor, scale: Tensor, cfg):  # cfg: a JointConfig
        self.rest, self.faces, self.edges, self.cfg = rest, faces, edges, cfg
        self.i, self.j = _directed(edges)
        self.ends = torch.cat([self.j, self.i])  # each directed edge's head, then each one's tail
        s = scale[None, :]
        self.scale = scale
        self.area = face_areas(rest, faces)[:, None] * s * s  # (F, T)
        self.length = (rest[edges[:, 1]] - rest[edges[:, 0]]).norm(dim=-1)[:, None] * s  # (E, T)
        self.turned: Tensor | None = None  # (2E, T, 3)

    def refresh(self, x: Tensor) -> None:
        """The best local rotations of positions x (T, V, 3) (scale-free: the best rotation ignores a uniform
        scale), applied once to the rest's directed edges at each frame's size."""
        rot = arap_rotations(x.detach(), self.rest, self.edges)
        er = self.rest[self.j] - self.rest[self.i]
        turned = (rot[:, self.i] @ er[..., None])[..., 0] * self.scale[:, None, None]
        turned = turned.transpose(0, 1).contiguous()
        if self.turned is None or self.turned.shape != turned.shape:
            self.turned = turned
        else:  # in place: a captured step (CUDA graph) reads this tensor
            self.turned.copy_(turned)

    def energy(self, x: Tensor) -> Tensor:
        """(T,) weighted sum of the three energies of positions x (T, V, 3). On the CPU one compiled pass
        (``_shape_cpu``) where numba is installed; on other devices the tensor operators below."""
        cfg, E = self.cfg, self.edges.shape[0]
        if x.device.type == "cpu" and _shape_cpu.available():
            return _shape_cpu.shape_energy(x, self.edges, self.faces, self.turned, self.length, self.area,
                                           (float(cfg.w_arap), float(cfg.w_area), float(cfg.w_edge)))
        xv = x.transpose(0, 1)  # (V, T, 3); contiguous where x came from the solve (frames_to_x)
        head, tail = xv.index_select(0, self.ends).chunk(2)
        d = head - tail  # (2E, T, 3) directed edges; the first E are the edges themselves
        r = d - self.turned
        arap = (r * r).sum(-1).mean(0)
        a, b, c = xv.index_select(0, self.faces.reshape(-1)).view(-1, 3, *xv.shape[1:]).unbind(1)
        fa = torch.linalg.cross(b - a, c - a, dim=-1).norm(dim=-1) / 2  # (F, T)
        area = ((fa - self.area) ** 2).mean(0)
        edge = ((d[:E].norm(dim=-1) - self.length) ** 2).mean(0)
        return cfg.w_arap * arap + cfg.w_area * area + cfg.w_edge * edge


def _temporal(x: Tensor, times: Tensor) -> Tensor:
    """(T-2,) mean squared acceleration of every vertex at the inner frames, by the non-uniform second difference
    2 / (h0 + h1) * ((x+ - x) / h1 - (x - x-) / h0), times h² (h the median spacing): for evenly spaced frames it
    is |x+ - 2x + x-|², the ground truth's jitter measure (``metrics.geometry.vertex_jitter``) squared."""
    if x.shape[0] < 3:
        return x.new_zeros(0)
    dt = (times[1:] - times[:-1]).to(x).clamp_min(1e-9)
    h = dt.median()
    v = (x[1:] - x[:-1]) / dt[:, None, None]
    acc = (v[1:] - v[:-1]) * (2 / (dt[1:] + dt[:-1]))[:, None, None] * h * h
    return (acc * acc).sum(-1).mean(1)


def _interpolate(values: Tensor, key_index: Tensor, T: int) -> Tensor:
    """(T, ...) values (K, ...) given at frames key_index (K,), linear in frame index between keyframes, held
    constant before the first and after the last."""
    t = torch.arange(T, device=key_index.device)
    hi = torch.searchsorted(key_index, t, right=False).clamp(1, len(key_index) - 1) if len(key_index) > 1 else \
        torch.zeros(T, dtype=torch.int64, device=key_index.device)
    if len(key_index) == 1:
        return values[0][None].expand(T, *values.shape[1:]).clone()
    lo = hi - 1
    w = ((t - key_index[lo]).to(values.dtype) / (key_index[hi] - key_index[lo]).to(values.dtype)).clamp(0, 1)
    w = w.reshape(T, *([1] * (values.ndim - 1)))
    return values[lo] * (1 - w) + values[hi] * w


def keyframe_chamfer(x: Tensor, key_index: Tensor, targets: Tensor, rest: Tensor, faces: Tensor, cfg) -> Tensor:
    """(K,) each keyframe's Chamfer to its target points (K, N, 3), on one surface sample set of its own seed (the
    clip's draws untouched): what ``restart_keyframes`` tests and what decides whether a restart is kept."""
    g = torch.Generator().manual_seed(0)
    corners, b = _sample_sets(faces, face_areas(rest, faces), cfg.chamfer_points, 1, g)[0]
    return chamfer(_points(x.index_select(0, key_index), (corners.to(x.device), b.to(x.device))), targets)


def restart_keyframes(x: Tensor, key_index: Tensor, targets: Tensor, rest: Tensor, faces: Tensor,
                      cfg) -> tuple[Tensor, Tensor] | None:
    """(positions (T, V, 3) to fit the clip again from, the keyframes restarted (K,) bool), or None. A keyframe
    whose Chamfer to its target points (K, N, 3) ends above ``cfg.restart_ratio`` x the keyframes' median starts
    again from the last keyframe before it that does not (that keyframe's shape at its own centroid); frames
    between keyframes are interpolated again.

    Why: every keyframe starts from the rest mesh under its own similarity, and one posed far from the rest can stay
    short of its target (a limb, a bent body). The pairwise chain reaches such poses by starting each pair where the
    previous ended; this gives that start to the keyframes that need it, by the chain's own retry test (the pair's
    ``fail_ratio``). The Chamfer is measured on one sample set of its own seed, so the clip's draws are untouched."""
    if cfg.restart_ratio <= 0 or key_index.numel() < 2:
        return None
    xk = x.index_select(0, key_index)
    err = keyframe_chamfer(x, key_index, targets, rest, faces, cfg)
    fits = err <= cfg.restart_ratio * err.median()
    k = torch.arange(len(err), device=err.device)
    good = torch.where(fits, k, -1).cummax(0).values  # the last keyframe at or before each that fits (-1: none)
    redo = ~fits & (good >= 0)
    if not bool(redo.any()):
        return None
    src = xk[good.clamp_min(0)]
    start = torch.where(redo[:, None, None], src - src.mean(1, keepdim=True) + xk.mean(1, keepdim=True), xk)
    return _interpolate(start, key_index, x.shape[0]), redo


def restart_fit(x: Tensor, fit_again, key_index: Tensor, targets: Tensor, rest: Tensor, faces: Tensor,
                cfg) -> tuple[Tensor, tuple[bool, ...]]:
    """``restart_ratio``: the clip fitted again (``fit_again(start)``) from where ``restart_keyframes`` restarts
    it, kept only if it fits the keyframes better, as the chain keeps the better of a pair's two fits (a keyframe
    restarted from an earlier one can end farther from its target than the first fit left it); and the keyframes
    the kept fit restarted (K,)."""
    none = (False,) * key_index.numel()
    again = restart_keyframes(x, key_index, targets, rest, faces, cfg)
    if again is None:
        return x, none
    y = fit_again(again[0])
    fit = [float(keyframe_chamfer(z, key_index, targets, rest, faces, cfg).mean()) for z in (x, y)]
    return (y, tuple(again[1].tolist())) if fit[1] < fit[0] else (x, none)


def _video_at(camera: Camera, masks: Tensor, res: int) -> tuple[Camera, Tensor]:
    """The video camera and masks (T, H, W) at most ``res`` pixels on a side (0: as they are): the masks
    area-averaged (a pixel's coverage, as the antialiased render gives it), the intrinsics scaled to match."""
    H, W = masks.shape[1:]
    if res <= 0 or max(H, W) <= res:
        return camera, masks
    size = (max(1, round(H * res / max(H, W))), max(1, round(W * res / max(H, W))))
    small = torch.nn.functional.interpolate(masks[:, None], size=size, mode="area")[:, 0]
    return camera.with_resolution(size), small
