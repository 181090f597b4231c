"""The camera search's gradient refinement (Sec. 4.1, Appendix A: 300 steps on the silhouette): a pose, or the
poses of several frames at once, refined by Adam on the mask MSE plus the scorer's loss."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ... import render as R
from ..._graphs import RenderPass, StepGraphs, StepVisibility
from ...camera import Camera, orbit_cam_from_world
from ...optim import Adam
from ...scoring import Scorer
from ...types import Mesh
from .config import CameraSearchConfig
from .sampling import SearchView


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
                 ctx: R.RenderContext, iters: int, topologies: list, scorer: Scorer | None = None, *,
                 static: bool | None = None) -> Tensor:
    """refine_pose for T frames at once, (T, 7) -> (T, 7): every pose takes the Adam steps it would take alone
    (the frames' losses are summed and Adam is elementwise), with one render_each call per step for all frames,
    where one call per frame and step leaves a GPU waiting on kernel launches. All views share one resolution.

    static: each step's renders take their visibility from a pass before the step (``render_visible``), so the
    step has static shapes and no host synchronisation, and on CUDA it is replayed as a CUDA graph; the values are
    the other path's. Default: on CUDA with ``cfg.refine_graphs``, where the scorer can be captured and the meshes
    carry no texture."""
    res = views[0].resolution
    frames = torch.stack([v.image for v in views])  # (T, h, w, 4)
    K = torch.stack([v.K for v in views])
    use_scorer = cfg.refine_appearance and scorer is not None
    channels = ("rgb", "mask") if use_scorer else ("mask",)
    if static is None:
        # textured meshes stay op by op: their capture replays the eager static steps (H100), but the static
        # renderer's texture reads are not nvdiffrast's, and 20 steps ended 5% of the gain apart (the CUDA test)
        static = poses.is_cuda and cfg.refine_graphs and (not use_scorer or getattr(scorer, "capturable", False)) \
            and all(m.texture is None for m in meshes)
    p = poses.clone()
    angles = p[:, [0, 1, 6]].clone().requires_grad_(True)
    log_r = p[:, 2].log().clone().requires_grad_(True)
    look = p[:, 3:6].clone().requires_grad_(True)
    graphs = StepGraphs([angles, log_r, look], enabled=static and cfg.refine_graphs)
    # capturable: the step count lives on the device, so a captured step counts on each replay
    opt = Adam([angles, log_r, look], lr=cfg.refine_lr, capturable=graphs.enabled)
    renders = _RefineRenders(meshes, topologies, graphs=graphs.enabled) if static else None

    def cameras() -> Camera:
        # the views' own intrinsics; the extrinsics of the poses (pose_cameras' without its intrinsics, which
        # copy from the host)
        E = orbit_cam_from_world(angles[:, 0], angles[:, 1], log_r.exp(), look, angles[:, 2] if cfg.roll else None)
        return Camera(K.to(E), E, res)

    def body():
        if renders is None:
            r = R.render_each(ctx, meshes, cameras(), channels=channels, topologies=topologies, background=0.5)
        else:
            r = renders.render(ctx, cameras(), channels)
        loss = refinement_loss(r["rgb"] if use_scorer else None, r["mask"], frames, scorer if use_scorer else None)
        loss.sum().backward()
        if not cfg.roll:
            angles.grad[:, 2] = 0
        opt.step()

    for _ in range(iters):
        if renders is not None and renders.update(ctx, cameras):
            graphs.reset()
        graphs(renders.key() if renders is not None else (), body)
    with torch.no_grad():
        return torch.cat([angles[:, :2], log_r.exp()[:, None], look, angles[:, 2:]], 1)


class _RefineRenders:
    """``refine_poses``' renders with static shapes: what ``render_each`` renders (the meshes merged into one
    render, or one render each where they carry textures or there is one), each render's visibility found before
    the step (``StepVisibility``)."""

    def __init__(self, meshes: list[Mesh], topologies: list, *, graphs: bool = False):
        self.merged = R.merge_views(meshes, topologies) if R.can_merge_views(meshes) else None
        self.meshes, self.topologies = meshes, topologies
        self.seen = StepVisibility(graphs=graphs)

    def passes(self, cams: Camera) -> dict[str, RenderPass]:
        if self.merged is not None:
            v, near, far = self.merged.place(cams)
            return {"merged": RenderPass(self.merged.mesh, cams, v, self.merged.topology, near, far)}
        return {str(b): RenderPass(m, cams[b], None, self.topologies[b]) for b, m in enumerate(self.meshes)}

    @torch.no_grad()
    def update(self, ctx, cameras: Callable[[], Camera]) -> bool:
        """Visibility at the cameras ``cameras()`` makes from the poses (one host wait); True if captured steps
        are stale."""
        return self.seen.update(ctx, lambda: self.passes(cameras()))

    def key(self) -> tuple:
        return self.seen.key()

    def render(self, ctx, cams: Camera, channels: tuple[str, ...]) -> dict[str, Tensor]:
        outs = [self.seen.render(ctx, name, p, channels, background=0.5) for name, p in self.passes(cams).items()]
        return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
