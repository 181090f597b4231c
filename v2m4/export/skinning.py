"""Skinning decomposition of a vertex sequence (experimental): bones, weights and per-frame rigid bone transforms
such that v_t ~ sum_b w_vb (R_tb rest_v + t_tb), in the spirit of Le & Deng's SSDR (2012), our own solver.

Alternation: bone transforms by weighted Procrustes (closed form, batched over frames and bones), then each vertex's
weights over its ``max_influences`` best bones by a least-squares fit with the sum-to-one constraint, clipped to
be non-negative and renormalised. Initialised by k-means on vertex trajectories.

glTF contract (``to_gltf``): the skin's inverse bind matrices are the identity and its joints sit at the origin in
the bind pose, so a joint's animated translation/rotation IS the bone transform (R_tb, t_tb).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Skinning:
    weights: Tensor      # (V, B) >= 0, rows sum to 1, <= max_influences non-zero
    rotations: Tensor    # (T, B, 3, 3)
    translations: Tensor # (T, B, 3)
    rmse: float          # fraction of the bounding-box diagonal
    max_err: float       # fraction of the bounding-box diagonal
    seconds: float


def skin_vertices(sk: Skinning, rest: Tensor) -> Tensor:
    """(T, V, 3) positions the skinning reproduces."""
    moved = torch.einsum("tbij,vj->tbvi", sk.rotations, rest) + sk.translations[:, :, None]  # (T, B, V, 3)
    return torch.einsum("vb,tbvi->tvi", sk.weights, moved)


def _procrustes(rest: Tensor, verts: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """Per frame and bone, the rigid transform taking rest onto verts with vertex weights w (V, B)."""
    ws = w.sum(0).clamp_min(1e-12)                                   # (B,)
    cr = (w.T @ rest) / ws[:, None]                                   # (B, 3)
    cv = torch.einsum("vb,tvi->tbi", w, verts) / ws[None, :, None]     # (T, B, 3)
    # covariance sum_v w (v_t - cv)(r - cr)^T = sum_v w v_t r^T - ws cv cr^T
    S = torch.einsum("vb,tvi,vj->tbij", w, verts, rest) - ws[None, :, None, None] * cv[..., :, None] * cr[None, :, None, :]
    U, _, Vh = torch.linalg.svd(S)
    d = torch.sign(torch.det(U @ Vh))
    D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    Rm = U @ D @ Vh
    t = cv - torch.einsum("tbij,bj->tbi", Rm, cr)
    return Rm, t


def _kmeans(x: Tensor, k: int, iters: int, g: torch.Generator) -> Tensor:
    c = x[torch.randperm(x.shape[0], generator=g)[:k]].clone()
    for _ in range(iters):
        lab = torch.cdist(x, c).argmin(1)
        for j in range(k):
            m = lab == j
            if bool(m.any()):
                c[j] = x[m].mean(0)
    return torch.cdist(x, c).argmin(1)


def decompose(rest: Tensor, vertices: Tensor, *, n_bones: int = 16, max_influences: int = 4, iters: int = 10,
              seed: int = 0) -> Skinning:
    """rest (V, 3), vertices (T, V, 3) -> Skinning (see module docstring)."""
    t0 = time.perf_counter()
    rest, verts = rest.double().cpu(), vertices.double().cpu()
    V, T = rest.shape[0], verts.shape[0]
    B = max(1, min(n_bones, V))
    g = torch.Generator().manual_seed(seed)
    traj = (verts - verts.mean(1, keepdim=True)).permute(1, 0, 2).reshape(V, -1)
    lab = _kmeans(traj, B, 15, g)
    w = torch.nn.functional.one_hot(lab, B).double()
    k = min(max_influences, B)
    for _ in range(iters):
        Rm, tr = _procrustes(rest, verts, w)
        moved = torch.einsum("tbij,vj->vbti", Rm, rest) + tr.permute(1, 0, 2)[None]     # (V, B, T, 3)
        err = ((moved - verts.permute(1, 0, 2)[:, None]) ** 2).sum((2, 3))                # (V, B)
        cand = err.topk(k, dim=1, largest=False).indices                                  # (V, k)
        A = torch.gather(moved, 1, cand[:, :, None, None].expand(-1, -1, T, 3)).reshape(V, k, -1)  # (V, k, 3T)
        y = verts.permute(1, 0, 2).reshape(V, -1)                                          # (V, 3T)
        # min |A^T w - y|^2 s.t. sum w = 1: KKT system, then non-negativity by clipping and renormalising
        G = A @ A.transpose(1, 2) + 1e-9 * torch.eye(k, dtype=A.dtype)
        h = (A @ y[..., None])[..., 0]
        kkt = torch.zeros(V, k + 1, k + 1, dtype=A.dtype)
        kkt[:, :k, :k] = G
        kkt[:, :k, k] = 1
        kkt[:, k, :k] = 1
        rhs = torch.cat([h, torch.ones(V, 1, dtype=A.dtype)], 1)
        sol = torch.linalg.solve(kkt, rhs[..., None])[..., 0][:, :k].clamp_min(0)
        sol = sol / sol.sum(1, keepdim=True).clamp_min(1e-12)
        bad = ~torch.isfinite(sol).all(1)
        sol[bad] = torch.nn.functional.one_hot(torch.zeros(int(bad.sum()), dtype=torch.long), k).double()
        w = torch.zeros(V, B, dtype=torch.float64).scatter(1, cand, sol)
    Rm, tr = _procrustes(rest, verts, w)
    sk = Skinning(w, Rm, tr, 0.0, 0.0, 0.0)
    diag = float((verts.amax((0, 1)) - verts.amin((0, 1))).norm())
    e = (skin_vertices(sk, rest) - verts).norm(dim=-1)
    sk.rmse = float(e.pow(2).mean().sqrt()) / diag
    sk.max_err = float(e.max()) / diag
    sk.seconds = time.perf_counter() - t0
    return sk


def _quaternions(Rm: Tensor) -> Tensor:
    """(..., 3, 3) rotations -> (..., 4) unit quaternions in glTF order (x, y, z, w), w >= 0."""
    m = Rm
    w = torch.sqrt((1 + m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]).clamp_min(0)) / 2
    x = torch.sqrt((1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2]).clamp_min(0)) / 2
    y = torch.sqrt((1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2]).clamp_min(0)) / 2
    z = torch.sqrt((1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]).clamp_min(0)) / 2
    x = torch.copysign(x, m[..., 2, 1] - m[..., 1, 2])
    y = torch.copysign(y, m[..., 0, 2] - m[..., 2, 0])
    z = torch.copysign(z, m[..., 1, 0] - m[..., 0, 1])
    q = torch.stack([x, y, z, w], -1)
    return q / q.norm(dim=-1, keepdim=True)


def to_gltf(sk: Skinning, max_influences: int = 4) -> dict:
    """JOINTS_0 (V, 4) uint16, WEIGHTS_0 (V, 4) float32 (sorted, normalised, unused slots joint 0 with weight 0),
    and per-frame joint translations (T, B, 3) and rotations (T, B, 4, x y z w)."""
    import numpy as np

    w = sk.weights
    V, B = w.shape
    k = min(max_influences, 4)
    top = w.topk(min(k, B), dim=1)
    vals, idx = top.values, top.indices
    if vals.shape[1] < 4:  # fewer bones than slots
        pad = 4 - vals.shape[1]
        vals = torch.cat([vals, torch.zeros(V, pad, dtype=vals.dtype)], 1)
        idx = torch.cat([idx, torch.zeros(V, pad, dtype=idx.dtype)], 1)
    vals = vals / vals.sum(1, keepdim=True)
    vals = vals.float()
    vals[:, 0] += 1 - vals.sum(1)  # exact float32 sums (the validator checks them)
    joints = idx.numpy().astype(np.uint16)
    weights = vals.numpy().astype(np.float32)
    weights[weights < 0] = 0
    joints[weights == 0] = 0  # the spec's rule: an unused slot points at joint 0 with weight 0
    return {"joints": joints, "weights": weights, "translations": sk.translations.float().numpy(),
            "rotations": _quaternions(sk.rotations).float().numpy()}
