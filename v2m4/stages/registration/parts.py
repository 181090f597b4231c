"""Loose parts placed on their own before the fit (ours, beyond the paper).

Generated and artist meshes are often several disconnected pieces: a limb, an eye, a wheel. Nothing but the
Chamfer term ties such a piece to its target, and the global alignment moves the whole mesh by one similarity, so
a piece that turns far from its rest pose between keyframes (an arm raised over the head) starts its fit far from
where its target is, and the nearest-point pull of the Chamfer term hides it inside the body while another piece
takes its place (measured on a raised arm: the arm went into the chest, an eye became the hand).

Here, for each keyframe, each loose piece of the rest mesh under that keyframe's similarity is tested against
every loose piece of the keyframe's target of similar area: a rigid ICP from five starts (its current turn and the
four turns that map its principal axes onto the candidate's), scored by the symmetric mean squared distance
between the two pieces' vertices. A piece moves only where the best candidate fits it ``gain`` times better than
where it is now (its mean squared distance to the whole target); pieces contending for one target piece are
assigned by the Hungarian method. Pieces that already fit, and meshes of one piece, are left as they are.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree
from torch import Tensor

from ...types import Mesh
from ..remesh import piece_labels, triangle_areas

__all__ = ["pieces", "place_pieces"]


def pieces(faces: np.ndarray, n_vertices: int) -> list[np.ndarray]:
    """The vertex indices of each connected piece of a triangle mesh (vertices in no face are left out), largest
    piece first."""
    return _pieces(np.asarray(faces, dtype=np.int64), n_vertices)[0]


def _pieces(f: np.ndarray, n_vertices: int) -> tuple[list[np.ndarray], np.ndarray]:
    """``pieces`` and the component label of every vertex (``remesh.piece_labels``)."""
    label = piece_labels(n_vertices, f)
    used = np.zeros(n_vertices, dtype=bool)
    used[f.reshape(-1)] = True
    out = [np.flatnonzero((label == c) & used) for c in range(label.max() + 1)]
    return sorted((p for p in out if len(p)), key=len, reverse=True), label


def _areas(v: np.ndarray, f: np.ndarray, parts: list[np.ndarray], label: np.ndarray) -> np.ndarray:
    """Each piece's surface area."""
    per = np.bincount(label[f[:, 0]], weights=triangle_areas(v, f), minlength=label.max() + 1)
    return per[[label[p[0]] for p in parts]]


def _axes(p: np.ndarray) -> np.ndarray:
    """Principal axes (3, 3) of points p as columns, largest variance first, right-handed."""
    _, vec = np.linalg.eigh(np.cov((p - p.mean(0)).T))
    vec = vec[:, ::-1]
    if np.linalg.det(vec) < 0:
        vec[:, 2] *= -1
    return vec


