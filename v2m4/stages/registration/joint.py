"""Topology-consistent registration of the whole clip at once (Sec. 4.3, Appendix A; ours: every frame fitted).

The pairwise registration (``sequence``) chains keyframes: each pair starts where the previous ended, so an error
made early is carried to the last frame, and frames between keyframes are interpolated, never fitted. Here the
unknowns are one rest mesh and the positions of EVERY frame of the clip, fitted together:

- rest: the first keyframe's mesh, remeshed and normalised as ``sequence`` does (``_prepare``);
- positions x_t (T, V, 3), t over the clip's frames, each under the large-steps parameterisation of Nicolet et
  al. (x_t = (I + lambda L)^-1 u_t, ``v2m4.optim``); one factorisation serves every frame, as one solve with the
  frames' 3T right-hand sides (``frames_to_x``);
- evidence: at the K keyframes the re-posed generated meshes (Chamfer + multi-view render L1 of mask and normals
  against a pool of renders, the pair's losses), at every frame the video itself (input-view silhouette L1 against
  that frame's mask);
- regularisers: ARAP, face-area and edge-length consistency against the rest mesh at a per-frame reference size
  (Appendix A weights), and the squared second difference of every vertex's trajectory over time (ours), which
  keeps the frames fitted to silhouettes alone from jittering.
- after the fit: the keyframes smoothed in time at a weight the clip's video and the generator's measured noise
  allow (``smoothing``, ``noise``), and a smoothed clip fitted again briefly to the video (``_smooth``).

Initialisation: one similarity per keyframe (6-D rotation, log-scale, translation), all K fitted in one batched Adam
run on Chamfer + render L1, optionally from several quarter turns about +Y at once (``global_starts``); then the
rest's loose pieces that the similarity left off their target are placed rigidly on the target's pieces that fit them
(``parts.place_pieces``: a limb raised far from its rest pose); the frames between keyframes start at their
neighbours' positions interpolated in time. Frames are the batch dimension of every render and loss; the step loop
makes no host sync. Afterwards each frame's folds are repaired (``unfold``).

Units: every loss is computed in the rest mesh's normalised frame (unit cube at the origin), as in ``sequence``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from ... import render as R
from ...camera import Camera
from ...errors import V2M4Error
from ...geometry import chamfer, face_areas, rotation_6d
from ..._graphs import RenderPass, StepGraphs, StepVisibility
from ...optim import Adam, Optimizer, UniformAdam
from ...types import Mesh, Sequence
from .align import _sample_sets, eval_chamfer, quarter_turns
from .config import RegistrationConfig
from .parts import place_pieces
from .noise import NoiseEstimate
from .smoothing import TemporalChoice, choose_weight, smooth_keyframes
from .flow import FlowTerm, VideoFlow, flow_tensors
from .keys import _Keys, _render
from .clip_terms import (_Shape, _interpolate, _points, _temporal, _video_at, frames_to_u, frames_to_x,
                         restart_fit)
from .energies import repair_folds
from .state import digest, save_state
from .sequence import RegistrationResult, _check_meshes, _prepare

_RC = RegistrationConfig  # the pairwise stage's defaults, which the joint fit shares


@dataclass(frozen=True)
class JointConfig:
    """Paper numbers cite Appendix A ("Topology Consistency"); "pair" marks a number shared with the pairwise
    registration (``RegistrationConfig``, whose comments say where it comes from); "ours" what the paper does not
    fix, and "measured" a number chosen by the runs named beside it."""

    global_iters: int = _RC.global_iters    # Appendix A: global alignment steps (all keyframes at once)
    global_views: int = _RC.global_views    # Appendix A: views per keyframe per step of the global render loss
    global_lr: float = _RC.global_lr        # pair
    global_starts: int = 1          # ours: quarter turns about +Y each keyframe's global alignment starts from, in
                                    # one batch (the pair's retry, made up front); 1: identity only. Both presets
                                    # keep 1: a keyframe that goes on from a turn matches its target's surface
                                    # with other vertices, and the animation jumps there (see docs/calibration.md)
    iters: int = _RC.local_iters    # Appendix A: local alignment steps, now of the whole clip together
    key_views: int = _RC.local_views  # Appendix A: views per keyframe per step of the local render loss
    lr: float = _RC.local_lr        # pair (uniform Adam in u; normalised per frame here, see UniformAdam(per_row=True))
    smooth_lambda: float = _RC.smooth_lambda  # pair: Nicolet et al.'s lambda for I + lambda L
    w_render: float = _RC.w_render  # Appendix A: 1
    w_chamfer: float = _RC.w_chamfer  # Appendix A: 1
    w_arap: float = _RC.w_arap      # Appendix A: 1
    w_area: float = _RC.w_area      # Appendix A: 1e6
    w_edge: float = _RC.w_edge      # Appendix A: 1e2
    w_input_view: float = _RC.w_input_view  # pair: the video's silhouette L1 over the mask's area, every frame
    video_start: float = 0.5        # ours: share of the steps before the video's term joins: the targets first set
                                    # every keyframe's shape, then the silhouettes settle it (as a pair ends with
                                    # its input-view steps). From the first step, the silhouettes bend bodies still
                                    # near the rest pose into the view's outline; tuned: see docs/calibration.md
    w_temporal: float = 1.0         # ours: squared second difference of vertex trajectories (normalised units, at
                                    # the clip's median frame spacing); tuned: see docs/calibration.md
    w_flow: float = 0.0             # ours: the video's optical flow (``flow``), a Charbonnier penalty in pixels
                                    # per frame pair, with the video's silhouettes; measured: docs/calibration.md
    video_frames: int = 48          # ours: frames whose silhouette is rendered per step, drawn at random, so that a
                                    # step's memory and time stop growing with the clip; 0: every frame every step.
                                    # 48: every frame of every clip measured (the bench's are 25-48 frames, the
                                    # demo 24); a longer clip's frames each get iters x 48 / T silhouette steps
    video_res: int = 0              # ours: the video's silhouettes are compared at most this many pixels on a side
                                    # (masks area-averaged, the camera's intrinsics scaled); 0: the frames' own
    arap_refresh: int = _RC.arap_refresh    # pair: steps between re-solving the ARAP rotations
    cuda_graphs: bool = True        # ours, no effect on the result: on CUDA each step after its visibility pass
                                    # is replayed as one CUDA graph, and the pass's projections and silhouette
                                    # counts as another (the op-by-op step's result, tested on an H100 at test
                                    # size). It pays with the keyframes rendered at 128 px (H100: 22.1 against
                                    # 25.2 ms a step; with the pass replayed too, 8.1-8.3 against 12.1-13.3 ms);
                                    # at 256 px on an H200 the step alone did not (31.3 against 30.0 ms;
                                    # bench/results/registration_speed.json)
    restart_ratio: float = _RC.fail_ratio  # pair's retry test: keyframes whose Chamfer to their target ends above
                                    # this x the median are fitted again from the last keyframe before them that
                                    # does not (``clip_terms.restart_keyframes``), the second fit kept if the
                                    # keyframes' mean Chamfer falls (the pair's rule); 0: off. Measured on every
                                    # bench item: docs/calibration.md
    place_pieces: bool = True       # ours: loose pieces of the rest that the keyframe's similarity leaves off
                                    # their target placed rigidly on the target's pieces that fit them, before
                                    # the fit (``parts.place_pieces``; its numbers: docs/calibration.md)
    temporal_weights: tuple[float, ...] = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0)
                                    # ours: after the fit, the keyframes smoothed in time at the largest weight
                                    # whose smoothing predicts the in-between masks as well as none does
                                    # (``smoothing``); (): off. Log-spaced from none to straight lines in time,
                                    # set before the rule was measured (docs/calibration.md)
    polish: float = 0.25            # ours: where the clip was smoothed, a second fit of this share of ``iters``
                                    # from the smoothed clip, its keyframes the targets (``_polish``); 0: none.
                                    # Measured: docs/calibration.md
    noise_samples: int = 3          # ours: keyframes (evenly spread) generated a second time with other noise, so
                                    # the generator's noise is measured and the smoothing may remove that much
                                    # (``noise``; ``smoothing.noise_weight``); 0: not measured. 3 costs 3 more
                                    # generations; measured: docs/calibration.md
    unfold_iters: int = 300         # ours: at most this many steps of the fold repair per frame, after the fit (it
                                    # stops where no fold is left); tuned: see docs/calibration.md
    render_res: int = 128           # ours: resolution of the keyframes' render loss (the pair's is 256). Measured:
                                    # the demo registers in 29.1 s against 41.6 s at 256 px (H100, with the
                                    # graphs above) with the same fit, and on six bench items geometry is as
                                    # good or better (docs/calibration.md, the row of render_res)
    view_pool: int = _RC.view_pool          # pair: target renders made once per keyframe
    fov_deg: float = _RC.fov_deg            # pair
    chamfer_points: int = _RC.chamfer_points  # pair
    sample_sets: int = _RC.sample_sets      # pair
    remesh_rest: bool = _RC.remesh_rest     # pair
    remesh_feature_deg: float | None = _RC.remesh_feature_deg  # pair
    dense_max_vertices: int = _RC.dense_max_vertices          # pair

    @staticmethod
    def paper() -> "JointConfig":
        """GPU preset: the paper's 1,000 joint steps; 16 views a keyframe a step and 250 global steps (measured: the
        demo registers in 14.7 s against 22.4 s on one H100 with the same fit, and four bench items from one camera
        run each move by at most 0.003 of F@2% once-aligned; docs/calibration.md). Each step renders every
        keyframe, so 16 a keyframe is already 144 views a step on a 9-keyframe clip, nearly three times the pair's 50."""
        return JointConfig(key_views=16, global_iters=250)

    @staticmethod
    def fast() -> "JointConfig":
        """CPU preset: the pairwise fast preset's views, resolution and samples; 400 joint steps, each fitting up to
        48 frames' silhouettes (``video_frames``) at 128 px (tuned: see docs/calibration.md)."""
        f = RegistrationConfig.fast()
        return JointConfig(global_iters=f.global_iters, global_views=f.global_views, global_lr=f.global_lr,
                           global_starts=1, iters=400, key_views=4, lr=f.local_lr, render_res=f.render_res,
                           view_pool=f.view_pool, chamfer_points=f.chamfer_points, video_res=128)

    def steps(self) -> int:
        """The steps ``register_clip`` reports progress over: the keyframes' global alignment's, then the fit's."""
        starts = max(1, self.global_iters // 4) if self.global_starts > 1 else 0
        return starts + self.global_iters + self.iters

    def pair_config(self) -> RegistrationConfig:
        """The pairwise config the shared helpers (``_prepare``, ``Target``) read their numbers from."""
        return RegistrationConfig(smooth_lambda=self.smooth_lambda, render_res=self.render_res,
                                  view_pool=self.view_pool, fov_deg=self.fov_deg, chamfer_points=self.chamfer_points,
                                  remesh_rest=self.remesh_rest, remesh_feature_deg=self.remesh_feature_deg,
                                  dense_max_vertices=self.dense_max_vertices, global_normals=True)


def _similarity(x: Tensor, c: Tensor, r6: Tensor, log_s: Tensor, t: Tensor) -> Tensor:
    """x (V, 3) under B similarities: rotation_6d(r6 (B, 6)) and exp(log_s (B,)) about c (3,), then t (B, 3);
    -> (B, V, 3)."""
    Rm = rotation_6d(r6)
    return ((x - c)[None] @ Rm.transpose(1, 2)) * log_s.exp()[:, None, None] + c + t[:, None]


class _Samples:
    """``sample_sets`` barycentric surface samples of a mesh, stacked, and the current set in fixed tensors
    (``use`` copies set it % sample_sets in: a captured step reads them)."""

    def __init__(self, faces: Tensor, rest: Tensor, cfg: JointConfig, g: torch.Generator):
        sets = _sample_sets(faces, face_areas(rest, faces), cfg.chamfer_points, cfg.sample_sets, g)
        self.sets = (torch.stack([c for c, _ in sets]), torch.stack([b for _, b in sets]))
        self.first = (self.sets[0][0], self.sets[1][0])
        self.current = (self.sets[0][0].clone(), self.sets[1][0].clone())

    @torch.no_grad()
    def use(self, it: int) -> None:
        for cur, stacked in zip(self.current, self.sets):
            cur.copy_(stacked[it % stacked.shape[0]])


def _global_fit(x: Tensor, template: Mesh, keys: _Keys, key_of: Tensor, rots: Tensor, iters: int,
                w_render: float, cfg: JointConfig, ctx, g: torch.Generator, topo, *,
                static: bool | None = None, tick=None) -> tuple[Tensor, Tensor]:
    """B similarities of rest positions x (V, 3) in one Adam run: row b onto keyframe key_of[b] (B,), starting
    from rotation rots[b] (B, 3, 3) about x's centroid, unit scale, and the target's centroid. Returns the
    positions (B, V, 3) and their Chamfer (B,), both detached. static: as in ``_ClipFit``; tick: called after each
    step (no host synchronisation)."""
    B = key_of.shape[0]
    c = x.mean(0).detach()
    r6 = torch.cat([rots[:, 0], rots[:, 1]], -1).to(x).clone().requires_grad_(True)
    log_s = torch.zeros(B, dtype=x.dtype, device=x.device, requires_grad=True)
    t = (keys.points[key_of].mean(1) - c).clone().requires_grad_(True)
    static = x.is_cuda and cfg.cuda_graphs if static is None else static
    graphs = StepGraphs([r6, log_s, t], enabled=static and cfg.cuda_graphs)
    # capturable: the step count lives on the device, so a captured step counts on each replay
    opt = Adam([r6, log_s, t], lr=cfg.global_lr, capturable=graphs.enabled)
    samples = _Samples(template.faces, x, cfg, g)
    picks = keys.picks(iters, cfg.global_views, g)[:, key_of]  # a keyframe's starts see the same views
    pts = keys.points[key_of]
    cur = picks[0].clone()  # this step's views, copied in before it (a captured step reads them)
    seen = StepVisibility(graphs=graphs.enabled) if static else None

    def body():
        y = _similarity(x, c, r6, log_s, t)
        loss = cfg.w_chamfer * chamfer(_points(y, samples.current), pts).sum()
        if w_render > 0:
            loss = loss + w_render * keys.render_l1(ctx, template, y, key_of, cur, topo, seen).sum()
        loss.backward()
        opt.step()

    for it in range(iters):
        samples.use(it)
        cur.copy_(picks[it])
        if seen is not None and w_render > 0:
            if seen.update(ctx, lambda: {"key": RenderPass(template, *keys.views(_similarity(x, c, r6, log_s, t),
                                                                                 key_of, cur), topo)}):
                graphs.reset()
        graphs(seen.key() if seen is not None else (), body)
        if tick:
            tick()
    with torch.no_grad():
        y = _similarity(x, c, r6, log_s, t)
        return y, chamfer(_points(y, samples.first), pts)


def _global_keyframes(x: Tensor, template: Mesh, keys: _Keys, cfg: JointConfig, ctx, g: torch.Generator,
                     topo, tick=None) -> tuple[Tensor, Tensor]:
    """Every keyframe's similarity of rest positions x (V, 3), fitted together. With ``global_starts`` S > 1, first
    a quarter of the steps from each of S quarter turns about +Y on Chamfer alone (the pair's retry, as one K * S
    batch), each keyframe going on from its lowest-Chamfer start. Returns positions (K, V, 3) and the chosen start
    (K,) int64 (0: the identity)."""
    K = keys.points.shape[0]
    every = torch.arange(K, device=x.device)
    starts = quarter_turns(max(1, cfg.global_starts), x.dtype, x.device)  # starts[0] is the identity
    chosen = torch.zeros(K, dtype=torch.int64, device=x.device)
    if len(starts) > 1:
        S = len(starts)
        _, ch = _global_fit(x, template, keys, every.repeat_interleave(S), starts.repeat(K, 1, 1),
                            max(1, cfg.global_iters // 4), 0.0, cfg, ctx, g, topo, tick=tick)
        chosen = ch.reshape(K, S).argmin(1)
    y, _ = _global_fit(x, template, keys, every, starts[chosen], cfg.global_iters, cfg.w_render, cfg, ctx, g, topo,
                       tick=tick)
    return y, chosen


def _check_inputs(meshes: list[Mesh], key_index: Tensor, masks: Tensor, camera: Camera, times: Tensor,
                  flow: VideoFlow | None) -> None:
    _check_meshes(meshes)
    K, T = len(meshes), masks.shape[0]
    if key_index.shape != (K,) or key_index.dtype != torch.int64:
        raise V2M4Error(f"key_index must be ({K},) int64 for {K} keyframe meshes, got {tuple(key_index.shape)} "
                        f"{key_index.dtype}")
    if K > 1 and not bool((key_index[1:] > key_index[:-1]).all()):
        raise V2M4Error(f"key_index must be strictly increasing, got {key_index.tolist()}")
    if int(key_index.min()) < 0 or int(key_index.max()) >= T:
        raise V2M4Error(f"key_index must index the clip's {T} frames, got {key_index.tolist()}")
    if masks.ndim != 3 or tuple(masks.shape[1:]) != tuple(camera.resolution):
        raise V2M4Error(f"masks must be (T, H, W) at the camera's resolution {tuple(camera.resolution)}, got "
                        f"{tuple(masks.shape)}; resize the masks or use camera.with_resolution")
    if len(camera) != 1:
        raise V2M4Error(f"camera must be the one video camera, got {len(camera)} views")
    if times.shape != (T,):
        raise V2M4Error(f"times must be ({T},), one per mask, got {tuple(times.shape)}")
    if flow is not None and len(flow) != T:
        raise V2M4Error(f"the flow covers {len(flow)} frames, the clip has {T}")


def register_clip(keyframe_meshes: list[Mesh], key_index: Tensor, masks: Tensor, camera: Camera, cfg: JointConfig,
                  ctx: R.RenderContext, *, generator: torch.Generator, times: Tensor,
                  progress=None, state: str | os.PathLike | None = None,
                  state_every: int = 50, flow: VideoFlow | None = None,
                  noise: NoiseEstimate | None = None) -> RegistrationResult:
    """The rest mesh (keyframe_meshes[0], remeshed) deformed through EVERY frame of the clip, all fitted at once.

    keyframe_meshes: K re-posed generated meshes in the world frame (topologies may differ); key_index (K,) int64,
    increasing: the clip frame of each. masks (T, H, W) float in [0, 1]: every frame's object mask; camera: the
    fixed video camera (1 view, world frame, resolution H x W); times (T,) seconds of each frame; generator: the
    randomness of samples and views (same seed, same result). progress: optional callable(done, total) over the
    keyframes' global alignment's steps and then the fit's (``JointConfig.steps``); a restarted fit
    (``restart_ratio``) adds its steps to the total. state: a file where the joint fit keeps its step, parameters and
    optimiser state every ``state_every`` steps; when it exists at the call (a run interrupted mid-fit) and was
    saved for the same inputs and schedule, the fit goes on from it, and the same inputs and generator give the
    result of an uninterrupted call (what precedes the fit is recomputed: deterministic, short); removed at the end.

    Returns a RegistrationResult whose sequence holds all T frames (T, V, 3), world frame; chamfer (K,): each
    keyframe's fit against its target (normalised units, squared, as ``sequence``); flipped (T,): each frame's
    folded share; retried (K,): the keyframe's global alignment went on from a quarter turn, not the identity
    (``global_starts``); restarted (K,): the keyframe was fitted again from an earlier one and that fit was kept
    (``restart_ratio``); seconds: (rest + targets, global alignment, joint fit, fold repair); scales (T,) each
    frame's regulariser reference size.
    """
    _check_inputs(keyframe_meshes, key_index, masks, camera, times, flow)
    t0 = time.perf_counter()
    g = generator
    pcfg = cfg.pair_config()
    frame, _ = _prepare(keyframe_meshes[0], pcfg)
    template, topo, edges = frame.template, frame.topo, frame.edges
    rest, faces = frame.rest, template.faces
    dev, dt = rest.device, rest.dtype
    T = masks.shape[0]
    key_index = key_index.to(dev)
    targets = [Mesh(frame.normalise(m.vertices).detach(), m.faces) for m in keyframe_meshes]
    keys, tgts = _Keys.build(targets, pcfg, ctx, g)
    # the regularisers' reference size: each keyframe target's area against the first's (as sequence.py), linear in
    # time between keyframes
    scale = _interpolate(torch.sqrt(keys.area / keys.area[0]), key_index, T).to(dt)
    t1 = time.perf_counter()

    total, done = cfg.steps(), 0

    def tick():
        nonlocal done
        done += 1
        progress(done, total)

    xk, chosen = _global_keyframes(rest, template, keys, cfg, ctx, g, topo, tick=tick if progress else None)
    moved = [0] * len(targets)
    if cfg.place_pieces:
        xk, moved = place_pieces(xk, faces, targets)
    x0 = _interpolate(xk, key_index, T)
    t2 = time.perf_counter()

    x = _fit_clip(x0, rest, template, keys, key_index, masks.to(dev, dt), camera.to(dev), frame, scale, times.to(dev),
                  cfg, ctx, g, topo, progress and (lambda d, _: progress(total - cfg.iters + d, total)),
                  state=None if state is None else Path(state), state_every=state_every, flow=flow,
                  inputs="" if state is None else digest(keyframe_meshes, key_index, masks, camera.K,
                                                          camera.cam_from_world, times, *flow_tensors(flow)))
    # a second fit, whole, without saved progress: a resumed run redoes the first (it is exact)
    x, restarted = restart_fit(x, lambda start: _fit_clip(
        start, rest, template, keys, key_index, masks.to(dev, dt), camera.to(dev), frame, scale, times.to(dev), cfg,
        ctx, g, topo, progress and (lambda d, _: progress(total + d, total + cfg.iters)), flow=flow), key_index,
        keys.points, rest, faces, cfg)
    x, smooth = _smooth(x, rest, template, key_index, masks.to(dev, dt), camera.to(dev), frame, scale,
                        times.to(dev), cfg, ctx, g, topo, progress and (lambda d, n: progress(total + d, total + n)),
                        flow, noise)
    t3 = time.perf_counter()

    x, flipped = repair_folds(x, rest, faces, edges, scale, cfg.unfold_iters)
    chamfer = tuple(eval_chamfer(x[int(k)], faces, tgt, g) for k, tgt in zip(key_index.tolist(), tgts))
    t4 = time.perf_counter()
    verts = x * frame.size + frame.centre
    seq = Sequence(rest=frame.world, vertices=verts.float(), times=times.float().cpu())
    return RegistrationResult(seq, chamfer=chamfer, flipped=tuple(flipped),
                              retried=tuple(bool(c) for c in (chosen != 0).tolist()), pieces_moved=tuple(moved),
                              seconds=(t1 - t0, t2 - t1, t3 - t2, t4 - t3), scales=tuple(scale.tolist()),
                              temporal_weight=smooth.weight, temporal_between=smooth.between, restarted=restarted,
                              noise_weight=smooth.noise_weight)


class _ClipFit:
    """The joint local fit's problem: every frame's positions (T, V, 3) as large-steps parameters u, and its loss
    as named terms (``terms``), so a profile can time each. All randomness (surface samples, keyframe views, video
    frames) is drawn at construction; each step copies its draws into fixed buffers (``prepare``).

    static: the renders take their visibility from a pass before the step (``render_visible``), so the step has
    static shapes and no host synchronisation, and on CUDA with ``cuda_graphs`` it is replayed as a CUDA graph
    (``graphs``); the values are the dynamic path's. Default: on CUDA with ``cuda_graphs``."""

    def __init__(self, x0: Tensor, rest: Tensor, template: Mesh, keys: _Keys, key_index: Tensor, masks: Tensor,
                 camera: Camera, frame, scale: Tensor, times: Tensor, cfg: JointConfig, ctx, g: torch.Generator,
                 topo, *, static: bool | None = None, flow: VideoFlow | None = None):
        T = x0.shape[0]
        self.cfg, self.ctx, self.topo, self.template, self.frame = cfg, ctx, topo, template, frame
        self.rest, self.keys, self.key_index, self.scale, self.times = rest, keys, key_index, scale, times
        self.faces, self.edges, self.solver = template.faces, frame.edges, frame.solver
        self.u = frames_to_u(self.solver, x0.detach()).clone().requires_grad_(True)
        self.samples = _Samples(self.faces, rest, cfg, g)
        self.picks = keys.picks(cfg.iters, cfg.key_views, g)
        self.flow = None if flow is None or cfg.w_flow <= 0 else \
            FlowTerm(flow, camera, x0.shape[1], x0.device, x0.dtype)
        camera, self.masks = _video_at(camera, masks, cfg.video_res)
        self.nv = T if cfg.video_frames <= 0 else min(cfg.video_frames, T)
        self.vid = torch.argsort(torch.rand(cfg.iters, T, generator=g), dim=1)[:, :self.nv].to(x0.device)
        self.vcam = Camera(camera.K.expand(self.nv, 3, 3), camera.cam_from_world.expand(self.nv, 4, 4),
                           camera.resolution)
        self.marea = self.masks.sum((1, 2)).clamp_min(1.0)
        self.every = torch.arange(len(key_index), device=x0.device)
        self.shape = _Shape(rest, self.faces, self.edges, scale, cfg)
        # this step's draws, copied in by prepare(): a captured step reads them from the same tensors every time
        self.cur_picks = self.picks[0].clone()
        self.cur_vid = self.vid[0].clone()
        self.static = x0.is_cuda and cfg.cuda_graphs if static is None else static
        self.graphs = StepGraphs([self.u], enabled=self.static and cfg.cuda_graphs)
        # the renders' visibility at this step's positions
        self.seen = StepVisibility(graphs=self.graphs.enabled) if self.static else None
        # the ARAP rotations' refresh, replayed too (a few hundred elementwise kernels, into shape.turned in place)
        self.turns = StepGraphs([], enabled=self.graphs.enabled)
        # what a saved state must match to be continued: the same clip, mesh and schedule
        self.stamp = {"frames": T, "vertices": int(x0.shape[1]), "config": repr(replace(cfg, cuda_graphs=True)),
                      "layout": 5}

    def x(self) -> Tensor:
        return frames_to_x(self.solver, self.u)

    def due(self, it: int) -> bool:
        """Whether step it re-solves the ARAP rotations (every ``arap_refresh`` steps)."""
        return self.shape.turned is None or it % max(1, self.cfg.arap_refresh) == 0

    @torch.no_grad()
    def refresh(self) -> None:
        """The ARAP rotations at the current positions (re-solved when ``due``)."""
        self.shape.refresh(self.x())

    def active(self, it: int) -> tuple[str, ...]:
        """The names of step it's loss terms."""
        cfg = self.cfg
        on = {"chamfer": True, "key_render": cfg.w_render > 0,
              "video": cfg.w_input_view > 0 and it >= cfg.video_start * cfg.iters,
              "shape": True, "temporal": cfg.w_temporal > 0 and self.u.shape[0] >= 3,
              "flow": self.flow is not None and it >= cfg.video_start * cfg.iters}
        return tuple(k for k, v in on.items() if v)

    def _world(self, x: Tensor) -> Tensor:
        return x * self.frame.size + self.frame.centre

    def _video_vertices(self, x: Tensor) -> Tensor:
        # index_select, not x[f]: its backward adds rows (advanced indexing's accumulating put may wait on the device)
        return self._world(x.index_select(0, self.cur_vid) if self.nv < x.shape[0] else x)

    @torch.no_grad()
    def prepare(self, it: int) -> None:
        """Step it's draws into the step's buffers; with ``static``, the visibility of its renders at the current
        positions and enough crossing slots for their antialias (one host synchronisation: after the
        rasteriser's own, it waits on nothing). New slot counts drop the captured steps."""
        self.samples.use(it)
        self.cur_picks.copy_(self.picks[it])
        self.cur_vid.copy_(self.vid[it])
        if self.seen is None:
            return
        on = self.active(it)

        def passes() -> dict[str, RenderPass]:  # from u and the draws' buffers alone: replayed as a graph
            x, views = self.x(), {}
            if "key_render" in on:
                views["key"] = RenderPass(self.template, *self.keys.views(x.index_select(0, self.key_index),
                                                                          self.every, self.cur_picks), self.topo)
            if "video" in on:
                views["video"] = RenderPass(self.template, self.vcam, self._video_vertices(x), self.topo)
            return views

        if self.seen.update(self.ctx, passes, key=on):
            self.graphs.reset()

    def terms(self, it: int, x: Tensor, only: tuple[str, ...] | None = None) -> dict[str, Tensor]:
        """Step it's loss terms of positions x (T, V, 3), by name, each a weighted scalar; only: just these.
        ``prepare(it, ...)`` comes first."""
        cfg = self.cfg
        on = {k for k in self.active(it) if only is None or k in only}
        out = {}
        xk = x.index_select(0, self.key_index)
        if "chamfer" in on:
            out["chamfer"] = cfg.w_chamfer * chamfer(_points(xk, self.samples.current), self.keys.points).sum()
        if "key_render" in on:
            out["key_render"] = cfg.w_render * self.keys.render_l1(self.ctx, self.template, xk, self.every,
                                                                   self.cur_picks, self.topo, self.seen).sum()
        if "video" in on:
            r = _render(self.ctx, self.template, self.vcam, self._video_vertices(x), self.topo, ("mask",), self.seen,
                        "video")
            f = self.cur_vid if self.nv < x.shape[0] else slice(None)
            out["video"] = cfg.w_input_view * ((r["mask"] - self.masks[f]).abs().sum((1, 2)) / self.marea[f]).sum()
        if "shape" in on:
            out["shape"] = self.shape.energy(x).sum()
        if "temporal" in on:
            out["temporal"] = cfg.w_temporal * _temporal(x, self.times).sum()
        if "flow" in on:
            out["flow"] = cfg.w_flow * self.flow(self._world(x)).sum()
        return out

    def step(self, it: int, opt: Optimizer) -> None:
        """One step of the fit: the ARAP rotations when due and the step's draws and visibility (eager), then
        every term, the backward pass and one optimiser step (a CUDA graph where ``graphs`` is on)."""
        if self.due(it):
            self.turns("arap", self.refresh)
        # eager (it renders every frame), and only once the term is on
        if "flow" in self.active(it) and (self.due(it) or not self.flow.ready):
            self.flow.refresh(self.ctx, self.template, self._world(self.x()))
        self.prepare(it)

        def body():
            loss = sum(self.terms(it, self.x()).values())
            loss.backward()
            opt.step()

        self.graphs((self.active(it), self.seen.key() if self.seen is not None else ()), body)


def _smooth(x: Tensor, rest: Tensor, template: Mesh, key_index: Tensor, masks: Tensor, camera: Camera, frame,
            scale: Tensor, times: Tensor, cfg: JointConfig, ctx, g: torch.Generator, topo, progress,
            flow: VideoFlow | None, noise: NoiseEstimate | None) -> tuple[Tensor, TemporalChoice]:
    """The fitted clip x (T, V, 3, normalised) smoothed in time at the weight its evidence allows (``smoothing``:
    the video's, and the generator's measured noise where given); then, where it was smoothed, fitted again,
    briefly (``JointConfig.polish``), with its own smoothed keyframes as the keyframes' targets and the video's
    silhouettes from the first step: the smoothing moved the keyframes off their outlines too, and the video puts
    the outlines back, while what it cannot see (along the view axis, inside the outline) keeps the smoothing."""
    smooth = choose_weight(x * frame.size + frame.centre, key_index, masks, camera, frame.world, ctx,
                           cfg.temporal_weights, max_frames=cfg.video_frames,
                           vertex_variance=None if noise is None or not noise.frames else noise.vertex_variance)
    x = smooth_keyframes(x, key_index, smooth.weight, between=smooth.between)  # linear: any units
    if smooth.weight <= 0 or cfg.polish <= 0:
        return x, smooth
    pcfg = cfg.pair_config()
    keys, _ = _Keys.build([Mesh(x[int(k)], template.faces) for k in key_index.tolist()], pcfg, ctx, g)
    short = replace(cfg, iters=max(1, round(cfg.iters * cfg.polish)), video_start=0.0)
    return _fit_clip(x, rest, template, keys, key_index, masks, camera, frame, scale, times, short, ctx, g, topo,
                     progress, flow=flow), smooth


def _fit_clip(x0: Tensor, rest: Tensor, template: Mesh, keys: _Keys, key_index: Tensor, masks: Tensor,
              camera: Camera, frame, scale: Tensor, times: Tensor, cfg: JointConfig, ctx, g: torch.Generator, topo,
              progress, *, state: Path | None = None, state_every: int = 50, static: bool | None = None,
              inputs: str = "", flow: VideoFlow | None = None) -> Tensor:
    """The joint local fit of every frame's positions x0 (T, V, 3) (normalised). Returns (T, V, 3) detached.
    state: see ``register_clip``, removed once the fit is done; inputs: a digest of what the fit was given, which a
    saved state must match to be continued; static: see ``_ClipFit``."""
    fit = _ClipFit(x0, rest, template, keys, key_index, masks, camera, frame, scale, times, cfg, ctx, g, topo,
                   static=static, flow=flow)
    fit.stamp["inputs"] = inputs
    opt = UniformAdam([fit.u], lr=cfg.lr, per_row=True)
    start = 0
    if state is not None and state.is_file():
        saved = torch.load(state, map_location=x0.device, weights_only=False)
        if saved.get("stamp") == fit.stamp:
            start, fit.shape.turned = saved["step"], saved["turned"]
            if fit.flow is not None:
                fit.flow.load(saved["flow"])
            with torch.no_grad():
                fit.u.copy_(saved["u"])
            opt.load_state_dict(saved["opt"])
    for it in range(start, cfg.iters):
        fit.step(it, opt)
        if state is not None and (it + 1) % max(1, state_every) == 0 and it + 1 < cfg.iters:
            save_state(state, {"stamp": fit.stamp, "step": it + 1, "u": fit.u.detach(), "turned": fit.shape.turned,
                                "opt": opt.state_dict(), "flow": None if fit.flow is None else fit.flow.saved()})
        if progress:
            progress(it + 1, cfg.iters)
    if state is not None:  # a finished fit's state would be continued by a later call with the same stamp
        state.unlink(missing_ok=True)
    with torch.no_grad():
        return fit.x()
