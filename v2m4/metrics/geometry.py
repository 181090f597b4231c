"""Geometry metrics against ground truth, weight-free: Chamfer-L2, F-score, similarity alignment, jitter.

Point sets are (N, 3) tensors; nearest neighbours come from scipy's KD-tree (exact, fast on the CPU).
Distances are in the units of the inputs; ``sequence_geometry_scores`` normalises by the ground truth's
bounding-box diagonal so that items of any size compare.
"""

from __future__ import annotations

import itertools
import statistics

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor


def sample_surface_faces(vertices: Tensor, faces: Tensor, n: int, *, generator: torch.Generator
                         ) -> tuple[Tensor, Tensor]:
    """n points uniformly on the surface (area-weighted faces, uniform barycentrics), float64 (n, 3) on the CPU,
    and the face each lies on (n,) int64; a surface of no area gives n of its vertices at random, face -1."""
    v = vertices.detach().double().cpu()
    f = faces.long().cpu()
    tri = v[f]
    area = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1).norm(dim=-1)
    if float(area.sum()) <= 0:
        return v[torch.randint(0, v.shape[0], (n,), generator=generator)], torch.full((n,), -1)
    idx = torch.multinomial(area, n, replacement=True, generator=generator)
    r1, r2 = torch.rand(n, generator=generator, dtype=torch.float64), torch.rand(n, generator=generator, dtype=torch.float64)
    s = r1.sqrt()
    b = torch.stack([1 - s, s * (1 - r2), s * r2], -1)
    return (tri[idx] * b[..., None]).sum(1), idx


def sample_surface(vertices: Tensor, faces: Tensor, n: int, *, generator: torch.Generator) -> Tensor:
    """n points uniformly on the surface (``sample_surface_faces``): (n, 3) float32."""
    return sample_surface_faces(vertices, faces, n, generator=generator)[0].float()


def nearest_distances(a: Tensor, b: Tensor) -> Tensor:
    """For each point of a (N, 3), the distance to the nearest point of b (M, 3): (N,)."""
    d, _ = cKDTree(b.detach().cpu().numpy()).query(a.detach().cpu().numpy(), workers=1)
    return torch.as_tensor(d, dtype=torch.float32)


def chamfer_l2(a: Tensor, b: Tensor) -> float:
    """Symmetric Chamfer distance: mean squared nearest distance a->b plus b->a (0 for identical sets)."""
    return float((nearest_distances(a, b) ** 2).mean() + (nearest_distances(b, a) ** 2).mean())


def fscore(a: Tensor, b: Tensor, threshold: float) -> float:
    """F-score at a distance threshold: harmonic mean of precision (a near b) and recall (b near a)."""
    p = float((nearest_distances(a, b) <= threshold).float().mean())
    r = float((nearest_distances(b, a) <= threshold).float().mean())
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def umeyama(src: Tensor, dst: Tensor) -> Tensor:
    """Least-squares similarity (Umeyama 1991) mapping corresponding points src (N, 3) onto dst (N, 3): (4, 4)."""
    src, dst = src.double(), dst.double()
    ms, md = src.mean(0), dst.mean(0)
    xs, xd = src - ms, dst - md
    cov = xd.T @ xs / src.shape[0]
    U, S, Vt = torch.linalg.svd(cov)
    D = torch.eye(3, dtype=src.dtype)
    if torch.det(U) * torch.det(Vt) < 0:
        D[2, 2] = -1
    R = U @ D @ Vt
    var = (xs ** 2).sum(1).mean()
    s = (S * D.diagonal()).sum() / var.clamp_min(1e-30)
    T = torch.eye(4, dtype=torch.float64)
    T[:3, :3] = s * R
    T[:3, 3] = md - s * R @ ms
    return T.float()


def apply(T: Tensor, points: Tensor) -> Tensor:
    """Apply a (4, 4) transform to points (..., 3)."""
    return points @ T[:3, :3].T.to(points.dtype) + T[:3, 3].to(points.dtype)


def axis_rotations() -> list[Tensor]:
    """The 24 rotations of the cube: the starting orientations an unaligned prediction can need."""
    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            M = torch.zeros(3, 3, dtype=torch.float64)
            for i, (p, s) in enumerate(zip(perm, signs)):
                M[i, p] = s
            if torch.det(M) > 0:
                mats.append(M)
    return mats


def _icp(src: np.ndarray, dst_tree: cKDTree, dst: np.ndarray, T: Tensor, iters: int) -> tuple[Tensor, float]:
    s = torch.as_tensor(src, dtype=torch.float64)
    for _ in range(iters):
        moved = apply(T.double(), s).numpy()
        d, j = dst_tree.query(moved, workers=1)
        T = umeyama(s, torch.as_tensor(dst[j]))
    moved = apply(T.double(), s).numpy()
    d, _ = dst_tree.query(moved, workers=1)
    return T, float((d ** 2).mean())


