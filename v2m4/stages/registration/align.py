"""One registration pair (Sec. 4.3): a target's fixed data, then global and local alignment onto it.

Every position here is in the registration's normalised frame (the rest mesh fits the unit cube centred at the
origin). ``template``: the rest mesh's faces with the rest positions; ``topo``: its render edge topology
(``render.edge_topology``), made once per sequence.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ... import render as R
from ...camera import Camera, orbit_camera
from ...geometry import barycentric_points, chamfer, face_areas, rotation_6d, sample_barycentric
from ...optim import Adam, SmoothSolver, UniformAdam
from ...types import Mesh
from .config import RegistrationConfig
from .energies import arap_energy, arap_rotations, area_energy, edge_energy


def view_cameras(n: int, centre: Tensor, radius: float, cfg: RegistrationConfig, g: torch.Generator) -> Camera:
    """n cameras uniformly on a sphere around ``centre`` (looking at it), far enough to see a sphere of ``radius``."""
    dev = centre.device
    yaw = (torch.rand(n, generator=g) * 2 - 1) * math.pi
    pitch = torch.asin(torch.rand(n, generator=g) * 2 - 1).clamp(-1.4, 1.4)
    dist = 1.15 * radius / math.sin(math.radians(cfg.fov_deg) / 2)
    return orbit_camera(yaw.to(dev), pitch.to(dev), torch.full((n,), dist, device=dev),
                        centre[None].expand(n, 3).to(dev), fov_deg=cfg.fov_deg,
                        resolution=(cfg.render_res, cfg.render_res))


@dataclass(frozen=True)
class InputView:
    """The video's view of one frame, for the input-view term: camera (1 view, world), mask (H, W) of the frame,
    and the registration's normalisation (world = normalised * scale + centre)."""

    camera: Camera
    mask: Tensor
    centre: Tensor
    scale: float

    def loss(self, ctx, template: Mesh, y: Tensor, topo) -> Tensor:
        r = R.render(ctx, template, self.camera, channels=("mask",), vertices=y * self.scale + self.centre,
                     topology=topo)
        return (r["mask"][0] - self.mask).abs().sum() / self.mask.sum().clamp_min(1.0)


class Target:
    """A target mesh's fixed data for one pair: surface samples (N, 3) and a pool of renders: cams, mask
    (view_pool, H, W), normal (view_pool, H, W, 3)."""

    def __init__(self, mesh: Mesh, cfg: RegistrationConfig, ctx, g: torch.Generator):
        v, f = mesh.vertices, mesh.faces
        self.points = barycentric_points(v, sample_barycentric(f, face_areas(v, f), cfg.chamfer_points, generator=g))
        centre = (v.max(0).values + v.min(0).values) / 2
        radius = float((v - centre).norm(dim=-1).max())
        self.cams = view_cameras(cfg.view_pool, centre, radius, cfg, g)
        with torch.no_grad():
            out = R.render(ctx, mesh, self.cams, channels=("mask", "normal"))
        self.mask, self.normal = out["mask"], out["normal"]

    def picks(self, steps: int, n: int, g: torch.Generator) -> Tensor:
        """(steps, n) view indices, drawn up front so the loop never waits on the host."""
        n = min(n, len(self.cams))
        return torch.argsort(torch.rand(steps, len(self.cams), generator=g), dim=1)[:, :n].to(self.mask.device)


def _sample_sets(faces: Tensor, weights: Tensor, n: int, sets: int, g: torch.Generator) -> list[tuple[Tensor, Tensor]]:
    return [sample_barycentric(faces, weights, n, generator=g) for _ in range(sets)]


def _render_l1(ctx, template: Mesh, x: Tensor, tgt: Target, idx: Tensor, topo, normals: bool = True) -> Tensor:
    out = R.render(ctx, template, tgt.cams[idx], channels=("mask", "normal") if normals else ("mask",),
                   vertices=x, topology=topo)
    loss = (out["mask"] - tgt.mask[idx]).abs().mean()
    return loss + (out["normal"] - tgt.normal[idx]).abs().sum(-1).mean() if normals else loss


def _similarity(x: Tensor, c: Tensor, r6: Tensor, log_s: Tensor, t: Tensor) -> Tensor:
    """x (V, 3) rotated by rotation_6d(r6) and scaled by exp(log_s) about c (3,), then moved by t (3,)."""
    return (x - c) @ rotation_6d(r6).T * log_s.exp() + c + t


