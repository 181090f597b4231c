"""The registration stage (Sec. 4.3): the rest mesh deformed through every frame, one pair at a time.

Ours, against drift: the regularisers compare with the REST mesh (scaled to each target's size), never with the
previous frame, so an error made at one frame is pulled back instead of inherited; and a pair whose fit folds
triangles, or whose Chamfer jumps far above the sequence's so far, is fitted again from a fresh, multi-start global
alignment (``_register_pair``).
"""

from __future__ import annotations

import json
import os
import statistics
import time
import warnings
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from ... import render as R
from ...camera import Camera
from ...errors import V2M4Error
from ...geometry import face_areas, unique_edges
from ...optim import SmoothSolver
from ...types import Mesh, Sequence, load_npz, atomic_save_npz
from .align import InputView, Target, eval_chamfer, global_align, local_align, quarter_turns
from .config import RegistrationConfig
from .energies import flipped_fraction, unfold


@dataclass(frozen=True)
class RegistrationResult:
    """sequence: the rest mesh and every frame's vertex positions (world). Per pair (T - 1 entries, pair t-1 -> t):
    chamfer (normalised units, squared), flipped share, retried flag, seconds; scales (T,) the regularisers'
    reference size of each frame relative to the rest mesh (1 for the rest itself); pieces_moved (K,): the
    whole-clip fit's loose pieces placed on their own at each keyframe (``parts.place_pieces``; empty for the
    chain); temporal_weight: the smoothing weight the whole-clip fit's video chose (``smoothing``; 0: none),
    temporal_between: whether the frames between keyframes took the smoothed trajectory too; restarted (K,): the
    whole-clip fit's keyframes fitted again from an earlier keyframe (``restart_ratio``; empty for the chain);
    noise_weight: the smoothing weight the generator's measured noise allowed (``smoothing.noise_weight``)."""

    sequence: Sequence
    chamfer: tuple[float, ...]
    flipped: tuple[float, ...]
    retried: tuple[bool, ...]
    seconds: tuple[float, ...]
    scales: tuple[float, ...]
    pieces_moved: tuple[int, ...] = ()
    temporal_weight: float = 0.0
    temporal_between: bool = False
    restarted: tuple[bool, ...] = ()
    noise_weight: float = 0.0

    def figures(self) -> dict:
        """What the report records: the per-pair (per-keyframe) lists, and the temporal smoothing's weight."""
        return {"chamfer": list(self.chamfer), "flipped": list(self.flipped), "retried": list(self.retried),
                "seconds": list(self.seconds), "pieces_moved": list(self.pieces_moved),
                "temporal_weight": self.temporal_weight, "temporal_between": self.temporal_between,
                "restarted": list(self.restarted), "noise_weight": self.noise_weight}

    def save(self, path: str | os.PathLike) -> None:
        figures = {**self.figures(), "scales": list(self.scales)}
        atomic_save_npz(path, **self.sequence.rest.arrays("rest_"), seq_vertices=self.sequence.vertices,
                        times=self.sequence.times, figures=np.array(json.dumps(figures)))

    @staticmethod
    def load(path: str | os.PathLike) -> "RegistrationResult":
        figures = json.loads(str(load_npz(path)["figures"]))
        weight = float(figures.pop("temporal_weight", 0.0))
        between = bool(figures.pop("temporal_between", False))
        noise = float(figures.pop("noise_weight", 0.0))
        return RegistrationResult(Sequence.load(path), **{k: tuple(v) for k, v in figures.items()},
                                  temporal_weight=weight, temporal_between=between, noise_weight=noise)


@dataclass(frozen=True)
class _Rest:
    """What every pair shares: the rest mesh in the world (``world``) and normalised (``template``: the unit cube
    centred at the origin; world = normalised * size + centre), its edges (E, 2), its render edge topology and its
    large-steps solver."""

    world: Mesh
    template: Mesh
    edges: Tensor
    topo: object
    solver: SmoothSolver
    centre: Tensor
    size: float

    def normalise(self, v: Tensor) -> Tensor:
        """World positions (..., 3) in the normalised frame."""
        return (v - self.centre) / self.size

    @property
    def rest(self) -> Tensor:
        """(V, 3) normalised rest positions."""
        return self.template.vertices


@dataclass(frozen=True)
class _Fit:
    """One pair's result: positions (V, 3) normalised, their Chamfer to the target, their flipped share."""

    vertices: Tensor
    chamfer: float
    flipped: float


def _normaliser(v: Tensor) -> tuple[Tensor, float]:
    lo, hi = v.min(0).values, v.max(0).values
    return (lo + hi) / 2, float((hi - lo).max().clamp_min(1e-12))


def _check_meshes(meshes: list[Mesh]) -> None:
    if not meshes:
        raise V2M4Error("registration needs at least one mesh")
    for k, m in enumerate(meshes):
        if not bool(torch.isfinite(m.vertices).all()):
            raise V2M4Error(f"mesh {k} has non-finite vertices; repair or drop that frame before registration")


