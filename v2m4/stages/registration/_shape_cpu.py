"""The whole-clip fit's shape terms (ARAP, area, edge; ``clip_terms._Shape``) on the CPU as one compiled pass
(numba) that gives each frame's energy and its gradient together.

Why: on a CPU the terms' cost is memory traffic, not arithmetic. As tensor operators, every step made about forty
passes over (2E, T, 3) and (F, T, 3) intermediates, forward and backward; one loop over edges and faces reads
each vertex row a few times and writes the gradient once. The energy is a sum of per-edge and per-face terms,
so its gradient is written out here rather than recorded: a step's backward scales it by the frames' weights.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..._compiled import available, over_range

__all__ = ["available", "shape_energy"]


def _kernel(t0, t1, x, edges, faces, turned, length, area, w, energy, grad):  # pragma: no cover - compiled
    """Frames [t0, t1) of: x (V, T, 3) positions; edges (E, 2), faces (F, 3) int64; turned (2E, T, 3) each directed
    edge (the E edges a -> b, then b -> a) as its frame's ARAP rotation turns the rest's; length (E, T), area
    (F, T) the rest's at each frame's size; w (3,) float64 the weights of ARAP, area and edge. Writes energy (T,)
    and grad (V, T, 3), which must be zero in those frames, at those frames only."""
    E, F = edges.shape[0], faces.shape[0]
    n = t1 - t0
    ca = w[0] / max(2 * E, 1)  # each term a mean: ARAP over directed edges, area over faces, edge over edges
    cf = w[1] / max(F, 1)
    ce = w[2] / max(E, 1)
    ea = np.zeros(n)
    ef = np.zeros(n)
    ee = np.zeros(n)
    for e in range(E):
        a, b = edges[e, 0], edges[e, 1]
        for t in range(t0, t1):
            d0 = np.float64(x[b, t, 0]) - x[a, t, 0]
            d1 = np.float64(x[b, t, 1]) - x[a, t, 1]
            d2 = np.float64(x[b, t, 2]) - x[a, t, 2]
            p0, p1, p2 = d0 - turned[e, t, 0], d1 - turned[e, t, 1], d2 - turned[e, t, 2]
            q0, q1, q2 = -d0 - turned[E + e, t, 0], -d1 - turned[E + e, t, 1], -d2 - turned[E + e, t, 2]
            ea[t - t0] += p0 * p0 + p1 * p1 + p2 * p2 + q0 * q0 + q1 * q1 + q2 * q2
            g0, g1, g2 = 2 * ca * (p0 - q0), 2 * ca * (p1 - q1), 2 * ca * (p2 - q2)
            ln = np.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
            res = ln - length[e, t]
            ee[t - t0] += res * res
            if ln > 0:  # the norm's gradient is 0 at 0, as torch's
                s = 2 * ce * res / ln
                g0, g1, g2 = g0 + s * d0, g1 + s * d1, g2 + s * d2
            grad[b, t, 0] += g0
            grad[b, t, 1] += g1
            grad[b, t, 2] += g2
            grad[a, t, 0] -= g0
            grad[a, t, 1] -= g1
            grad[a, t, 2] -= g2
    for f in range(F):
        i, j, k = faces[f, 0], faces[f, 1], faces[f, 2]
        for t in range(t0, t1):
            u0 = np.float64(x[j, t, 0]) - x[i, t, 0]
            u1 = np.float64(x[j, t, 1]) - x[i, t, 1]
            u2 = np.float64(x[j, t, 2]) - x[i, t, 2]
            v0 = np.float64(x[k, t, 0]) - x[i, t, 0]
            v1 = np.float64(x[k, t, 1]) - x[i, t, 1]
            v2 = np.float64(x[k, t, 2]) - x[i, t, 2]
            n0, n1, n2 = u1 * v2 - u2 * v1, u2 * v0 - u0 * v2, u0 * v1 - u1 * v0
            nn = np.sqrt(n0 * n0 + n1 * n1 + n2 * n2)
            res = nn / 2 - area[f, t]
            ef[t - t0] += res * res
            if nn > 0:  # d|n|/2 / dn = n / (2 |n|); the cross product's gradient: u gets v x g, v gets g x u
                s = cf * res / nn
                h0, h1, h2 = s * n0, s * n1, s * n2
                a0, a1, a2 = v1 * h2 - v2 * h1, v2 * h0 - v0 * h2, v0 * h1 - v1 * h0
                b0, b1, b2 = h1 * u2 - h2 * u1, h2 * u0 - h0 * u2, h0 * u1 - h1 * u0
                grad[j, t, 0] += a0
                grad[j, t, 1] += a1
                grad[j, t, 2] += a2
                grad[k, t, 0] += b0
                grad[k, t, 1] += b1
                grad[k, t, 2] += b2
                grad[i, t, 0] -= a0 + b0
                grad[i, t, 1] -= a1 + b1
                grad[i, t, 2] -= a2 + b2
    for t in range(t0, t1):
        energy[t] = ca * ea[t - t0] + cf * ef[t - t0] + ce * ee[t - t0]


def _np(t: Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


class _Energy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, edges: Tensor, faces: Tensor, turned: Tensor, length: Tensor, area: Tensor,
                w: tuple[float, float, float]) -> Tensor:
        xv = x.detach().transpose(0, 1)  # the solve's (V, T, 3) storage: a view where x came from it
        energy = x.new_empty(x.shape[0])
        grad = torch.zeros(xv.shape, dtype=x.dtype)
        over_range(_kernel, x.shape[0], (_np(xv), _np(edges), _np(faces), _np(turned.to(x.dtype)),
                                         _np(length.to(x.dtype)), _np(area.to(x.dtype)),
                                         np.asarray(w, np.float64), energy.numpy(), grad.numpy()))
        ctx.save_for_backward(grad)
        return energy

    @staticmethod
    def backward(ctx, g: Tensor):
        (grad,) = ctx.saved_tensors
        return (grad * g[None, :, None]).transpose(0, 1), None, None, None, None, None, None


def shape_energy(x: Tensor, edges: Tensor, faces: Tensor, turned: Tensor, length: Tensor, area: Tensor,
                 w: tuple[float, float, float]) -> Tensor:
    """(T,) w[0] ARAP + w[1] area + w[2] edge energy of positions x (T, V, 3) on the CPU, differentiable in x: the
    energies of ``clip_terms._Shape.energy``, with the same inputs (turned (2E, T, 3), length (E, T), area (F, T)).
    Frames are split over torch's threads."""
    return _Energy.apply(x, edges, faces, turned, length, area, w)