def global_align(x: Tensor, template: Mesh, tgt: Target, cfg: RegistrationConfig, ctx, g: torch.Generator, topo,
                 *, init_rotation: Tensor | None = None, iters: int | None = None,
                 step: Callable[[], None] | None = None) -> tuple[Tensor, float, float]:
    """Similarity moving positions x (V, 3) onto the target: rotation about x's centroid, log-scale, translation.
    Returns the moved positions (detached), the scale, and the final loss. step: called after every step."""
    c = x.mean(0).detach()
    R0 = torch.eye(3, dtype=x.dtype, device=x.device) if init_rotation is None else init_rotation.to(x)
    r6 = torch.cat([R0[0], R0[1]]).clone().requires_grad_(True)
    log_s = torch.zeros((), dtype=x.dtype, device=x.device, requires_grad=True)
    t = (tgt.points.mean(0) - c).detach().clone().requires_grad_(True) if init_rotation is not None else \
        torch.zeros(3, dtype=x.dtype, device=x.device, requires_grad=True)
    opt = Adam([r6, log_s, t], lr=cfg.global_lr)
    n_iters = cfg.global_iters if iters is None else iters
    samples = _sample_sets(template.faces, face_areas(x, template.faces), cfg.chamfer_points, cfg.sample_sets, g)
    picks = tgt.picks(n_iters, cfg.global_views, g)
    loss = torch.zeros(())
    for it in range(n_iters):
        y = _similarity(x, c, r6, log_s, t)
        loss = cfg.w_chamfer * chamfer(barycentric_points(y, samples[it % len(samples)]), tgt.points)
        if cfg.w_render > 0:
            loss = loss + cfg.w_render * _render_l1(ctx, template, y, tgt, picks[it], topo,
                                                    normals=cfg.global_normals is not False)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step:
            step()
    with torch.no_grad():
        return _similarity(x, c, r6, log_s, t), float(log_s.exp()), float(loss)


def local_align(x: Tensor, rest: Tensor, scale: float, template: Mesh, tgt: Target, solver: SmoothSolver,
                edges: Tensor, cfg: RegistrationConfig, ctx, g: torch.Generator, topo, *,
                video: InputView | None = None, iters: int | None = None,
                step: Callable[[], None] | None = None) -> Tensor:
    """Per-vertex deformation of x (V, 3) onto the target under large steps; regularised against ``rest`` * scale.
    video: also fit the frame's own silhouette seen from the video camera (``InputView``). step: called after every
    step."""
    u = solver.to_u(x.detach()).clone().requires_grad_(True)
    opt = UniformAdam([u], lr=cfg.local_lr)
    samples = _sample_sets(template.faces, face_areas(rest, template.faces), cfg.chamfer_points, cfg.sample_sets, g)
    n_iters = cfg.local_iters if iters is None else iters
    picks = tgt.picks(n_iters, cfg.local_views, g)
    rot = None
    for it in range(n_iters):
        y = solver.to_x(u)
        loss = cfg.w_chamfer * chamfer(barycentric_points(y, samples[it % len(samples)]), tgt.points)
        if video is not None:
            loss = loss + cfg.w_input_view * video.loss(ctx, template, y, topo)
        if cfg.w_render > 0:
            loss = loss + cfg.w_render * _render_l1(ctx, template, y, tgt, picks[it], topo)
        if cfg.w_arap > 0:
            if it % max(1, cfg.arap_refresh) == 0:
                rot = arap_rotations(y.detach(), rest * scale, edges)
            loss = loss + cfg.w_arap * arap_energy(y, rest, edges, scale, rot)
        if cfg.w_area > 0:
            loss = loss + cfg.w_area * area_energy(y, rest, template.faces, scale)
        if cfg.w_edge > 0:
            loss = loss + cfg.w_edge * edge_energy(y, rest, edges, scale)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step:
            step()
    with torch.no_grad():
        return solver.to_x(u)


def eval_chamfer(x: Tensor, faces: Tensor, tgt: Target, g: torch.Generator) -> float:
    """Chamfer of positions x (V, 3) on faces against the target, on a fresh sample as large as the target's."""
    with torch.no_grad():
        samples = sample_barycentric(faces, face_areas(x, faces), len(tgt.points), generator=g)
        return float(chamfer(barycentric_points(x, samples), tgt.points))


def quarter_turns(n: int, dtype, device) -> Tensor:
    """(n, 3, 3) rotations about +Y by k / n of a full turn, k = 0..n-1."""
    out = []
    for k in range(n):
        a = 2 * math.pi * k / n
        c, s = math.cos(a), math.sin(a)
        out.append(torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=dtype, device=device))
    return torch.stack(out)