def _rest_mesh(mesh: Mesh, cfg: RegistrationConfig) -> tuple[Mesh, bool]:
    """The rest mesh in the world, and whether it was remeshed (else its edges are only flipped towards Delaunay)."""
    if not cfg.remesh_rest:
        return mesh, False
    from ..remesh import delaunay_flips, remesh_isotropic
    try:
        return remesh_isotropic(mesh, feature_deg=cfg.remesh_feature_deg, max_faces=cfg.rest_max_faces), True
    except V2M4Error as exc:
        flipped = delaunay_flips(mesh)
        warnings.warn(f"rest mesh kept as generated, its edges only flipped towards Delaunay (it folds more "
                      f"under registration than a remeshed one): {exc}")
        return flipped, False


def _prepare(mesh: Mesh, cfg: RegistrationConfig) -> tuple[_Rest, RegistrationConfig]:
    """The rest frame made from the first mesh, and cfg with ``global_normals`` decided."""
    world, remeshed = _rest_mesh(mesh, cfg)
    if cfg.global_normals is None:
        cfg = replace(cfg, global_normals=remeshed)
    centre, size = _normaliser(world.vertices)
    rest = ((world.vertices - centre) / size).detach()
    solver = SmoothSolver(rest.shape[0], world.faces, cfg.smooth_lambda, dense_max=cfg.dense_max_vertices)
    return _Rest(world, Mesh(rest, world.faces), unique_edges(world.faces), R.edge_topology(world.faces, world.vertices),
                 solver, centre, size), cfg


def _fit_rest(frame: _Rest, mesh: Mesh, cfg: RegistrationConfig, ctx, g: torch.Generator,
              video: tuple[Camera, Tensor] | None) -> _Rest:
    """The rest mesh fitted to its own frame's mesh with the local step's losses (kept unless it folds).

    A remesh trims thin extremities (fingers, ears), which every later pair's render term stretched the whole
    mesh back out to: later frames came out a few % larger than the first (docs/calibration.md). Fitting the rest
    mesh to its own frame first gives frame 0 the fit every other frame gets, and the regularisers a reference
    that needs no stretching."""
    tgt0 = Target(Mesh(frame.normalise(mesh.vertices).detach(), mesh.faces), cfg, ctx, g)
    view0 = None if video is None or cfg.input_view_iters <= 0 else \
        InputView(video[0], video[1][0].to(frame.rest), frame.centre, frame.size)
    rest, faces = frame.rest, frame.template.faces
    y = local_align(rest, rest, 1.0, frame.template, tgt0, frame.solver, frame.edges, cfg, ctx, g, frame.topo,
                    video=view0)
    y = unfold(y, rest, faces, frame.edges, 1.0, iters=cfg.unfold_iters)
    if flipped_fraction(y, rest, faces, frame.edges) > cfg.max_flipped:
        return frame
    rest = y.detach()
    world = frame.world.with_vertices(rest * frame.size + frame.centre)
    return replace(frame, world=world, template=Mesh(rest, world.faces))


