"""Camera search and mesh re-pose (Sec. 4.1, Algorithm 1, Appendix A).

A generator returns each frame's mesh in its canonical pose. For every frame we find the orbit camera under which
the mesh looks like the frame: sample P0 poses, keep the best, (optionally) add a pose from the stereo prior,
refine with a particle swarm, then with gradient descent on the silhouette. Re-posing applies the inverse of the
found camera, so that every frame's mesh lives in the frame of one fixed video camera.

Pose vector (P, 7): yaw, pitch, radius, look-at x, y, z, roll (radians; see v2m4/camera.py for the orbit
convention); the field of view is fixed (40 degrees, what the official code renders TRELLIS meshes with).
Roll is searched by default within +-45 degrees (``CameraSearchConfig.roll``; the official code has none): a
tilted hand-held shot needs it, and so does a body that pitches while it moves, since the generator removes
that rotation too.

Beyond the paper: re-posed meshes get equal surface areas (``consistent_scales``) and depths smoothed over time
(``steady_depths``), and a temporal warm start. Frame t+1 starts from frame t's pose with a small local swarm and a short
refinement; only when its score is much worse than frame t's does it fall back to the global search.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from .. import render as R
from ..camera import Camera, intrinsics_from_fov, orbit_camera
from ..scoring import Scorer, SilhouetteColourScorer
from ..types import Frames, Mesh


@dataclass(frozen=True)
class CameraSearchConfig:
    n_samples: int = 2000                 # Appendix A: P0 initially sampled poses
    n_particles: int = 199                # Appendix A: top K poses into the swarm (+ the stereo prior's pose)
    n_prior_views: int = 7                # Appendix A: top n renders given to the stereo model
    pso_iters: int = 25                   # Appendix A
    refine_iters: int = 300               # Appendix A: gradient descent on the mask MSE
    radius_range: tuple[float, float] = (1.0, 5.0)   # Appendix A, square-root spacing
    auto_radius: bool = True              # ours: widen the range to cover the distance at which a unit-size object
                                          # (what generators output) has the frame's silhouette size; the paper's
                                          # [1, 5] cannot frame an object that is small in the video
    look_at_range: float = 1.0            # Appendix A: look-at uniform in [-1, 1]^3
    fov_deg: float = 40.0                 # not in the paper; the official code renders TRELLIS meshes at 40 degrees
    roll: bool = True                     # beyond the paper (the official code has none): search the roll angle.
                                          # A generator removes the object's rotation, and a body that pitches
                                          # (a gallop, a run) turns about the view axis: the bench's gallops tilt
                                          # the canonical +Y by up to 24 degrees in the image, which yaw, pitch
                                          # and look-at cannot reproduce
    roll_range: float = math.radians(45)  # ours: |roll| bound; generators output objects upright (+Y up)
    search_res: int = 128                 # render size for sampling and swarm (ours; the official code uses 512)
    refine_res: int = 256                 # render size for gradient refinement
    refine_lr: float = 0.01               # Adam step (radians / scene units); ours
    # particle swarm (Kennedy & Eberhart); ours: constant inertia and bounds with velocity clamping, where the
    # official code redraws every velocity each step and has no bounds
    inertia: float = 0.7
    cognitive: float = 1.5
    social: float = 1.5
    max_velocity: float = 0.2             # fraction of each parameter's range per iteration
    # temporal warm start (beyond the paper)
    warm_start: bool = True
    warm_particles: int = 48
    warm_iters: int = 8
    warm_refine_iters: int = 100
    warm_spread: tuple[float, ...] = (0.15, 0.08, 0.1, 0.05, 0.05, 0.05, 0.05)  # initial swarm spread per parameter
    global_margin: float = 1.15           # keep the warm pose unless the global one scores this much better
    turn_margin: float = 1.03             # ours: a warm swarm's particle more than 45 deg of yaw from the previous
                                          # pose (where the quarter-turn seeds start) must score this much better
                                          # to win: a symmetric shape ties with its turns, and a tie keeps the
                                          # previous pose. About the score's noise: p05 at 256², the near-sphere
                                          # last frame's half turn scored 1.8% better (178 deg of rotation error
                                          # -> 11.8 at 1.03); at 1.15 p03 at 128² kept a mirrored pose that a
                                          # global frame handed on (rotation median 0.87 -> 5.7 deg). 1: no bias
    warm_fallback_ratio: float = 2.5      # global search when the warm score exceeds this times the median score
                                          # of the frames so far (scores vary from frame to frame). Measured on
                                          # the H200 (paper preset, 5 items, 12 frames, fallbacks off): good warm
                                          # poses reach 1.96x (early frames, a median of one or two), the two
                                          # 170-degree flips of p10 3.0x; at 1.5 p09 searched 4 frames globally
                                          # for nothing (warm kept) and its warm frames cost 0.87 s
    warm_fallback_iou: float | None = 0.1  # ours: ... or when its silhouette IoU is this far below the median IoU
                                          # so far (None: off). Scores are not comparable across frames (the
                                          # appearance term follows the shading): on p05, a morph, a warm frame
                                          # at IoU 0.72 scored better than the first frame at 0.99
    refine_batch: int | None = None       # ours: warm frames refined together, one render call per step for all
                                          # (refine_poses); a GPU is launch-bound on one small view per call. The
                                          # next frame's swarm then starts from this frame's unrefined pose.
                                          # None: on CUDA up to 16, fewer for large meshes (render_each's work
                                          # grows as batch² x faces: batch² x faces <= 4M), 1 elsewhere (each
                                          # frame alone, no extra work)
    warm_turns: bool = True               # also seed the local swarm with quarter turns about +Y: generators
                                          # snap objects to canonical axes and sometimes pick the wrong one
    warm_roll: float = math.radians(15)   # also seed the local swarm with the previous roll -/+ this (ours)
    backward_pass: bool = False           # ours, on in the fast preset: after the forward pass, each frame from
                                          # the last but one back to the first also starts from the next frame's
                                          # pose (centred, then refined with the warm frames' steps,
                                          # `refine_batch` frames at once) and takes it if it scores better. A
                                          # frame that cannot fix a turn (a sphere, a front view) hands the
                                          # forward pass an arbitrary one, which the next frames may keep. CPU
                                          # bench, 128², 8 frames: p05 rotation median 15.7 -> 8.1 deg, p03's p95
                                          # 5.8 -> 1.8 deg, the others within noise. Off in the paper preset: on
                                          # the H200 it cost 0.1-0.3 s per warm frame (0.22-0.57 -> 0.39-0.64 s)
                                          # for one more item under 5 deg (p09), batches of 11 frames refined at
                                          # once do not hand a pose on from frame to frame, so p05 kept its 60 deg
    center_samples: bool = True           # ours: move each sampled pose's radius and look-at so the render's
                                          # silhouette area and centroid match the frame's before scoring
    center_steps: int = 3                 # fixed-point steps of that centring
    crop_margin: float = 0.25             # ours: render a window around the object (this margin around the frame
                                          # mask's box) instead of the whole frame, so a small object keeps pixels
    refine_appearance: bool = True        # ours: refine on the scorer's appearance term too, not the mask alone
                                          # (a silhouette hardly constrains pitch or mirror-symmetric turns)
    max_batch: int = 512                  # views per render call (memory bound)
    shape_weight: float = 0.0             # beyond the paper, off: weight of the shape-continuity term
                                          # (shape_distance) in a warm frame's swarm, a fallback's swarm and the
                                          # warm-versus-global choice. Measured on the H200 (paper preset, 12
                                          # frames, 3 seeds; bench/results/camera_shape_prior_h200.json): at 0.1
                                          # it removes p03's front/back flips (rotation p95 64/67/4.7 -> 2.3/5.2/
                                          # 2.2 deg) but drags p09's gallop (p95 2.8/5.4/5.4 -> 13/4.7/17 deg),
                                          # so it is not on by default
    shape_swarm: bool = True              # ours: the term also steers the warm swarm (False: only the fallback's
                                          # swarm and the warm-versus-global choice)
    shape_points: int = 400               # surface samples per mesh for that term
    consistent_scale: bool = True         # beyond the paper: re-pose with equal surface areas (consistent_scales)
    steady_depth: bool = True             # beyond the paper: smooth the re-posed depths over time (steady_depths)
    depth_noise: float = 0.015            # ours: per-frame log-depth error steady_depths assumes. Measured on the
                                          # CPU bench (8 keyframes, 3 seeds, p05 aside): 0.3-2.4%, median 0.9%
    still_angle: float = 0.05             # ours: radians an object's direction may stray from its mean and still
                                          # count as in place for steady_depths (bench: 0.005-0.021 for the
                                          # in-place items, 0.21 for the fox crossing the view)
    lateral_noise: float = 0.01           # ours: sideways error of a moving object's centre, a fraction of its
                                          # distance, that steady_depths assumes (a running fox's surface
                                          # centroid shifts ~1% of the distance as its legs move)
    growth_angle: float = 0.1             # ours: radians (~6 deg); an object in place whose distance changes with
                                          # its direction moving less than tan(growth_angle) times as much is
                                          # read as changing size, not approaching (steady_depths; bench p05:
                                          # log-distance range 0.70, directions within 0.024; 0 turns it off)

    @staticmethod
    def paper() -> "CameraSearchConfig":
        return CameraSearchConfig()

    @staticmethod
    def fast() -> "CameraSearchConfig":
        """For a 2-core CPU: fewer samples and particles at 64 px, shorter refinement at 192 px (at 128 px a small
        object's silhouette, 270 px for the bench's running fox, is too coarse to fix its rotation: p07 at 256²
        frames, rotation median 4.5° -> 2.4°, p95 11° -> 7.1°, for ~0.3 s more per warm frame)."""
        return CameraSearchConfig(n_samples=600, n_particles=48, pso_iters=12, refine_iters=80, search_res=64,
                                  refine_res=192, warm_particles=24, warm_iters=5, warm_refine_iters=60,
                                  refine_lr=0.02, max_batch=256, backward_pass=True,
                                  warm_fallback_ratio=1.5)  # 64 px scores are noisier; measured at 1.5 there


@dataclass
class CameraSearchResult:
    """poses (T, 7) per frame; cameras: Camera with T views (cam_from_canonical of each frame's mesh) at the
    frames' resolution; scores (T,); global_search (T,) bool, whether the frame needed the global search."""

    poses: Tensor
    cameras: Camera
    scores: Tensor
    global_search: Tensor
    seconds: list[float] = field(default_factory=list)


def _lower_upper(cfg: CameraSearchConfig, device) -> tuple[Tensor, Tensor]:
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


def refine_pose(mesh: Mesh, pose: Tensor, view: SearchView, cfg: CameraSearchConfig, ctx: R.RenderContext,
                iters: int, topology, scorer: Scorer | None = None) -> Tensor:
    """Gradient descent on the silhouette MSE (Appendix A: 300 iterations, mask loss only), plus the scorer's
    loss when cfg.refine_appearance. (7,) -> (7,); refine_poses for one frame."""
    return refine_poses([mesh], pose[None], [view], cfg, ctx, iters, [topology], scorer)[0]


def refinement_loss(rgb: Tensor | None, mask: Tensor, frames: Tensor, scorer: Scorer | None = None) -> Tensor:
    """(T,) what ``refine_poses`` descends for T renders against T frames (T, h, w, 4): the mask MSE, plus the
    scorer's loss when a scorer is given."""
    loss = ((mask - frames[..., 3]) ** 2).mean((1, 2))
    if scorer is None:
        return loss
    if getattr(scorer, "per_view_frames", False):
        return loss + scorer(rgb, mask, frames)
    return loss + torch.cat([scorer(rgb[t:t + 1], mask[t:t + 1], frames[t]) for t in range(len(frames))])


def refine_poses(meshes: list[Mesh], poses: Tensor, views: list[SearchView], cfg: CameraSearchConfig,
                 ctx: R.RenderContext, iters: int, topologies: list, scorer: Scorer | None = None) -> Tensor:
    """refine_pose for T frames at once, (T, 7) -> (T, 7): every pose takes the Adam steps it would take alone
    (the frames' losses are summed and Adam is elementwise), with one render_each call per step for all frames,
    where one call per frame and step leaves a GPU waiting on kernel launches. All views share one resolution."""
    res = views[0].resolution
    frames = torch.stack([v.image for v in views])  # (T, h, w, 4)
    K = torch.stack([v.K for v in views])
    use_scorer = cfg.refine_appearance and scorer is not None
    p = poses.clone()
    angles = p[:, [0, 1, 6]].clone().requires_grad_(True)
    log_r = p[:, 2].log().clone().requires_grad_(True)
    look = p[:, 3:6].clone().requires_grad_(True)
    opt = torch.optim.Adam([angles, log_r, look], lr=cfg.refine_lr)
    for _ in range(iters):
        opt.zero_grad()
        q = torch.cat([angles[:, :2], log_r.exp()[:, None], look, angles[:, 2:]], 1)
        cams = pose_cameras(q, cfg, res)
        cams = Camera(K.to(cams.K), cams.cam_from_world, res)
        r = R.render_each(ctx, meshes, cams, channels=("rgb", "mask") if use_scorer else ("mask",),
                          topologies=topologies, background=0.5)
        loss = refinement_loss(r["rgb"] if use_scorer else None, r["mask"], frames, scorer if use_scorer else None)
        loss.sum().backward()
        if not cfg.roll:
            angles.grad[:, 2] = 0
        opt.step()
    with torch.no_grad():
        return torch.cat([angles[:, :2], log_r.exp()[:, None], look, angles[:, 2:]], 1)


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
    centre: the paper's [-1, 1]^3 clips it for a small object near the border (p07 runs across the frame).
    """
    ys, xs = torch.nonzero(frame[..., 3] > 0.5, as_tuple=True)
    if ys.numel() == 0:
        return cfg.look_at_range
    H, W = frame.shape[:2]
    f = H / (2 * math.tan(math.radians(cfg.fov_deg) / 2))
    off = math.hypot((float(xs.min() + xs.max()) + 1) / 2 - W / 2, (float(ys.min() + ys.max()) + 1) / 2 - H / 2)
    return max(cfg.look_at_range, 1.25 * radius_range_for(frame, cfg)[1] / 2.5 * off / f + 0.5)


def _global_search(mesh, frame_s, cfg, ctx, scorer, topo, generator, prior_pose=None, shape=None):
    dev = frame_s.image.device
    lo, hi = _lower_upper(cfg, dev)
    cand = sample_poses(cfg.n_samples, cfg, generator=generator, device=dev)
    # samples keep roll 0 and only the swarm moves it: a random roll makes the P0 samples a 7-D cloud, too sparse
    # to land near the answer (p07 frame 0 at the fast preset: 46 degrees off with sampled roll, 6 without)
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
    lo, hi = _lower_upper(cfg, dev)
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
                  cfg: CameraSearchConfig, ctx: R.RenderContext, scorer: Scorer, batch: int) -> list[float]:
    """``CameraSearchConfig.backward_pass``: frame t (from the last but one back to the first) also starts from
    frame t + 1's pose, centred on its own mesh (normalised on its own, so radius and look-at differ) and refined
    with the warm frames' steps, and takes the better of the refined and the centred pose if it scores better.
    poses (7,) and scores are updated in place; views[t] = (config, search view, refinement view, edge topology)
    of frame t. ``batch`` frames are refined together, as warm frames are, from the last ones back; inside a
    batch each frame also starts from the pose of the frame just after the batch. Returns the seconds spent per
    frame."""
    T = len(meshes)
    secs = [0.0] * T
    for hi in range(T - 1, 0, -batch):
        t0 = time.perf_counter()
        ts = list(range(max(0, hi - batch), hi))
        # each frame starts from the next frame's pose and, inside a batch, also from the pose of the frame after
        # the batch (``hi``, final by now): frames refined together cannot hand a pose on to each other, and a
        # pose the forward pass found late must reach the whole batch. H200, paper preset, p05: frames 0-5 kept
        # the arbitrary turn of the sphere at frame 0, ~180 deg from frames 6-11, whose first one was searched
        # globally; with the next frame's pose alone, a batch of 11 handed it to frame 5 only
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
            # the very pose the search's score rejects (p02 at 256², frame 0: 0.065 centred, 0.111 refined)
            both = torch.cat([r, c])
            s = score_poses(meshes[t], both, frame_s, cfg_t, ctx, scorer, topo)
            j = int(torch.argmin(s))
            if float(s[j]) < scores[t]:
                poses[t], scores[t] = both[j], float(s[j])
        share = (time.perf_counter() - t0) / len(ts)
        for t in ts:
            secs[t] += share
    return secs


def search_cameras(meshes: list[Mesh], frames: Frames, cfg: CameraSearchConfig, ctx: R.RenderContext, *,
                   scorer: Scorer | None = None, stereo=None, generator: torch.Generator,
                   progress=None) -> CameraSearchResult:
    """Algorithm 1 for every frame: the camera under which meshes[t] (canonical frame) looks like frame t.

    stereo: optional ``v2m4.stages.stereo_prior.StereoPrior``; when given, its pose joins the swarm.
    """
    scorer = scorer or SilhouetteColourScorer()
    dev = meshes[0].vertices.device
    H, W = frames.resolution
    batch = cfg.refine_batch
    if batch is None:
        faces = sum(int(m.faces.shape[0]) for m in meshes) / max(1, len(meshes))
        batch = max(1, min(16, int((4e6 / max(faces, 1.0)) ** 0.5))) if dev.type == "cuda" else 1
    T = len(meshes)
    poses, scores, global_flags, secs = [None] * T, [None] * T, [False] * T, [0.0] * T
    ious = [None] * T
    points = None
    if cfg.shape_weight > 0:
        from ..metrics.geometry import sample_surface
        points = [sample_surface(m.vertices, m.faces, cfg.shape_points, generator=generator).to(dev) for m in meshes]

    def shape_for(t):
        """(this frame's points, the previous frame's seen by its current pose) for the shape term, or None."""
        if points is None or t == 0 or poses[t - 1] is None:
            return None
        return points[t], camera_points(points[t - 1], poses[t - 1][None], cfg)[0]

    def shape_costs(t, *candidates):
        """cfg.shape_weight x the shape term of each candidate pose of frame t (zeros when the term is off)."""
        sh = shape_for(t)
        if sh is None:
            return [0.0] * len(candidates)
        return (cfg.shape_weight * shape_distance(sh[0], torch.stack(candidates), sh[1], cfg)).tolist()
    # warm frames whose swarm is done and whose refinement waits for a batch: (t, frame, cfg_t, frame_s, frame_r, topo)
    pending = []

    def frame_views(t):
        frame = frames.rgba[t].to(dev)
        cfg_t = replace(cfg, radius_range=radius_range_for(frame, cfg),
                        look_at_range=look_at_range_for(frame, cfg)) if cfg.auto_radius else cfg
        return frame, cfg_t, make_view(frame, cfg.search_res, cfg), make_view(frame, cfg.refine_res, cfg)

    def global_frame(t, frame, cfg_t, frame_s, frame_r, topo, warm_score=None):
        prior = None
        if stereo is not None:
            prior = stereo.estimate_pose(meshes[t], frame, cfg_t, ctx, scorer, generator=generator)
        # a fallback's swarm weighs continuity too, so that it is judged by what the choice below judges
        found, _ = _global_search(meshes[t], frame_s, cfg_t, ctx, scorer, topo, generator, prior,
                                  shape_for(t) if warm_score is not None else None)
        first = cfg_t.refine_iters if warm_score is None else min(cfg_t.warm_refine_iters, cfg_t.refine_iters)
        pose = refine_pose(meshes[t], found, frame_r, cfg_t, ctx, first, topo, scorer)
        score = float(score_poses(meshes[t], pose[None], frame_s, cfg_t, ctx, scorer, topo)[0])
        if warm_score is None or warm_score <= cfg.global_margin * score or first >= cfg_t.refine_iters:
            return pose, score
        # A fallback refines as long as a warm frame does before it is compared with the warm pose, and only one
        # that wins gets the paper's whole refinement: most fallbacks keep the warm pose (all five on the H200
        # bench), and the rest of the refinement was two thirds of their cost there. The winner is refined again
        # from the swarm's pose, not continued: a second Adam run restarts with full-size steps, which moved
        # p03's poses (CPU bench: rotation p95 11.4 -> 15.4 degrees)
        pose = refine_pose(meshes[t], found, frame_r, cfg_t, ctx, cfg_t.refine_iters, topo, scorer)
        return pose, float(score_poses(meshes[t], pose[None], frame_s, cfg_t, ctx, scorer, topo)[0])

    def finish(t, pose, score, was_global, frame_s, topo, iou=None):
        poses[t], scores[t], global_flags[t] = pose, score, was_global
        if cfg.warm_fallback_iou is not None:
            ious[t] = iou if iou is not None else float(mask_iou_poses(meshes[t], pose[None], frame_s, cfg, ctx,
                                                                        topo)[0])
        if progress:
            progress(t, score, was_global)

    def flush():
        """Refine the pending warm frames together, then keep each one or fall back to the global search."""
        if not pending:
            return
        t0 = time.perf_counter()
        ts, _, cfgs, _, views_r, topos = zip(*pending)
        refined = refine_poses([meshes[t] for t in ts], torch.stack([poses[t] for t in ts]), list(views_r), cfgs[0],
                               ctx, cfg.warm_refine_iters, list(topos), scorer)
        share = (time.perf_counter() - t0) / len(ts)
        for k, (t, frame, cfg_t, frame_s, frame_r, topo) in enumerate(pending):
            t1 = time.perf_counter()
            pose = refined[k]
            score = float(score_poses(meshes[t], pose[None], frame_s, cfg_t, ctx, scorer, topo)[0])
            found, iou = (pose, score, False), None
            poor = score > cfg.warm_fallback_ratio * statistics.median(scores[:t])
            if not poor and cfg.warm_fallback_iou is not None:
                iou = float(mask_iou_poses(meshes[t], pose[None], frame_s, cfg, ctx, topo)[0])
                poor = iou < statistics.median(ious[:t]) - cfg.warm_fallback_iou
            if poor:
                g_pose, g_score = global_frame(t, frame, cfg_t, frame_s, frame_r, topo, warm_score=score)
                # temporal prior: a single view often fits a mirrored pose almost as well (front/back of a
                # symmetric figure), so the global result replaces the warm one only when it is clearly better,
                # shape continuity (shape_distance) included
                c_warm, c_glob = shape_costs(t, pose, g_pose)
                if not score + c_warm <= cfg.global_margin * (g_score + c_glob):
                    found, iou = (g_pose, g_score, True), None
            finish(t, *found, frame_s, topo, iou)
            secs[t] += share + time.perf_counter() - t1
        pending.clear()

    prev_pose = None
    seen = [None] * T  # (cfg_t, frame_s, frame_r, topo) of each frame, for the backward pass
    for t, mesh in enumerate(meshes):
        t0 = time.perf_counter()
        frame, cfg_t, frame_s, frame_r = frame_views(t)
        topo = R.edge_topology(mesh.faces, mesh.vertices)
        seen[t] = (cfg_t, frame_s, frame_r, topo)
        if cfg_t.warm_start and prev_pose is not None:
            pose, _ = _local_search(mesh, frame_s, prev_pose, cfg_t, ctx, scorer, topo, generator,
                                    shape_for(t) if cfg.shape_swarm else None)
            poses[t] = prev_pose = pose
            pending.append((t, frame, cfg_t, frame_s, frame_r, topo))
            secs[t] += time.perf_counter() - t0
            if len(pending) >= batch:
                flush()
                prev_pose = poses[t]  # refined, and possibly replaced by the global search
            continue
        pose, score = global_frame(t, frame, cfg_t, frame_s, frame_r, topo)
        finish(t, pose, score, True, frame_s, topo)
        secs[t] += time.perf_counter() - t0
        prev_pose = pose
    flush()
    if cfg.backward_pass and cfg.warm_start:
        for t, sec in enumerate(backward_pass(meshes, poses, scores, seen, cfg, ctx, scorer, batch)):
            secs[t] += sec
    P = torch.stack(poses)
    return CameraSearchResult(poses=P, cameras=pose_cameras(P, cfg, (H, W)), scores=torch.tensor(scores, dtype=torch.float32),
                              global_search=torch.tensor(global_flags), seconds=secs)


def repose(mesh: Mesh, cam_from_canonical: Tensor, world_from_cam: Tensor, *, scale: float = 1.0) -> tuple[Mesh, Tensor]:
    """Move a canonical mesh into the world of the fixed video camera (Alg. 1, line 9).

    cam_from_canonical (4, 4): the camera found for this frame; world_from_cam (4, 4): the video camera's pose;
    scale: a factor about the camera centre (see ``consistent_scales``), which leaves the image unchanged.
    Returns the re-posed mesh and world_from_canonical (4, 4) = world_from_cam @ diag(scale) @ cam_from_canonical.
    Rendering the result through the video camera reproduces the render of the canonical mesh through the found
    camera exactly (same intrinsics).
    """
    S = torch.diag(torch.tensor([scale, scale, scale, 1.0], dtype=mesh.vertices.dtype, device=mesh.vertices.device))
    M = world_from_cam.to(mesh.vertices) @ S @ cam_from_canonical.to(mesh.vertices)
    v = mesh.vertices @ M[:3, :3].T + M[:3, 3]
    return mesh.with_vertices(v), M


def _triangle_areas(mesh: Mesh) -> Tensor:
    t = mesh.vertices[mesh.faces]
    return torch.linalg.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0], dim=-1).norm(dim=-1) / 2


def surface_area(mesh: Mesh) -> Tensor:
    """Total triangle area of a mesh (scalar tensor)."""
    return _triangle_areas(mesh).sum()


def surface_centroid(mesh: Mesh) -> Tensor:
    """(3,) area-weighted centroid of a mesh's surface."""
    a = _triangle_areas(mesh)
    return (a[:, None] * mesh.vertices[mesh.faces].mean(1)).sum(0) / a.sum().clamp_min(1e-30)


def consistent_scales(meshes: list[Mesh]) -> Tensor:
    """(T,) factors k_t = sqrt(area_0 / area_t) that give every frame's mesh the first one's surface area.

    Beyond the paper. Generators normalise each mesh into a unit cube, so a frame whose pose stretches the bounding
    box (legs out in a gallop) comes out smaller, and a single view cannot tell that from the object being farther
    away: re-posed rigidly, the object's size and depth wobble from frame to frame by the bounding box's change
    (up to 10% on the bench's gallops). Articulated motion keeps surface area nearly constant, and scaling a mesh
    about the camera centre leaves its image unchanged, so equal areas fix size and depth at no cost to the fit.
    """
    a = torch.stack([surface_area(m).double() for m in meshes])
    return (a[0] / a.clamp_min(1e-30)).sqrt()


def steady_depths(positions: Tensor, times: Tensor, noise: float = CameraSearchConfig.depth_noise,
                  still_angle: float = CameraSearchConfig.still_angle,
                  lateral_noise: float = CameraSearchConfig.lateral_noise,
                  growth_angle: float = CameraSearchConfig.growth_angle) -> Tensor:
    """(T,) factors about the camera centre that move each frame's object along its ray to a smoothed track.

    positions (T, 3): the object's centre per frame in the video camera's frame (the camera centre at the origin);
    its direction from the camera is what the image fixes, its distance is what the size estimate guesses.

    Beyond the paper. A re-posed mesh's depth is its size (a generator's normalisation, or its surface area under
    ``consistent_scales``) over its apparent size, so the size estimate's error, 1-2% per frame for a generator's
    perturbed mesh, becomes depth error; at 1.5-4 bounding-box diagonals from the camera that is 2-8% of the
    diagonal, more than the shape error. Objects move smoothly, the errors do not.

    An object in place (its direction within ``still_angle`` of its mean: the bench's walks, gallops and waves
    move 0.3-1.2 degrees) gets one distance when the log-distances scatter no more than ``noise`` (the per-frame
    log-depth error) explains, a chi-square test at 95%. Beyond that, a distance that changes while the direction
    barely does (sideways by less than ``tan(growth_angle)`` times the change along the ray) is read as a change
    of size and also gets one distance: the equal-area sizes assume a constant surface area, which a blooming or
    morphing object breaks (the bench's morph sphere grows to 3.9 times its area and back: read as motion, its
    translation error was 68-70% of the diagonal). The price: an object walking at the camera within
    ``growth_angle`` of its ray is read as growing; ``growth_angle=0`` turns the rule off. Otherwise
    log-distance is smoothed over time (``_smooth_log_depth``). The chi-square test comes first because the
    errors are not independent (warm-started frames share a radius error, a pose shares its area error):
    cross-validation alone read them as motion and kept a drift of 2-5% of the diagonal on a third of the CPU
    bench's items.

    An object crossing the view is smoothed as a 3-D track instead (``_smooth_track``): one distance, or a
    smoothed distance, would flatten what a straight run past the camera does (closer at the middle by the
    cosine of its angle: 2% for the bench's fox, 12 degrees either side, at four diagonals, 8% of the diagonal).
    Scaling about the camera centre leaves every image unchanged. Fewer than 4 frames: no smoothing (ones).
    """
    T = len(positions)
    p = positions.double().cpu()
    if T < 4:
        return torch.ones(T, dtype=torch.float64)
    x = times.double().cpu()
    x = (x - x[0]) / (x[-1] - x[0]).clamp_min(1e-12)
    ray = torch.nn.functional.normalize(p, dim=-1)
    mean_ray = torch.nn.functional.normalize(ray.mean(0), dim=0)
    if float(torch.acos((ray @ mean_ray).clamp(-1, 1)).max()) > still_angle:
        return _smooth_track(p, x, noise, lateral_noise)
    from scipy.stats import chi2
    y = p.norm(dim=-1).clamp_min(1e-12).log()
    if float(((y - y.mean()) ** 2).sum()) <= noise ** 2 * chi2.ppf(0.95, T - 1):
        return (y.mean() - y).exp()
    # a change of size (the docstring says why): an approach this close to the camera's ray is rare
    spread = float(torch.acos((ray @ ray.T).clamp(-1, 1)).max())
    if spread < float(y.max() - y.min()) * math.tan(growth_angle):
        return (y.mean() - y).exp()
    return (_smooth_log_depth(y, x) - y).exp()


def _differences(x: Tensor) -> tuple[Tensor, Tensor]:
    """First and second difference operators over the sample times x (T,)."""
    I = torch.eye(len(x), dtype=torch.float64)
    D1 = (I[1:] - I[:-1]) / (x[1:] - x[:-1]).clamp_min(1e-6)[:, None]
    return D1, D1[1:] - D1[:-1]


def _gcv(n: int, rss: float, trace: float) -> float:
    # GCV with its trace inflated by 1.4 (Kim & Gu 2004): plain GCV undersmooths short series
    return n * rss / max(n - 1.4 * trace, 1e-9) ** 2


def _smooth_log_depth(y: Tensor, x: Tensor) -> Tensor:
    """Whittaker smoother of log-distances y (T,) over times x: speed (a still object) or acceleration (a steady
    approach) penalised, the penalty and its weight chosen by generalised cross-validation."""
    T = len(y)
    I = torch.eye(T, dtype=torch.float64)
    best = None
    for D in _differences(x):
        P = D.T @ D
        for k in range(-24, 25):  # lambda from 1e-6 to 1e6
            H = torch.linalg.inv(I + 10 ** (k / 4) * P)
            z = H @ y
            g = _gcv(T, float(((y - z) ** 2).sum()), float(H.trace()))
            if best is None or g < best[0]:
                best = (g, z)
    return best[1]


def _smooth_track(p: Tensor, x: Tensor, noise: float, lateral_noise: float) -> Tensor:
    """Depth factors (T,) for positions p (T, 3) of an object crossing the view: a 3-D Whittaker smoother with the
    noise of each position along its ray (``noise``) and across it (``lateral_noise``, the sideways shift of a
    centroid as limbs move) as its weights, and the acceleration penalised. A constant-velocity track is taken
    when its chi-square residual is within 95% (the sideways motion then tells the distance what to do),
    otherwise the penalty's weight is chosen by generalised cross-validation. Each position's new distance is
    its projection on its own ray: the sideways part is the image's, and stays."""
    from scipy.stats import chi2
    T = len(p)
    dist = p.norm(dim=-1)
    ray = p / dist[:, None]
    e3 = torch.eye(3, dtype=torch.float64)
    along = ray[:, :, None] * ray[:, None, :]
    blocks = (along / noise ** 2 + (e3 - along) / lateral_noise ** 2) / dist[:, None, None] ** 2
    W = torch.block_diag(*blocks)  # (3T, 3T) inverse covariance of the stacked positions
    b = W @ p.reshape(-1)
    # a constant-velocity track a + v x: weighted least squares, and its chi-square residual
    A = torch.cat([e3.expand(T, 3, 3), x[:, None, None] * e3], 2).reshape(3 * T, 6)
    line = A @ torch.linalg.solve(A.T @ W @ A, A.T @ b)
    r = p.reshape(-1) - line
    if float(r @ W @ r) <= chi2.ppf(0.95, 3 * T - 6):
        fit = line
    else:
        D2 = torch.kron(_differences(x)[1], e3) / float(dist.mean()) ** 2
        P = D2.T @ D2
        best = None
        for k in range(-8, 41):  # lambda from 1e-2 to 1e10: W is in units of 1/noise^2
            H = torch.linalg.solve(W + 10 ** (k / 4) * P, W)
            z = H @ p.reshape(-1)
            res = p.reshape(-1) - z
            g = _gcv(3 * T, float(res @ W @ res), float(H.trace()))
            if best is None or g < best[0]:
                best = (g, z)
        fit = best[1]
    return (fit.reshape(T, 3) * ray).sum(-1) / dist


def repose_scales(meshes: list[Mesh], cam_from_canonical: Tensor, times: Tensor, cfg: CameraSearchConfig) -> Tensor:
    """(T,) float64 on the CPU: the factors about the camera centre that ``repose`` applies, ``consistent_scales``
    then ``steady_depths`` on the depths of the meshes' surface centroids (which a moving limb shifts less than it
    does a bounding box's centre: on the CPU bench, translation error at most 0.5% of the diagonal on 6 of 9
    items against 3 of 9), each as the config asks."""
    T = len(meshes)
    k = consistent_scales(meshes).cpu() if cfg.consistent_scale else torch.ones(T, dtype=torch.float64)
    if not cfg.steady_depth:
        return k
    centres = torch.stack([surface_centroid(m).double().cpu() for m in meshes])
    M = cam_from_canonical.double().cpu()
    pos = ((M[:, :3, :3] @ centres[..., None])[..., 0] + M[:, :3, 3]) * k[:, None]
    return k * steady_depths(pos, times, cfg.depth_noise, cfg.still_angle, cfg.lateral_noise, cfg.growth_angle)
