"""Stereo prior for the camera search (Sec. 4.1 "Knowledge Utilization from Dense Stereo Reconstruction", Fig. 3).

A dense stereo model (DUSt3R in the paper) predicts a point map for the frame and for the top-n renders, in its
own arbitrary frame and scale. Because the renders' true point maps are known (the rasteriser gives them), a
similarity aligning the predicted render points onto the true ones also maps the frame's predicted points into the
mesh's canonical frame; the frame's camera is then the one that projects those points onto their pixels.

The model is pluggable (``PointMapModel``); the learned adapter lives elsewhere and this module is the math:
``align_point_clouds`` (Chamfer similarity with the flip trial) and ``solve_camera`` (3D-2D reprojection).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from .. import render as R
from ..geometry import rotation_6d
from ..optim import Adam
from ..types import Mesh


class PointMapModel(Protocol):
    name: str

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """images (N, H, W, 3) in [0, 1] -> point maps (N, H, W, 3) in one shared frame, confidence (N, H, W)."""
        ...


@dataclass(frozen=True)
class StereoPriorConfig:
    subsample: float = 0.05       # Appendix A: keep 5% of the points (speed, outliers)
    align_iters: int = 2000       # Appendix A
    flip_at: int = 1000           # Appendix A: try the flipped alignment from this iteration on
    solve_iters: int = 500        # Appendix A: camera from 3D-2D correspondences
    lr: float = 0.01              # ours
    max_points: int = 4000        # ours: cap on the subsample, so the Chamfer cdist stays small
    hypothesis_iters: int = 100   # ours: iterations each starting rotation gets before the best one goes on


def _chamfer(a: Tensor, b: Tensor) -> Tensor:
    d = torch.cdist(a, b)
    return (d.min(1).values ** 2).mean() + (d.min(0).values ** 2).mean()


def _subsample(x: Tensor, frac: float, cap: int, generator: torch.Generator) -> Tensor:
    n = min(cap, max(16, int(frac * x.shape[0])), x.shape[0])
    return x[torch.randperm(x.shape[0], generator=generator)[:n].to(x.device)]


def align_point_clouds(src: Tensor, dst: Tensor, cfg: StereoPriorConfig = StereoPriorConfig(), *,
                       generator: torch.Generator, init_rotations: Tensor | None = None) -> tuple[Tensor, float]:
    """Similarity (4, 4) mapping point cloud src (N, 3) onto dst (M, 3) by Chamfer, without correspondences.

    Starts from matched centroids and RMS radii. At ``flip_at`` the current estimate is also tried turned upside
    down (180 degrees about its x axis), the minimum the paper warns of; both continue and the lower Chamfer wins.
    init_rotations (R, 3, 3): starting rotations (ours; default the identity). Chamfer alignment is local, so a
    model frame turned far from the mesh's (DUSt3R's is the frame's camera) needs a start near the answer: each
    start gets ``hypothesis_iters`` iterations and the lowest Chamfer goes on.
    """
    s = _subsample(src, cfg.subsample, cfg.max_points, generator)
    d = _subsample(dst, cfg.subsample, cfg.max_points, generator)
    cs, cd = s.mean(0), d.mean(0)
    scale0 = ((d - cd).norm(dim=1).pow(2).mean() / (s - cs).norm(dim=1).pow(2).mean().clamp_min(1e-12)).sqrt()

    def run(r6, log_s, t, iters):
        r6, log_s, t = (p.clone().requires_grad_(True) for p in (r6, log_s, t))
        opt = Adam([r6, log_s, t], lr=cfg.lr)
        for _ in range(iters):
            opt.zero_grad()
            loss = _chamfer((s - cs) @ rotation_6d(r6).T * log_s.exp() + t, d)
            loss.backward()
            opt.step()
        with torch.no_grad():
            loss = _chamfer((s - cs) @ rotation_6d(r6).T * log_s.exp() + t, d)
        return r6.detach(), log_s.detach(), t.detach(), float(loss)

    if init_rotations is None:
        init_rotations = torch.eye(3, device=src.device, dtype=src.dtype)[None]
    starts = [run(torch.cat([Ri[0], Ri[1]]).to(src), scale0.log(), cd.clone(), cfg.hypothesis_iters)
              for Ri in init_rotations] if len(init_rotations) > 1 else []
    r6_0 = min(starts, key=lambda x: x[3]) if starts else None
    if r6_0 is None:
        Ri = init_rotations[0].to(src)
        state = run(torch.cat([Ri[0], Ri[1]]), scale0.log(), cd.clone(), cfg.flip_at)
    else:
        state = run(*r6_0[:3], max(0, cfg.flip_at - cfg.hypothesis_iters))
    best = run(*state[:3], cfg.align_iters - cfg.flip_at)
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0], device=src.device, dtype=src.dtype))
    Rf = rotation_6d(state[0]) @ flip
    flipped = run(torch.cat([Rf[0], Rf[1]]), state[1], state[2], cfg.align_iters - cfg.flip_at)
    r6, log_s, t, loss = min(best, flipped, key=lambda x: x[3])
    T = torch.eye(4, device=src.device, dtype=src.dtype)
    Rm = rotation_6d(r6) * log_s.exp()
    T[:3, :3] = Rm
    T[:3, 3] = t - Rm @ cs
    return T, loss


def solve_camera(points: Tensor, pixels: Tensor, init_pose: Tensor, search_cfg, resolution: tuple[int, int],
                 cfg: StereoPriorConfig = StereoPriorConfig(), K: Tensor | None = None) -> Tensor:
    """The orbit pose (7,) whose camera projects points (N, 3) onto pixels (N, 2) ((u, v), v down), found by Adam
    on the reprojection MSE (in units of the image height) from init_pose."""
    from .camera.sampling import pose_cameras

    h = resolution[0]
    angles = init_pose[[0, 1, 6]].clone().requires_grad_(True)
    log_r = init_pose[2].log().clone().requires_grad_(True)
    look = init_pose[3:6].clone().requires_grad_(True)
    opt = Adam([angles, log_r, look], lr=cfg.lr)

    def pose():
        return torch.cat([angles[:2], log_r.exp()[None], look, angles[2:]])

    for _ in range(cfg.solve_iters):
        opt.zero_grad()
        uv, depth = pose_cameras(pose()[None], search_cfg, resolution, K).project(points)
        loss = (((uv[0] - pixels) / h) ** 2).sum(-1).mean() + torch.relu(-depth).mean()
        loss.backward()
        if not search_cfg.roll:
            angles.grad[2] = 0
        opt.step()
    return pose().detach()


class StereoPrior:
    """Algorithm 1, lines 2-4: the frame's pose from a point-map model and the top-n renders."""

    def __init__(self, model: PointMapModel, cfg: StereoPriorConfig = StereoPriorConfig()):
        self.model = model
        self.cfg = cfg

    def estimate_pose(self, mesh: Mesh, frame: Tensor, search_cfg, ctx: R.RenderContext, scorer, *,
                      generator: torch.Generator) -> Tensor:
        from .camera.sampling import center_poses, make_view, pose_cameras, sample_poses
        from .camera.sampling import score_poses

        view = make_view(frame, search_cfg.search_res, search_cfg)
        res = view.resolution
        topo = R.edge_topology(mesh.faces, mesh.vertices)
        cand = sample_poses(search_cfg.n_samples, search_cfg, generator=generator, device=frame.device)
        for _ in range(search_cfg.center_steps if search_cfg.center_samples else 0):
            cand = center_poses(mesh, cand, view, search_cfg, ctx, topo)
        top = cand[torch.argsort(score_poses(mesh, cand, view, search_cfg, ctx, scorer, topo))[: search_cfg.n_prior_views]]
        with torch.no_grad():
            r = R.render(ctx, mesh, pose_cameras(top, search_cfg, res, view.K), channels=("rgb", "points", "mask"),
                         topology=topo, background=1.0)
        img = view.image
        comp = img[..., :3] * img[..., 3:] + (1 - img[..., 3:])
        pred, _ = self.model(torch.cat([comp[None], r["rgb"]], 0))
        # DUSt3R-like models give points in the first image's (the frame's) camera, OpenCV axes (y down, z
        # forward): canonical_from_model is then about world_from_cam @ diag(1, -1, -1) of the frame's camera,
        # and the top renders' cameras are the best guesses of it we have
        opencv = torch.diag(torch.tensor([1.0, -1.0, -1.0], device=top.device, dtype=top.dtype))
        starts = torch.cat([pose_cameras(top, search_cfg, res, view.K).world_from_cam[:, :3, :3] @ opencv,
                            torch.eye(3, device=top.device, dtype=top.dtype)[None]])
        return pose_from_point_maps(pred[0], pred[1:], r["points"], r["mask"] > 0.5, img[..., 3] > 0.5, top[0],
                                    search_cfg, view.K, self.cfg, generator=generator, init_rotations=starts)