def _fit(frame: _Rest, x: Tensor, tgt: Target, scale: float, cfg: RegistrationConfig, ctx, g: torch.Generator,
         starts: Tensor | None = None, step=None) -> _Fit:
    """Positions x (V, 3) aligned onto the target: global similarity, local large-steps fit, fold repair.

    starts (S, 3, 3): a fresh global alignment instead, short runs from each start rotation, the lowest Chamfer
    going on."""
    template, topo = frame.template, frame.topo
    if starts is None:
        y, _, _ = global_align(x, template, tgt, cfg, ctx, g, topo, step=step)
    else:
        short = max(1, cfg.global_iters // 4)
        tries = [global_align(x, template, tgt, replace(cfg, w_render=0.0), ctx, g, topo, init_rotation=Rs,
                              iters=short) for Rs in starts]
        y0, _, _ = min(tries, key=lambda r: eval_chamfer(r[0], template.faces, tgt, g))
        y, _, _ = global_align(y0, template, tgt, cfg, ctx, g, topo, step=step)
    y = local_align(y, frame.rest, scale, template, tgt, frame.solver, frame.edges, cfg, ctx, g, topo, step=step)
    y = unfold(y, frame.rest, template.faces, frame.edges, scale, iters=cfg.unfold_iters)
    return _Fit(y, eval_chamfer(y, template.faces, tgt, g), flipped_fraction(y, frame.rest, template.faces, frame.edges))


def _register_pair(frame: _Rest, x: Tensor, tgt: Target, scale: float, chamfers: list[float],
                   cfg: RegistrationConfig, ctx, g: torch.Generator, step=None) -> tuple[_Fit, bool]:
    """x's fit onto the target, and whether it was retried: a fit that folds more than ``max_flipped`` or whose
    Chamfer exceeds ``fail_ratio`` x the median of the earlier pairs' (``chamfers``) is fitted again from quarter
    turns, and the better of the two kept (fewer folds first, then the lower Chamfer)."""
    fit = _fit(frame, x, tgt, scale, cfg, ctx, g, step=step)
    bad = fit.flipped > cfg.max_flipped or (len(chamfers) >= 2 and fit.chamfer > cfg.fail_ratio * statistics.median(chamfers))
    if not (bad and cfg.retry_starts > 0):
        return fit, False
    again = _fit(frame, x, tgt, scale, cfg, ctx, g, quarter_turns(cfg.retry_starts, x.dtype, x.device), step=step)
    if (again.flipped <= cfg.max_flipped, -again.chamfer) > (fit.flipped <= cfg.max_flipped, -fit.chamfer):
        return again, True
    return fit, True


def _fit_input_view(frame: _Rest, fit: _Fit, tgt: Target, scale: float, video: tuple[Camera, Tensor], t: int,
                    cfg: RegistrationConfig, ctx, g: torch.Generator, step=None) -> _Fit:
    """``cfg.input_view_iters`` more local steps that also fit frame t's own silhouette (``InputView``); kept only
    if they fold no more triangles than the fit had, or than the limit."""
    view = InputView(video[0], video[1][t].to(fit.vertices), frame.centre, frame.size)
    faces = frame.template.faces
    y = local_align(fit.vertices, frame.rest, scale, frame.template, tgt, frame.solver, frame.edges, cfg, ctx, g,
                    frame.topo, video=view, iters=cfg.input_view_iters, step=step)
    y = unfold(y, frame.rest, faces, frame.edges, scale, iters=cfg.unfold_iters)
    flipped = flipped_fraction(y, frame.rest, faces, frame.edges)
    if flipped <= max(fit.flipped, cfg.max_flipped):
        return _Fit(y, eval_chamfer(y, faces, tgt, g), flipped)
    return fit


def _pair_steps(progress, pair: int, pairs: int, planned: int):
    """The callback for each optimisation step of pair ``pair`` (1-based) of ``pairs``: progress(done, pairs) with
    the pair under way as the share of its ``planned`` steps done, held short of its end (a retry adds steps).
    None without progress."""
    if not progress:
        return None
    done = 0

    def step():
        nonlocal done
        done += 1
        progress(pair - 1 + min(done / max(1, planned), 0.99), pairs)

    return step


def register_sequence(meshes: list[Mesh], cfg: RegistrationConfig, ctx: R.RenderContext, *,
                      generator: torch.Generator, times: Tensor | None = None, progress=None,
                      video: tuple[Camera, Tensor] | None = None) -> RegistrationResult:
    """Deform meshes[0] (the rest pose) through meshes[1:], one pair at a time (Sec. 4.3).

    meshes: re-posed meshes, one per keyframe, in one world frame (topology may differ between them).
    generator: every random draw (views, surface samples). times (T,) seconds of each mesh (default 0, 1, 2, ...).
    progress: optional callable(done, total), in pairs: called after every optimisation step with the pair under
    way as a fraction (its planned steps done; a retried pair waits just short of its end), and at each pair's end.
    video: (the video camera, (T, H, W) masks of the keyframes): beyond the paper, each pair ends with
    ``cfg.input_view_iters`` local steps that also fit the frame's own silhouette, so what the camera saw and
    the targets (a generator's shapes, re-posed) disagree on is settled by the video; kept only if it folds no
    more triangles than the limit.
    """
    _check_meshes(meshes)
    g = generator
    frame, cfg = _prepare(meshes[0], cfg)
    T = len(meshes)
    times = torch.arange(T, dtype=torch.float32) if times is None else times.float()
    area0 = face_areas(frame.normalise(meshes[0].vertices), meshes[0].faces).sum()
    if cfg.fit_rest and frame.world is not meshes[0]:
        frame = _fit_rest(frame, meshes[0], cfg, ctx, g, video)
    out, fits, retried, seconds, scales = [frame.rest], [], [], [], [1.0]
    video_steps = cfg.input_view_iters if video is not None and cfg.input_view_iters > 0 else 0
    planned = cfg.global_iters + cfg.local_iters + video_steps
    for t in range(1, T):
        t0 = time.perf_counter()
        step = _pair_steps(progress, t, T - 1, planned)
        target = Mesh(frame.normalise(meshes[t].vertices).detach(), meshes[t].faces)
        tgt = Target(target, cfg, ctx, g)
        # the regularisers' reference size: the target's surface area against the first frame's, not the product of
        # the pairwise global scales (a walk's best-fit scale wobbles by a few % per pair, and a product drifts)
        sc = float(torch.sqrt(face_areas(target.vertices, target.faces).sum() / area0))
        fit, again = _register_pair(frame, out[-1], tgt, sc, [f.chamfer for f in fits], cfg, ctx, g, step)
        if video_steps:
            fit = _fit_input_view(frame, fit, tgt, sc, video, t, cfg, ctx, g, step)
        out.append(fit.vertices.detach())
        fits.append(fit)
        retried.append(again)
        scales.append(sc)
        seconds.append(time.perf_counter() - t0)
        if progress:
            progress(t, T - 1)
    verts = torch.stack(out) * frame.size + frame.centre
    return RegistrationResult(Sequence(rest=frame.world, vertices=verts.float(), times=times),
                              chamfer=tuple(f.chamfer for f in fits), flipped=tuple(f.flipped for f in fits),
                              retried=tuple(retried), seconds=tuple(seconds), scales=tuple(scales))