def _kabsch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rotation R minimising |R (a - mean a) - (b - mean b)| for paired rows of a and b."""
    h = (a - a.mean(0)).T @ (b - b.mean(0))
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    return vt.T @ np.diag([1.0, 1.0, d]) @ u.T


def _symmetric(a: np.ndarray, b: np.ndarray, tree_b: cKDTree) -> float:
    """Mean squared nearest distance a -> b plus b -> a (tree_b: b's tree)."""
    return float((tree_b.query(a)[0] ** 2).mean() + (cKDTree(a).query(b)[0] ** 2).mean())


def _icp(src: np.ndarray, dst: np.ndarray, tree: cKDTree, rot: np.ndarray, iters: int) -> tuple[np.ndarray, float]:
    """src (n, 3) turned by rot about its centroid onto dst's centroid, then point-to-point ICP onto dst; returns
    the moved points and their symmetric mean squared distance to dst."""
    y = (src - src.mean(0)) @ rot.T + dst.mean(0)
    for _ in range(iters):
        _, nn = tree.query(y)
        r = _kabsch(y, dst[nn])
        y = (y - y.mean(0)) @ r.T + dst[nn].mean(0)
    return y, _symmetric(y, dst, tree)


def place_pieces(x: Tensor, faces: Tensor, targets: list[Mesh], *, min_share: float = 0.01, gain: float = 4.0,
                 area_ratio: float = 2.0, motion: float = 1e-4, iters: int = 15) -> tuple[Tensor, list[int]]:
    """Rest positions under each keyframe's similarity x (K, V, 3) with their loose pieces moved rigidly onto the
    pieces of the keyframe's target that fit them (see the module's docstring); targets: the K target meshes in the
    same frame. Returns the positions and how many pieces moved at each keyframe.

    A loose piece (at least ``min_share`` of the rest's area; never the largest) may move onto a target piece of
    an area within ``area_ratio`` of its own only where a rigid ICP fits it there ``gain`` times better than it
    fits the whole target where it is now (mean squared distance of its vertices): pieces that already lie on the
    target's surface stay, so the fit's own work is not redone piece by piece (refitting every piece at every
    keyframe on its own made the pieces tremble). Pieces and target pieces are then paired at least total cost
    (Hungarian): a piece that stays costs its symmetric mean squared distance to the target piece as it lies, a
    move the distance after ICP plus ``motion`` x the squared distance its centroid travels. ``motion`` is a prior
    of least motion: it decides between target pieces that fit a piece equally well (a left and a right arm) and
    is far below what tells a fitting piece from a misplaced one (normalised units: the object spans 1).
    """
    f = faces.cpu().numpy().astype(np.int64)
    parts, label = _pieces(f, x.shape[1])
    if len(parts) < 2:
        return x, [0] * len(targets)
    out = x.detach().cpu().double().numpy().copy()
    flips = [np.diag(s).astype(float) for s in ([1, 1, 1], [-1, -1, 1], [-1, 1, -1], [1, -1, -1])]
    moved = [0] * len(targets)
    for k, tgt in enumerate(targets):
        v = out[k]
        area = _areas(v, f, parts, label)
        loose = [i for i in range(1, len(parts)) if area[i] >= min_share * area.sum()]
        tv = tgt.vertices.detach().cpu().double().numpy()
        tf = tgt.faces.cpu().numpy().astype(np.int64)
        tparts, tlabel = _pieces(tf, len(tv))
        if not loose or len(tparts) < 2:
            continue
        tarea = _areas(tv, tf, tparts, tlabel)
        trees = [cKDTree(tv[q]) for q in tparts]
        whole = cKDTree(tv)
        # a piece no farther from the target's surface than the mesh's median vertex is not misplaced
        floor = float(np.median(whole.query(v)[0] ** 2))
        cost = np.full((len(loose), len(tparts)), np.inf)
        placed: dict[tuple[int, int], np.ndarray] = {}
        for a, i in enumerate(loose):
            p = v[parts[i]]
            stay = float((whole.query(p)[0] ** 2).mean())
            search = stay > gain * floor
            axes_p = _axes(p) if search else None
            for j, q in enumerate(tparts):
                if not (1 / area_ratio <= tarea[j] / max(area[i], 1e-30) <= area_ratio) or len(q) < 4:
                    continue
                dst = tv[q]
                here = _symmetric(p, dst, trees[j])
                if search:
                    axes = _axes(dst)
                    starts = [np.eye(3)] + [axes @ s @ axes_p.T for s in flips]
                    y, score = min((_icp(p, dst, trees[j], r, iters) for r in starts), key=lambda ys: ys[1])
                if search and score * gain < stay:
                    cost[a, j] = score + motion * float(((y.mean(0) - p.mean(0)) ** 2).sum())
                    placed[a, j] = y
                else:
                    cost[a, j] = here
        if not np.isfinite(cost).any():
            continue
        rows, cols = linear_sum_assignment(np.where(np.isfinite(cost), cost, 1e30))
        for a, j in zip(rows, cols):
            if (a, j) in placed:
                v[parts[loose[a]]] = placed[a, j]
                moved[k] += 1
    return torch.as_tensor(out, dtype=x.dtype, device=x.device), moved