def pose_from_point_maps(frame_pred: Tensor, renders_pred: Tensor, renders_points: Tensor, renders_mask: Tensor,
                         frame_mask: Tensor, init_pose: Tensor, search_cfg, K: Tensor | None,
                         cfg: StereoPriorConfig = StereoPriorConfig(), *, generator: torch.Generator,
                         init_rotations: Tensor | None = None) -> Tensor:
    """Fig. 3: the frame's orbit pose (7,) from predicted point maps.

    frame_pred (H, W, 3) and renders_pred (n, H, W, 3): the model's point maps, in its own frame and scale;
    renders_points (n, H, W, 3): the true canonical points of the renders (from the rasteriser); renders_mask
    (n, H, W) and frame_mask (H, W) bool: the pixels to use; init_pose (7,): where the solve starts (the best
    sampled pose); K (3, 3): the intrinsics of the H x W view (None: the full frame at search_cfg.fov_deg);
    init_rotations (R, 3, 3): starting guesses of canonical_from_model for the alignment.
    """
    T, _ = align_point_clouds(renders_pred[renders_mask], renders_points[renders_mask], cfg, generator=generator,
                              init_rotations=init_rotations)
    pts = frame_pred[frame_mask] @ T[:3, :3].T + T[:3, 3]
    ys, xs = torch.nonzero(frame_mask, as_tuple=True)
    pix = torch.stack([xs + 0.5, ys + 0.5], -1).to(pts)
    return solve_camera(pts, pix, init_pose, search_cfg, tuple(frame_mask.shape), cfg, K)
