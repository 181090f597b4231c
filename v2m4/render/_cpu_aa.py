"""The CPU's antialias, compiled (numba): ``_torch_aa.antialias``'s edge-crossing walk as one loop per view, forward
and backward.

Why: as tensor operators the walk is a few dozen passes over per-edge and per-crossing intermediates, each paying a
fixed dispatch price, and its backward as many again; on the 2-core CPU that was about a quarter of a whole-clip
registration step (the video's silhouettes of every frame). A loop over each view's silhouette edges reads each
vertex twice and writes each crossing's two pixels once. The backward walks the same crossings again rather than
keeping them (they are cheap to find and their number is unknown until found).

The arithmetic is the tensor version's, step for step in float32, so both give the same crossings, pixels and
shares; sums of several crossings on one pixel are added in another order (a few ulp). Views are split over a
thread pool (``_compiled.over_range``); each view writes only its own rows, so the result does not depend on the
split.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .._compiled import available, over_range
from ._torch import _screen

__all__ = ["available", "antialias"]


def _walk(b0, b1, x, y, z, wc, area, edges, edge_faces, opposite, zbuf, color, h, w, gout,
          out, gcolor, gx, gy):  # pragma: no cover - compiled; tested through antialias
    """Views [b0, b1). x, y, z, wc (B, V) float32 pixel coordinates, z_ndc and clip w; area (B, F) signed screen
    area; edges, edge_faces, opposite (E, 2) int64 (``_torch_aa.edge_topology``); zbuf (B * H * W,) float32;
    color (B * H * W, C) float32. Forward (gout has 0 rows): out (B * H * W, C), a copy of color on entry, gets
    each crossing's shares. Backward: gcolor (a copy of gout on entry), gx, gy (B, V) (zero on entry) get the
    gradients of the forward's output against gout (B * H * W, C)."""
    E, C = edges.shape[0], color.shape[1]
    half, one, zero = np.float32(0.5), np.float32(1.0), np.float32(0.0)
    backward = gout.shape[0] > 0
    for b in range(b0, b1):
        for e in range(E):
            i0, i1 = edges[e, 0], edges[e, 1]
            if not (wc[b, i0] > 1e-8 and wc[b, i1] > 1e-8):
                continue
            fa = edge_faces[e, 0]
            fb = edge_faces[e, 1]
            if fb >= 0 and (area[b, fa] > 0) == (area[b, fb] > 0):
                continue  # both faces turned the same way: not a silhouette edge
            ax, ay, bx, by = x[b, i0], y[b, i0], x[b, i1], y[b, i1]
            steep = abs(by - ay) >= abs(bx - ax)
            oc = opposite[e, 0]
            nx, ny = -(by - ay), bx - ax
            side = np.sign(nx * (x[b, oc] - ax) + ny * (y[b, oc] - ay))
            if steep:
                s0, s1, lim, lim_o, A0, A1, O0, O1, nd = ay, by, h, w, ay, by, ax, bx, nx
            else:
                s0, s1, lim, lim_o, A0, A1, O0, O1, nd = ax, bx, w, h, ax, bx, ay, by, ny
            lo = max(np.ceil(min(s0, s1)), zero)
            hi = min(np.ceil(max(s0, s1)), np.float32(lim))
            inside_is_1 = np.sign(nd) == side
            z0, z1 = z[b, i0], z[b, i1]
            k = 0
            while lo + np.float32(k) < hi:
                s = lo + np.float32(k)
                k += 1
                den = A1 - A0
                t = (s - A0) / den
                cross = O0 + t * (O1 - O0)
                j0 = np.floor(cross)
                if not (j0 >= zero and j0 + one < np.float32(lim_o)):
                    continue
                jl = int(j0)
                sl = int(s)
                if steep:
                    p0 = (b * h + sl) * w + jl
                    p1 = p0 + 1
                else:
                    p0 = (b * h + jl) * w + sl
                    p1 = p0 + w
                pin, pout = (p1, p0) if inside_is_1 else (p0, p1)
                ze = z0 + t * (z1 - z0)
                if not (np.isfinite(zbuf[pin]) and zbuf[pout] > ze):
                    continue
                frac = cross - j0
                d = one - frac if inside_is_1 else frac
                if d == half:
                    continue
                if not backward:
                    if d > half:
                        a = d - half
                        for c in range(C):
                            out[pout, c] += a * (color[pin, c] - color[pout, c])
                    else:
                        a = half - d
                        for c in range(C):
                            out[pin, c] += a * (color[pout, c] - color[pin, c])
                    continue
                # backward: the share's gradient in the colours and in d, then d's in the crossing's position
                gd = zero
                if d > half:
                    a = d - half
                    for c in range(C):
                        g = gout[pout, c]
                        gcolor[pin, c] += a * g
                        gcolor[pout, c] -= a * g
                        gd += g * (color[pin, c] - color[pout, c])
                else:
                    a = half - d
                    for c in range(C):
                        g = gout[pin, c]
                        gcolor[pout, c] += a * g
                        gcolor[pin, c] -= a * g
                        gd -= g * (color[pout, c] - color[pin, c])
                gcross = -gd if inside_is_1 else gd
                # cross = O0 + t (O1 - O0), t = (s - A0) / (A1 - A0)
                dt = gcross * (O1 - O0)
                gO0, gO1 = gcross * (one - t), gcross * t
                gA0, gA1 = dt * (t - one) / den, -dt * t / den
                if steep:
                    gx[b, i0] += gO0
                    gx[b, i1] += gO1
                    gy[b, i0] += gA0
                    gy[b, i1] += gA1
                else:
                    gy[b, i0] += gO0
                    gy[b, i1] += gO1
                    gx[b, i0] += gA0
                    gx[b, i1] += gA1


