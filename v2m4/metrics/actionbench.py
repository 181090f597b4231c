"""The 4-D reconstruction field's geometry metrics, as ActionBench (the ActionMesh paper's benchmark) defines them,
so that our tables can be read next to published figures:

  cd_3d   Chamfer distance after aligning every frame on its own (shape quality alone)
  cd_4d   Chamfer distance after one alignment fitted at the first frame and kept for all (drift counts)
  cd_m    motion error: surface points of the output matched to ground-truth points at the first frame (nearest
          neighbours, both ways), then followed through the clip and compared point by point; only an output of
          fixed topology can be scored (the points are followed by their barycentric coordinates)

Protocol, as ActionBench's public evaluation code does it (our implementation):
- Chamfer is unsquared: mean Euclidean nearest distance output -> ground truth plus ground truth -> output, the
  queries a fixed random subset of each cloud (``chamfer_queries``) against the whole other cloud; each metric
  is the mean over frames.
- The alignment maps the output onto the ground truth by a rotation (6-D), a per-axis scale applied before it
  and a translation, fitted by Adam (lr 0.01, 200 steps) on the squared Chamfer of ``align_points`` points from
  the 24 axis-aligned rotations at once, keeping the best hypothesis and step.
- The ground truth is a set of tracked surface points (fixed barycentric samples of its fixed-topology mesh); the
  output is sampled on its surface, per frame for Chamfer and once (followed) for cd_m.
- Units: ActionBench measures in its ground truth's stored coordinates, whose normalisation its code does not
  state; we scale each ground truth so its first frame fits [-1, 1]^3 (largest bounding-box side 2). Point counts
  are parameters: ActionBench uses 10,000 alignment points and 100,000 output points; a CPU run may use fewer,
  and the table's settings say which.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from ..geometry import face_areas, rotation_6d, sample_barycentric
from ..optim import Adam
from .geometry import axis_rotations


def _transform(p: Tensor, r6: Tensor, s: Tensor, t: Tensor) -> Tensor:
    """p (N, 3) -> (H, N, 3): per-axis scale s (H, 3), then the rotation of r6 (H, 6) as a right factor, then t."""
    R = rotation_6d(r6)  # (H, 3, 3)
    return (s[:, None] * p[None]) @ R + t[:, None]


def _sq_chamfer(y: Tensor, gt: Tensor) -> Tensor:
    """(H,) squared Chamfer (mean per direction, both summed) of clouds y (H, N, 3) against gt (M, 3). The nearest
    points are found without gradient (exact, in chunks of hypotheses that bound memory) and held fixed within a
    step; the gradient flows through the pairs."""
    H, N, M = y.shape[0], y.shape[1], gt.shape[0]
    chunk = max(1, int(2e7 // (N * M)))
    with torch.no_grad():
        iy, ig = [], []
        for h in range(0, H, chunk):
            d = torch.cdist(y[h:h + chunk].float(), gt.float()[None])
            iy.append(d.argmin(2))
            ig.append(d.argmin(1))
        iy, ig = torch.cat(iy), torch.cat(ig)
    near_y = torch.gather(y, 1, ig[..., None].expand(-1, -1, 3))
    return ((y - gt[iy]) ** 2).sum(-1).mean(1) + ((gt[None] - near_y) ** 2).sum(-1).mean(1)


def fit_alignment(pred: Tensor, gt: Tensor, *, iters: int = 200, lr: float = 0.01) -> tuple[Tensor, Tensor, Tensor]:
    """The transform (r6 (6,), s (3,), t (3,)) of pred (N, 3) onto gt (M, 3) with the lowest squared Chamfer over
    24 axis-aligned starts optimised together and every step (see the module docstring)."""
    pred, gt = pred.detach().double(), gt.detach().double()
    starts = torch.stack(axis_rotations())
    H = starts.shape[0]
    r6 = starts[:, :2].reshape(H, 6).clone().requires_grad_(True)  # rows: rotation_6d reads the first two rows
    s = torch.ones(H, 3, dtype=pred.dtype, requires_grad=True)
    t = torch.zeros(H, 3, dtype=pred.dtype, requires_grad=True)
    opt = Adam([r6, s, t], lr=lr)
    best = (float("inf"), None)
    for _ in range(iters):
        y = _transform(pred, r6, s, t)
        loss = _sq_chamfer(y, gt)  # (H,)
        k = int(loss.argmin())
        if float(loss[k].detach()) < best[0]:
            best = (float(loss[k].detach()), (r6[k].detach().clone(), s[k].detach().clone(), t[k].detach().clone()))
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
    return best[1]


def apply_alignment(p: Tensor, transform: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    r6, s, t = transform
    return _transform(p, r6[None], s[None], t[None])[0]


def chamfer(pred: Tensor, gt: Tensor, *, queries: int, seed: int) -> float:
    """Unsquared symmetric Chamfer: mean nearest distance of ``queries`` points of each cloud to the other whole
    cloud, summed over both directions."""
    rng = np.random.RandomState(seed)
    a, b = pred.detach().double().numpy(), gt.detach().double().numpy()
    qa = a[rng.permutation(len(a))[:queries]]
    qb = b[np.random.RandomState(seed + 1).permutation(len(b))[:queries]]
    return float(cKDTree(b).query(qa, workers=-1)[0].mean() + cKDTree(a).query(qb, workers=-1)[0].mean())


def motion_error(pred: Tensor, gt: Tensor) -> float:
    """cd_m of followed points pred (T, N, 3) and gt (T, M, 3), already aligned: nearest neighbours matched at the
    first frame both ways, the matched pairs' distance averaged over frames, then over points, both ways summed."""
    p, g = pred.detach().double().numpy(), gt.detach().double().numpy()
    _, g_to_p = cKDTree(p[0]).query(g[0], workers=-1)
    _, p_to_g = cKDTree(g[0]).query(p[0], workers=-1)
    d1 = np.linalg.norm(p[:, g_to_p] - g, axis=-1).mean(0)
    d2 = np.linalg.norm(g[:, p_to_g] - p, axis=-1).mean(0)
    return float(d1.mean() + d2.mean())


