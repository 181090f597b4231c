"""Camera search (Sec. 4.1, Algorithm 1, Appendix A): the pose under which each frame's mesh looks like the frame.

A generator returns each frame's mesh in its canonical pose. For every frame we find the orbit camera under which
the mesh looks like the frame: sample P0 poses, keep the best, (optionally) add a pose from the stereo prior,
refine with a particle swarm, then with gradient descent on the silhouette (``search_poses``).

Roll is searched by default within +-45 degrees (``CameraSearchConfig.roll``; the official code has none): a
tilted hand-held shot needs it, and so does a body that pitches while it moves, since the generator removes
that rotation too.

Beyond the paper, a temporal warm start: frame t+1 starts from frame t's pose with a small local swarm and a short
refinement; only when its score is much worse than the frames' so far does it fall back to the global search. An
optional backward pass then hands each frame the next frame's pose (``backward_pass``), and an optional consensus
pass every other frame's orientation (``consensus``).

The search can be stopped and continued: ``search_poses`` hands its ``checkpoint`` callback a ``SearchState``
whenever everything before a point is final, and continues from one (``start``) to the poses an uninterrupted
search finds (the state carries the random generator's state, and each frame's search depends on nothing else).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
from torch import Tensor

from ... import render as R
from ...camera import Camera
from ...scoring import Scorer, SilhouetteColourScorer
from ...errors import V2M4Error
from ...types import Frames, Mesh
from .config import CameraSearchConfig
from .sampling import (SearchView, center_poses, look_at_range_for, make_view, mask_iou_poses, pose_bounds,
                       pose_cameras, radius_range_for, sample_poses, score_poses)
from .consensus import consensus_pass
from .refine import refine_pose, refine_poses
from .state import SearchState


@dataclass(frozen=True)
class PoseSearchResult:
    """poses (T, 7) per frame; cameras: Camera with T views (cam_from_canonical of each frame's mesh) at the
    frames' resolution; scores (T,); global_search (T,) bool, whether the frame needed the global search;
    seconds (T,) spent on each frame."""

    poses: Tensor
    cameras: Camera
    scores: Tensor
    global_search: Tensor
    seconds: tuple[float, ...]


def camera_points(points: Tensor, poses: Tensor, cfg: CameraSearchConfig) -> Tensor:
    """(N, 3) canonical points seen by P poses -> (P, N, 3) in camera coordinates, centred on their mean and
    divided by their RMS radius: what is left is the shape's orientation towards the camera, not its size or
    place (which the silhouette fixes, and which a generator's normalisation scrambles)."""
    M = pose_cameras(poses, cfg, (8, 8)).cam_from_world.to(points)
    x = points @ M[:, :3, :3].transpose(1, 2) + M[:, None, :3, 3]
    x = x - x.mean(1, keepdim=True)
    return x / x.square().sum(-1).mean(1).sqrt().clamp_min(1e-12)[:, None, None]


def shape_distance(points: Tensor, poses: Tensor, reference: Tensor, cfg: CameraSearchConfig) -> Tensor:
    """(P,) symmetric Chamfer (mean squared) between a mesh's points under P poses and a reference (N, 3), all as
    ``camera_points``. Beyond the paper: a temporal prior on the object's orientation in the fixed camera.

    A single view often fits a mirrored or turned pose almost as well as the right one (front and back of a
    symmetric figure, a flat-coloured sphere), and generators snap meshes to canonical axes, so a frame's camera
    may legitimately turn by a quarter turn from the previous one. What stays continuous is the object: the
    previous frame's mesh seen by its camera and this frame's mesh seen by the right camera are nearly the same
    shape facing the same way, while a flipped pose faces the other way.
    """
    x = camera_points(points, poses, cfg)
    d = torch.cdist(x, reference.to(x)[None].expand(len(x), -1, -1)).square()
    return d.min(2).values.mean(1) + d.min(1).values.mean(1)


def particle_swarm(objective, init: Tensor, lower: Tensor, upper: Tensor, cfg: CameraSearchConfig, iters: int, *,
                   generator: torch.Generator, periodic: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Minimise objective((P, D) -> (P,)) from P initial particles; returns (best position (D,), best value).

    Standard global-best PSO: v <- w v + c1 r1 (p_best - x) + c2 r2 (g_best - x), velocities clamped to
    max_velocity x range, positions clamped to [lower, upper] (periodic dimensions wrap instead).
    One objective call per iteration for all particles.
    """
    x = init.clone()
    span = upper - lower
    vmax = cfg.max_velocity * span
    v = (torch.rand(x.shape, generator=generator).to(x) * 2 - 1) * vmax * 0.5
    f = objective(x)
    pbest, pval = x.clone(), f.clone()
    g = int(torch.argmin(pval))
    for _ in range(iters):
        r1 = torch.rand(x.shape, generator=generator).to(x)
        r2 = torch.rand(x.shape, generator=generator).to(x)
        v = cfg.inertia * v + cfg.cognitive * r1 * (pbest - x) + cfg.social * r2 * (pbest[g] - x)
        v = torch.maximum(torch.minimum(v, vmax), -vmax)
        x = x + v
        if periodic is not None:
            wrapped = lower + torch.remainder(x - lower, span.clamp_min(1e-12))
            x = torch.where(periodic, wrapped, x)
        x = torch.maximum(torch.minimum(x, upper), lower)
        f = objective(x)
        better = f < pval
        pbest[better], pval[better] = x[better], f[better]
        g = int(torch.argmin(pval))
    return pbest[g], pval[g]


def _global_search(mesh, frame_s, cfg, ctx, scorer, topo, generator, prior_pose=None, shape=None):
    dev = frame_s.image.device
    lo, hi = pose_bounds(cfg, dev)
    cand = sample_poses(cfg.n_samples, cfg, generator=generator, device=dev)
    # samples keep roll 0 and only the swarm moves it: a random roll makes the P0 samples a 7-D cloud, too sparse
    # to land near the answer (docs/calibration.md)
    for _ in range(cfg.center_steps if cfg.center_samples else 0):
        cand = center_poses(mesh, cand, frame_s, cfg, ctx, topo)
    s = score_poses(mesh, cand, frame_s, cfg, ctx, scorer, topo)
    init = cand[torch.argsort(s)[: cfg.n_particles]]
    if prior_pose is not None:
        init = torch.cat([init, prior_pose[None].to(init)])
    periodic = torch.tensor([True, False, False, False, False, False, False], device=dev)
    return particle_swarm(_objective(mesh, frame_s, cfg, ctx, scorer, topo, shape), init, lo, hi, cfg,
                          cfg.pso_iters, generator=generator, periodic=periodic)


def _objective(mesh, frame_s, cfg, ctx, scorer, topo, shape=None):
    """The swarm's objective: the scorer's loss, plus cfg.shape_weight x ``shape_distance`` to ``shape`` (points
    (N, 3) of this mesh, reference (N', 3)) when given."""
    def f(x):
        out = score_poses(mesh, x, frame_s, cfg, ctx, scorer, topo)
        if shape is not None and cfg.shape_weight > 0:
            out = out + cfg.shape_weight * shape_distance(shape[0], x, shape[1], cfg).to(out)
        return out
    return f


def _local_search(mesh, frame_s, start, cfg, ctx, scorer, topo, generator, shape=None):
    dev = frame_s.image.device
    lo, hi = pose_bounds(cfg, dev)
    spread = torch.tensor(cfg.warm_spread, device=dev)
    if not cfg.roll:
        spread = spread * torch.tensor([1, 1, 1, 1, 1, 1, 0.0], device=dev)
    noise = torch.randn(cfg.warm_particles, 7, generator=generator).to(dev) * spread
    noise[0] = 0  # the previous pose itself is a particle
    init = start[None] + noise
    seeds = []
    if cfg.warm_turns:
        # a mesh turned by d about +Y (through its centre, the origin) looks, from the old camera turned by d
        # about the same axis, as before: yaw + d, and the look-at turned with it (R_y(d) maps the orbit offset
        # at yaw to the one at yaw + d)
        d = torch.tensor([0.5, 1.0, 1.5], device=dev, dtype=start.dtype) * math.pi
        turns = start[None].repeat(3, 1)
        turns[:, 0] = torch.remainder(start[0] + d + math.pi, 2 * math.pi) - math.pi
        c, s_ = torch.cos(d), torch.sin(d)
        turns[:, 3] = c * start[3] + s_ * start[5]
        turns[:, 5] = -s_ * start[3] + c * start[5]
        seeds.append(turns)
    if cfg.roll and cfg.warm_roll > 0:
        # a pitching body tilts by tens of degrees within a stride: seed both tilts, beyond the spread's reach
        tilts = start[None].repeat(2, 1)
        tilts[:, 6] = start[6] + torch.tensor([-1.0, 1.0], device=dev) * cfg.warm_roll
        seeds.append(tilts)
    if seeds:
        seeds = torch.cat(seeds)
        init = torch.cat([init[: max(1, len(init) - len(seeds))], seeds])
    init = torch.maximum(torch.minimum(init, hi), lo)
    if len(seeds):  # a turned or tilted pose needs its own radius and look-at before it can compete
        for _ in range(cfg.center_steps):
            init[-len(seeds):] = center_poses(mesh, init[-len(seeds):], frame_s, cfg, ctx, topo)
    local = replace(cfg, max_velocity=cfg.max_velocity * 0.25)
    periodic = torch.tensor([True, False, False, False, False, False, False], device=dev)
    base = _objective(mesh, frame_s, cfg, ctx, scorer, topo, shape)

    def margin(x):
        # the same temporal prior as the global fallback's margin: a turn replaces continuity only when clearly
        # better. Scaling the (positive) score leaves the search inside each basin as it was
        yaw = torch.remainder(x[:, 0] - start[0] + math.pi, 2 * math.pi) - math.pi
        return torch.where(yaw.abs() > math.pi / 4, cfg.turn_margin, 1.0)
    best, val = particle_swarm(lambda x: base(x) * margin(x), init, lo, hi, local, cfg.warm_iters,
                               generator=generator, periodic=periodic)
    return best, val / margin(best[None])[0]


def backward_pass(meshes: list[Mesh], poses: list[Tensor], scores: list[float], views: list[tuple],
                  cfg: CameraSearchConfig, ctx: R.RenderContext, scorer: Scorer, batch: int, *, done: int = 0,
                  on_batch=None) -> list[float]:
    """``CameraSearchConfig.backward_pass``: frame t (from the last but one back to the first) also starts from
    frame t + 1's pose, centred on its own mesh (normalised on its own, so radius and look-at differ) and refined
    with the warm frames' steps, and takes the better of the refined and the centred pose if it scores better.
    poses (7,) and scores are updated in place; views[t] = (config, search view, refinement view, edge topology)
    of frame t. ``batch`` frames are refined together, as warm frames are, from the last ones back; inside a
    batch each frame also starts from the pose of the frame just after the batch. Returns the seconds spent per
    frame. done: frames already settled by an earlier, interrupted pass (a multiple of ``batch``: whole batches,
    from the last but one back), skipped; on_batch: optional callable(done, seconds per frame so far), called as
    each batch is settled."""
    T = len(meshes)
    secs = [0.0] * T
    for hi in range(T - 1 - done, 0, -batch):
        t0 = time.perf_counter()
        ts = list(range(max(0, hi - batch), hi))
        # each frame starts from the next frame's pose and, inside a batch, also from the pose of the frame after
        # the batch (``hi``, final by now): frames refined together cannot hand a pose on to each other, and a
        # pose the forward pass found late must reach the whole batch (with the next frame's pose alone, a batch
        # hands it to its last frame only: docs/calibration.md)
        cands = []  # per frame, its starting poses centred on its own mesh in one call
        for t in ts:
            cfg_t, frame_s, _, topo = views[t]
            c = torch.stack([poses[u] for u in dict.fromkeys((t + 1, hi))])
            for _ in range(cfg.center_steps):
                c = center_poses(meshes[t], c, frame_s, cfg_t, ctx, topo)
            cands.append(c)
        owner = [t for t, c in zip(ts, cands) for _ in range(len(c))]
        refined = refine_poses([meshes[t] for t in owner], torch.cat(cands), [views[t][2] for t in owner],
                               views[ts[0]][0], ctx, cfg.warm_refine_iters, [views[t][3] for t in owner], scorer)
        for t, c, r in zip(ts, cands, torch.split(refined, [len(c) for c in cands])):
            cfg_t, frame_s, _, topo = views[t]
            # the centred poses compete too: the refinement's objective (finer, mask-weighted) can walk one back to
            # the very pose the search's score rejects (docs/calibration.md)
            both = torch.cat([r, c])
            s = score_poses(meshes[t], both, frame_s, cfg_t, ctx, scorer, topo)
            j = int(torch.argmin(s))
            if float(s[j]) < scores[t]:
                poses[t], scores[t] = both[j], float(s[j])
        share = (time.perf_counter() - t0) / len(ts)
        for t in ts:
            secs[t] += share
        if on_batch:
            on_batch(T - 1 - ts[0], secs)
    return secs


# ---------------------------------------------------------------------------------------------------------------
# the search loop: every frame in order, then the backward pass

class FrameViews(NamedTuple):
    """What frame t's renders are compared with: cfg with the frame's own radius and look-at ranges, the search
    view (search_res), the refinement view (refine_res), and the frame's mesh's render edge topology. The
    ``views[t]`` that ``backward_pass`` takes."""

    cfg: CameraSearchConfig
    search: SearchView
    refine: SearchView
    topology: object


@dataclass(frozen=True)
class _Search:
    """What every frame's search shares, fixed for the whole loop. batch: warm frames refined together; points:
    (shape_points, 3) surface samples of each mesh for the shape term, None when it is off; progress and
    checkpoint: ``search_poses``'s callbacks."""

    meshes: list[Mesh]
    cfg: CameraSearchConfig
    ctx: R.RenderContext
    scorer: Scorer
    stereo: object | None
    generator: torch.Generator
    batch: int
    points: list[Tensor] | None
    progress: object | None
    checkpoint: object | None = None


@dataclass
class _Track:
    """The loop's running state, one entry per frame: pose (7,) (a warm frame's swarm pose until its batch is
    refined), score, whether it needed the global search, silhouette IoU (for the fallback test), seconds."""

    poses: list
    scores: list
    global_search: list
    ious: list
    seconds: list

    @staticmethod
    def empty(T: int) -> "_Track":
        return _Track([None] * T, [None] * T, [False] * T, [None] * T, [0.0] * T)

    @staticmethod
    def resumed(state: SearchState, T: int, device: torch.device) -> "_Track":
        """The track of ``state``'s settled frames, bit for bit as the stopped search held them."""
        track = _Track.empty(T)
        for t in range(len(state.poses)):
            iou = float(state.ious[t])
            track.poses[t] = state.poses[t].to(device)
            track.scores[t], track.global_search[t] = float(state.scores[t]), bool(state.global_search[t])
            track.ious[t], track.seconds[t] = None if math.isnan(iou) else iou, float(state.seconds[t])
        return track

    def state(self, n: int, rng: Tensor, batch: int, backward: int = 0, seconds: list | None = None,
              consensus: int = 0) -> SearchState:
        """The first n frames (all settled) as a ``SearchState``."""
        secs = self.seconds if seconds is None else seconds
        return SearchState(torch.stack(self.poses[:n]).cpu(), torch.tensor(self.scores[:n], dtype=torch.float64),
                           torch.tensor(self.global_search[:n]),
                           torch.tensor([math.nan if x is None else x for x in self.ious[:n]], dtype=torch.float64),
                           torch.tensor(secs[:n], dtype=torch.float64), rng, backward, batch, consensus)


def _warm_batch(meshes: list[Mesh], cfg: CameraSearchConfig, device: torch.device) -> int:
    """cfg.refine_batch, or its default when None (the config's comment says why)."""
    if cfg.refine_batch is not None:
        return cfg.refine_batch
    faces = sum(int(m.faces.shape[0]) for m in meshes) / max(1, len(meshes))
    return max(1, min(16, int((4e6 / max(faces, 1.0)) ** 0.5))) if device.type == "cuda" else 1


def _shape_points(meshes: list[Mesh], cfg: CameraSearchConfig, generator: torch.Generator,
                  device: torch.device) -> list[Tensor] | None:
    if cfg.shape_weight <= 0:
        return None
    from ...metrics.geometry import sample_surface
    return [sample_surface(m.vertices, m.faces, cfg.shape_points, generator=generator).to(device) for m in meshes]


def _frame_views(s: _Search, frames: Frames, t: int) -> tuple[Tensor, FrameViews]:
    """Frame t (H, W, 4) on the meshes' device, and its FrameViews."""
    cfg, mesh = s.cfg, s.meshes[t]
    frame = frames.rgba[t].to(mesh.vertices.device)
    cfg_t = replace(cfg, radius_range=radius_range_for(frame, cfg),
                    look_at_range=look_at_range_for(frame, cfg)) if cfg.auto_radius else cfg
    return frame, FrameViews(cfg_t, make_view(frame, cfg.search_res, cfg), make_view(frame, cfg.refine_res, cfg),
                             R.edge_topology(mesh.faces, mesh.vertices))


def _shape_for(s: _Search, track: _Track, t: int) -> tuple[Tensor, Tensor] | None:
    """(this frame's points, the previous frame's seen by its current pose) for the shape term, or None."""
    if s.points is None or t == 0 or track.poses[t - 1] is None:
        return None
    return s.points[t], camera_points(s.points[t - 1], track.poses[t - 1][None], s.cfg)[0]


def _shape_costs(s: _Search, track: _Track, t: int, *candidates: Tensor) -> list[float]:
    """cfg.shape_weight x the shape term of each candidate pose of frame t (zeros when the term is off)."""
    sh = _shape_for(s, track, t)
    if sh is None:
        return [0.0] * len(candidates)
    return (s.cfg.shape_weight * shape_distance(sh[0], torch.stack(candidates), sh[1], s.cfg)).tolist()


def _global_frame(s: _Search, track: _Track, t: int, frame: Tensor, v: FrameViews,
                  warm_score: float | None = None) -> tuple[Tensor, float]:
    """Algorithm 1 for frame t: (pose (7,), score). warm_score: the frame's warm pose's score, when this is a
    fallback; its swarm then weighs continuity too, so that it is judged by what the warm-versus-global choice
    judges, and it refines in full only when it wins."""
    cfg_t, mesh = v.cfg, s.meshes[t]
    prior = None
    if s.stereo is not None:
        prior = s.stereo.estimate_pose(mesh, frame, cfg_t, s.ctx, s.scorer, generator=s.generator)
    found, _ = _global_search(mesh, v.search, cfg_t, s.ctx, s.scorer, v.topology, s.generator, prior,
                              _shape_for(s, track, t) if warm_score is not None else None)
    first = cfg_t.refine_iters if warm_score is None else min(cfg_t.warm_refine_iters, cfg_t.refine_iters)
    pose = refine_pose(mesh, found, v.refine, cfg_t, s.ctx, first, v.topology, s.scorer)
    score = float(score_poses(mesh, pose[None], v.search, cfg_t, s.ctx, s.scorer, v.topology)[0])
    if warm_score is None or warm_score <= s.cfg.global_margin * score or first >= cfg_t.refine_iters:
        return pose, score
    # A fallback refines as long as a warm frame does before it is compared with the warm pose, and only one
    # that wins gets the paper's whole refinement: most fallbacks keep the warm pose, and the rest of the
    # refinement was most of their cost. The winner is refined again from the swarm's pose, not continued: a
    # second Adam run restarts with full-size steps, which moved the poses (docs/calibration.md)
    pose = refine_pose(mesh, found, v.refine, cfg_t, s.ctx, cfg_t.refine_iters, v.topology, s.scorer)
    return pose, float(score_poses(mesh, pose[None], v.search, cfg_t, s.ctx, s.scorer, v.topology)[0])


def _finish(s: _Search, track: _Track, t: int, v: FrameViews, pose: Tensor, score: float, was_global: bool,
            iou: float | None = None) -> None:
    """Record frame t's final pose (and its IoU, measured unless given, when the IoU fallback is on)."""
    track.poses[t], track.scores[t], track.global_search[t] = pose, score, was_global
    if s.cfg.warm_fallback_iou is not None:
        track.ious[t] = iou if iou is not None else float(mask_iou_poses(s.meshes[t], pose[None], v.search, s.cfg,
                                                                         s.ctx, v.topology)[0])
    if s.progress:
        s.progress(t, score, was_global)


def _settle_warm(s: _Search, track: _Track, t: int, frame: Tensor, v: FrameViews, pose: Tensor) -> None:
    """Keep warm frame t's refined pose, or fall back to the global search when it scores or overlaps poorly
    against the frames so far."""
    cfg = s.cfg
    score = float(score_poses(s.meshes[t], pose[None], v.search, v.cfg, s.ctx, s.scorer, v.topology)[0])
    found, iou = (pose, score, False), None
    poor = score > cfg.warm_fallback_ratio * statistics.median(track.scores[:t])
    if not poor and cfg.warm_fallback_iou is not None:
        iou = float(mask_iou_poses(s.meshes[t], pose[None], v.search, cfg, s.ctx, v.topology)[0])
        poor = iou < statistics.median(track.ious[:t]) - cfg.warm_fallback_iou
    if poor:
        g_pose, g_score = _global_frame(s, track, t, frame, v, warm_score=score)
        # temporal prior: a single view often fits a mirrored pose almost as well (front/back of a symmetric
        # figure), so the global result replaces the warm one only when it is clearly better, shape continuity
        # (shape_distance) included
        c_warm, c_glob = _shape_costs(s, track, t, pose, g_pose)
        if not score + c_warm <= cfg.global_margin * (g_score + c_glob):
            found, iou = (g_pose, g_score, True), None
    _finish(s, track, t, v, *found, iou)


def _flush(s: _Search, track: _Track, pending: list[tuple[int, Tensor, FrameViews]]) -> None:
    """Refine the pending warm frames (t, frame, views) together, then settle each one in order."""
    if not pending:
        return
    t0 = time.perf_counter()
    ts = [t for t, _, _ in pending]
    views = [v for _, _, v in pending]
    refined = refine_poses([s.meshes[t] for t in ts], torch.stack([track.poses[t] for t in ts]),
                           [v.refine for v in views], views[0].cfg, s.ctx, s.cfg.warm_refine_iters,
                           [v.topology for v in views], s.scorer)
    share = (time.perf_counter() - t0) / len(ts)
    for k, (t, frame, v) in enumerate(pending):
        t1 = time.perf_counter()
        _settle_warm(s, track, t, frame, v, refined[k])
        track.seconds[t] += share + time.perf_counter() - t1


def _settled(s: _Search, track: _Track, n: int) -> None:
    """The first n frames are final: hand the checkpoint callback what continues the search from here."""
    if s.checkpoint:
        s.checkpoint(track.state(n, s.generator.get_state(), s.batch))


def _forward_pass(s: _Search, frames: Frames, start: SearchState | None) -> tuple[_Track, list[FrameViews]]:
    """Every frame in order: the global search for the first (and with the warm start off, every) frame, else a
    local swarm from the previous pose, refined ``s.batch`` frames at a time; from where ``start`` stopped when
    given. Returns the state and each frame's views."""
    T, dev = len(s.meshes), s.meshes[0].vertices.device
    track = _Track.empty(T) if start is None else _Track.resumed(start, T, dev)
    n = 0 if start is None else len(start.poses)
    if start is not None:
        s.generator.set_state(start.rng)
    views, pending, prev_pose = [], [], track.poses[n - 1] if n else None
    for t, mesh in enumerate(s.meshes):
        t0 = time.perf_counter()
        frame, v = _frame_views(s, frames, t)
        views.append(v)
        if t < n:  # settled before the search was stopped
            continue
        if v.cfg.warm_start and prev_pose is not None:
            pose, _ = _local_search(mesh, v.search, prev_pose, v.cfg, s.ctx, s.scorer, v.topology, s.generator,
                                    _shape_for(s, track, t) if s.cfg.shape_swarm else None)
            track.poses[t] = prev_pose = pose
            pending.append((t, frame, v))
            track.seconds[t] += time.perf_counter() - t0
            if len(pending) >= s.batch:
                _flush(s, track, pending)
                pending = []
                prev_pose = track.poses[t]  # refined, and possibly replaced by the global search
                _settled(s, track, t + 1)
            continue
        pose, score = _global_frame(s, track, t, frame, v)
        _finish(s, track, t, v, pose, score, True)
        track.seconds[t] += time.perf_counter() - t0
        prev_pose = pose
        _settled(s, track, t + 1)
    if pending:
        _flush(s, track, pending)
        _settled(s, track, T)
    return track, views


def _consensus(s: _Search, track: _Track, views: list[FrameViews], start: SearchState | None) -> None:
    """The consensus pass's rounds (those ``start`` has not done), checkpointed after each."""
    T = len(s.meshes)
    before = list(track.seconds)
    backward = T - 1 if s.cfg.backward_pass and s.cfg.warm_start else 0

    def on_round(done: int, secs: list[float]) -> None:
        s.checkpoint(track.state(T, s.generator.get_state(), s.batch, backward,
                                 [a + b for a, b in zip(before, secs)], consensus=done))
    for t, sec in enumerate(consensus_pass(s.meshes, track.poses, track.scores, views, s.cfg, s.ctx, s.scorer,
                                           s.batch, done=start.consensus if start is not None else 0,
                                           on_round=on_round if s.checkpoint else None)):
        track.seconds[t] += sec


def search_poses(meshes: list[Mesh], frames: Frames, cfg: CameraSearchConfig, ctx: R.RenderContext, *,
                 scorer: Scorer | None = None, stereo=None, generator: torch.Generator,
                 progress=None, checkpoint=None, start: SearchState | None = None) -> PoseSearchResult:
    """Algorithm 1 for every frame: the camera under which meshes[t] (canonical frame) looks like frame t.

    stereo: optional ``v2m4.stages.stereo_prior.StereoPrior``; when given, its pose joins the swarm.
    progress: optional callable(t, score, was_global), called as each frame's pose is settled in the forward pass.
    checkpoint: optional callable(SearchState), called whenever every frame so far is final: after each frame
    (each batch of ``refine_batch`` warm frames where they are refined together) and after each batch of the
    backward pass; its ``settled`` counts up to ``search_units``. start: such a state of a stopped search with the
    same inputs and generator seed, continued from where it stopped to the result the whole search gives.
    """
    scorer = scorer or SilhouetteColourScorer()
    dev = meshes[0].vertices.device
    s = _Search(meshes, cfg, ctx, scorer, stereo, generator, _warm_batch(meshes, cfg, dev),
                _shape_points(meshes, cfg, generator, dev), progress, checkpoint)
    if start is not None and (len(start.poses) > len(meshes) or start.batch != s.batch):
        raise V2M4Error(f"a camera search stopped after {len(start.poses)} frames, refining {start.batch} at a time, "
                        f"cannot continue one of {len(meshes)} frames refining {s.batch} at a time (another run's "
                        "checkpoint, or another device?)")
    track, views = _forward_pass(s, frames, start)
    if cfg.backward_pass and cfg.warm_start:
        before = list(track.seconds)  # forward, and any backward seconds of the stopped search

        def on_batch(done: int, secs: list[float]) -> None:
            s.checkpoint(track.state(len(meshes), generator.get_state(), s.batch, done,
                                     [a + b for a, b in zip(before, secs)]))
        for t, sec in enumerate(backward_pass(meshes, track.poses, track.scores, views, cfg, ctx, scorer, s.batch,
                                              done=start.backward if start is not None else 0,
                                              on_batch=on_batch if checkpoint else None)):
            track.seconds[t] += sec
    if cfg.consensus_rounds > 0:
        _consensus(s, track, views, start)
    H, W = frames.resolution
    P = torch.stack(track.poses)
    return PoseSearchResult(poses=P, cameras=pose_cameras(P, cfg, (H, W)),
                            scores=torch.tensor(track.scores, dtype=torch.float32),
                            global_search=torch.tensor(track.global_search), seconds=tuple(track.seconds))