def _np(t: Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


class _Antialias(torch.autograd.Function):
    @staticmethod
    def forward(ctx, color: Tensor, x: Tensor, y: Tensor, z: Tensor, wc: Tensor, area: Tensor, zbuf: Tensor,
                topology: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        B, h, w, C = color.shape
        col = _np(color.float()).reshape(-1, C)
        out = col.copy()
        static = (_np(z.float()), _np(wc.float()), _np(area.float()), *(_np(t.long()) for t in topology),
                  _np(zbuf.float()), col, h, w)
        none = np.zeros((0, C), np.float32)
        over_range(_walk, B, (_np(x.float()), _np(y.float()), *static, none, out, none,
                              np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)))
        ctx.static, ctx.xy = static, (x.detach(), y.detach())
        return torch.from_numpy(out).view(B, h, w, C).to(color.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, y = ctx.xy
        B, C = x.shape[0], ctx.static[-3].shape[1]
        g = _np(grad.float()).reshape(-1, C)
        gcolor = g.copy()
        gx, gy = np.zeros(x.shape, np.float32), np.zeros(x.shape, np.float32)
        over_range(_walk, B, (_np(x.float()), _np(y.float()), *ctx.static, g, np.zeros((0, C), np.float32), gcolor,
                              gx, gy))
        return (torch.from_numpy(gcolor).view(grad.shape).to(grad.dtype), torch.from_numpy(gx).to(x.dtype),
                torch.from_numpy(gy).to(y.dtype), None, None, None, None, None)


def antialias(color: Tensor, zbuf: Tensor, pos: Tensor, tri: Tensor, topology: tuple[Tensor, Tensor, Tensor],
              area: Tensor) -> Tensor:
    """``_torch_aa.antialias`` (compacted crossings) on the CPU: color (B, H, W, C), zbuf (B * H * W,), pos
    (B, V, 4) clip, tri (F, 3), topology from ``edge_topology``, area (B, F) ``screen_area``; differentiable in color
    and pos."""
    h, w = color.shape[1:3]
    x, y, z = _screen(pos, (h, w))
    return _Antialias.apply(color, x, y, z.detach(), pos[..., 3].detach(), area.detach(), zbuf.detach(), topology)