def _followed(vertices: Tensor, faces: Tensor, n: int, g: torch.Generator) -> Tensor:
    """(T, n, 3): n area-weighted surface samples of frame 0, followed through every frame by their barycentrics."""
    corners, b = sample_barycentric(faces, face_areas(vertices[0], faces), n, generator=g)
    return (vertices[:, corners] * b[..., None].to(vertices)).sum(2)


def actionbench_scores(pred_vertices: list[Tensor], pred_faces: list[Tensor], gt_vertices: Tensor, gt_faces: Tensor,
                       *, align_points: int = 10_000, pred_points: int = 100_000, gt_points: int = 100_000,
                       chamfer_queries: int = 10_000, iters: int = 200, seed: int = 44) -> dict[str, float]:
    """cd_3d, cd_4d and (fixed topology) cd_m of an output (one mesh per frame) against the ground truth (T, V, 3)
    with faces of fixed topology, in the ground truth's units scaled to [-1, 1]^3 at its first frame."""
    g = torch.Generator().manual_seed(seed)
    gt = gt_vertices.double()
    lo, hi = gt[0].min(0).values, gt[0].max(0).values
    centre, half = (lo + hi) / 2, float((hi - lo).max()) / 2
    gt = (gt - centre) / half
    gt_pts = _followed(gt, gt_faces, gt_points, g)
    T = len(pred_vertices)
    # the output's own units are unknown to the metric (the alignment's scale absorbs them); bring it near the
    # ground truth's so that Adam's fixed learning rate means the same for every output
    pv = [v.detach().double() for v in pred_vertices]
    plo, phi = pv[0].min(0).values, pv[0].max(0).values
    pc, ph = (plo + phi) / 2, float((phi - plo).max()) / 2 or 1.0
    pv = [(v - pc) / ph for v in pv]
    pred_pts = [_followed(v[None], f, pred_points, g)[0] for v, f in zip(pv, pred_faces)]
    sub_p = torch.randperm(pred_points, generator=g)[:align_points]
    sub_g = torch.randperm(gt_points, generator=g)[:align_points]
    once = fit_alignment(pred_pts[0][sub_p], gt_pts[0][sub_g], iters=iters)
    cd3, cd4 = [], []
    for t in range(T):
        per = once if t == 0 else fit_alignment(pred_pts[t][sub_p], gt_pts[t][sub_g], iters=iters)
        cd3.append(chamfer(apply_alignment(pred_pts[t], per), gt_pts[t], queries=chamfer_queries, seed=seed))
        cd4.append(chamfer(apply_alignment(pred_pts[t], once), gt_pts[t], queries=chamfer_queries, seed=seed))
    out = {"cd_3d": float(np.mean(cd3)), "cd_4d": float(np.mean(cd4))}
    same = all(f.shape == pred_faces[0].shape and torch.equal(f, pred_faces[0]) for f in pred_faces)
    if same and len({v.shape[0] for v in pv}) == 1:
        followed = _followed(torch.stack(pv), pred_faces[0], pred_points, g)
        out["cd_m"] = motion_error(torch.stack([apply_alignment(p, once) for p in followed]), gt_pts)
    return out