def align_similarity(src: Tensor, dst: Tensor, *, coarse_points: int = 800, iters: int = 30,
                     generator: torch.Generator | None = None) -> Tensor:
    """A similarity (4, 4) mapping point set src onto dst without correspondences.

    Scaled ICP from each of the 24 cube rotations (after matching centroids and RMS radii) on a subsample, then
    the best start refined on all points. Symmetric shapes may still settle in a mirror-like minimum; the
    24 starts make a wrong basin unlikely for asymmetric objects.
    """
    g = generator or torch.Generator().manual_seed(0)
    s_np, d_np = src.detach().double().cpu().numpy(), dst.detach().double().cpu().numpy()
    cs, cd = s_np.mean(0), d_np.mean(0)
    rs = np.sqrt(((s_np - cs) ** 2).sum(1).mean())
    rd = np.sqrt(((d_np - cd) ** 2).sum(1).mean())
    scale = rd / max(rs, 1e-30)
    sub = lambda x: x[torch.randperm(len(x), generator=g)[:coarse_points].numpy()]  # noqa: E731
    s_sub, d_sub = sub(s_np), sub(d_np)
    tree_sub = cKDTree(d_sub)
    best = None
    for R in axis_rotations():
        T = torch.eye(4, dtype=torch.float64)
        T[:3, :3] = scale * R
        T[:3, 3] = torch.as_tensor(cd) - scale * R @ torch.as_tensor(cs)
        T, err = _icp(s_sub, tree_sub, d_sub, T, 8)
        # symmetric error, so a shrunken prediction cannot win by hiding inside the target
        back, _ = cKDTree(apply(T.double(), torch.as_tensor(s_sub)).numpy()).query(d_sub)
        err = err + float((back ** 2).mean())
        if best is None or err < best[1]:
            best = (T, err)
    T, _ = _icp(s_np, cKDTree(d_np), d_np, best[0], iters)
    return T.float()


def topology_constant(faces: list[Tensor], n_vertices: list[int]) -> bool:
    """True if every frame has the same vertex count and the same faces (same connectivity)."""
    return len(set(n_vertices)) == 1 and all(f.shape == faces[0].shape and torch.equal(f, faces[0]) for f in faces)


def vertex_jitter(vertices: Tensor) -> float:
    """Mean norm of the discrete acceleration v[t+1] - 2 v[t] + v[t-1] over a (T, V, 3) sequence (0 if T < 3)."""
    if vertices.shape[0] < 3:
        return 0.0
    acc = vertices[2:] - 2 * vertices[1:-1] + vertices[:-2]
    return float(acc.norm(dim=-1).mean())


def sequence_geometry_scores(pred_vertices: list[Tensor], pred_faces: list[Tensor], gt_vertices: Tensor,
                             gt_faces: Tensor, *, n_points: int = 5000, seed: int = 0) -> dict[str, float]:
    """The benchmark's geometry columns for one item (see ``v2m4.bench``). Distances in units of the ground truth's
    first-frame bounding-box diagonal; Chamfer-L2 is therefore in diagonal² units."""
    return sequence_geometry(pred_vertices, pred_faces, gt_vertices, gt_faces, n_points=n_points, seed=seed)[0]


def sequence_geometry(pred_vertices: list[Tensor], pred_faces: list[Tensor], gt_vertices: Tensor, gt_faces: Tensor,
                      *, n_points: int = 5000, seed: int = 0, per_frame: bool = True
                      ) -> tuple[dict[str, float], Tensor]:
    """``sequence_geometry_scores`` and the once-alignment it scored with: the similarity (4, 4) taking the
    prediction's world onto the ground truth's (in their own units), fitted at the first frame. per_frame=False
    leaves out the per-frame alignments (the ``*_per_frame`` columns), the slow part on long clips."""
    g = torch.Generator().manual_seed(seed)
    T = len(pred_vertices)
    gt = gt_vertices.float()
    diag = float((gt[0].max(0).values - gt[0].min(0).values).norm())
    gt_pts = [sample_surface(gt[t] / diag, gt_faces, n_points, generator=g) for t in range(T)]
    pr_pts = [sample_surface(pred_vertices[t] / diag, pred_faces[t], n_points, generator=g) for t in range(T)]
    once = align_similarity(pr_pts[0], gt_pts[0], generator=g)
    res = {"chamfer_once": [], "fscore1_once": [], "fscore2_once": [], "chamfer_per_frame": [], "fscore2_per_frame": []}
    for t in range(T):
        p1 = apply(once, pr_pts[t])
        res["chamfer_once"].append(chamfer_l2(p1, gt_pts[t]))
        res["fscore1_once"].append(fscore(p1, gt_pts[t], 0.01))
        res["fscore2_once"].append(fscore(p1, gt_pts[t], 0.02))
        if per_frame:
            per = once if t == 0 else align_similarity(pr_pts[t], gt_pts[t], generator=g)
            p2 = apply(per, pr_pts[t])
            res["chamfer_per_frame"].append(chamfer_l2(p2, gt_pts[t]))
            res["fscore2_per_frame"].append(fscore(p2, gt_pts[t], 0.02))
    out = {k: statistics.median(v) for k, v in res.items() if v}
    out["fscore2_once_first"] = res["fscore2_once"][0]
    out["fscore2_once_last"] = res["fscore2_once"][-1]
    const = topology_constant(pred_faces, [v.shape[0] for v in pred_vertices])
    out["topology_constant"] = int(const)
    out["jitter_gt"] = vertex_jitter(gt / diag)
    if const:
        out["jitter"] = vertex_jitter(torch.stack([apply(once, v.float() / diag) for v in pred_vertices]))
    else:
        # no vertex correspondence over time: follow ground-truth-anchored points on the output instead (the
        # nearest output vertex to each ground-truth vertex, in the once-aligned frame)
        anchors = []
        for t in range(T):
            pv = apply(once, pred_vertices[t].float() / diag)
            _, j = cKDTree(pv.numpy()).query((gt[t] / diag).numpy())
            anchors.append(pv[torch.as_tensor(j)])
        out["jitter"] = vertex_jitter(torch.stack(anchors))
    world = once.clone()
    world[:3, 3] *= diag  # the fit was between point sets divided by diag: a similarity's translation scales
    return out, world
