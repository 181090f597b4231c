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


def _forward(b0, b1, x, y, z, wc, area, edges, edge_faces, opposite, zbuf, color, h, w,
             out):  # pragma: no cover - compiled; tested through antialias
    """Views [b0, b1). x, y, z, wc (B, V) float32 pixel coordinates, z_ndc and clip w; area (B, F) signed screen
    area; edges, edge_faces, opposite (E, 2) int64 (``_torch_aa.edge_topology``); zbuf (B * H * W,) float32;
    color (B * H * W, C) float32. out (B * H * W, C), a copy of color on entry, gets each crossing's shares: the
    outside pixel (d - 1/2)+ of the inside colour, the inside one (1/2 - d)+ of the outside colour.

    The walk is ``_torch_aa``'s: an edge counts where both ends are in front of the eye and it bounds the mesh or
    its two faces turn different ways; it crosses rows (steep) or columns [lo, hi); each crossing sits between
    two pixel centres, inside and outside, d from the inside one, and counts where both are in the image, the
    inside one is covered and the outside one lies behind the edge. Kept in one loop with ``_backward``'s twin:
    called helpers made the kernels several times slower."""
    half, one, zero = np.float32(0.5), np.float32(1.0), np.float32(0.0)
    for b in range(b0, b1):
        for e in range(edges.shape[0]):
            i0, i1, fa, fb = edges[e, 0], edges[e, 1], edge_faces[e, 0], edge_faces[e, 1]
            if not (wc[b, i0] > 1e-8 and wc[b, i1] > 1e-8) or (fb >= 0 and (area[b, fa] > 0) == (area[b, fb] > 0)):
                continue
            ax, ay, bx, by, oc = x[b, i0], y[b, i0], x[b, i1], y[b, i1], opposite[e, 0]
            steep = abs(by - ay) >= abs(bx - ax)
            nx, ny = -(by - ay), bx - ax
            side = np.sign(nx * (x[b, oc] - ax) + ny * (y[b, oc] - ay))
            if steep:
                lim, lim_o, A0, A1, O0, O1, inside_is_1 = h, w, ay, by, ax, bx, np.sign(nx) == side
            else:
                lim, lim_o, A0, A1, O0, O1, inside_is_1 = w, h, ax, bx, ay, by, np.sign(ny) == side
            s, hi = max(np.ceil(min(A0, A1)), zero), min(np.ceil(max(A0, A1)), np.float32(lim))
            while s < hi:
                t = (s - A0) / (A1 - A0)
                cross = O0 + t * (O1 - O0)
                j0 = np.floor(cross)
                sl, s = int(s), s + one
                if not (j0 >= zero and j0 + one < np.float32(lim_o)):
                    continue
                p0 = (b * h + sl) * w + int(j0) if steep else (b * h + int(j0)) * w + sl
                p1 = p0 + 1 if steep else p0 + w
                pin, pout = (p1, p0) if inside_is_1 else (p0, p1)
                if not (np.isfinite(zbuf[pin]) and zbuf[pout] > z[b, i0] + t * (z[b, i1] - z[b, i0])):
                    continue
                d = one - (cross - j0) if inside_is_1 else cross - j0
                for c in range(color.shape[1]):
                    if d > half:
                        out[pout, c] += (d - half) * (color[pin, c] - color[pout, c])
                    elif d < half:
                        out[pin, c] += (half - d) * (color[pout, c] - color[pin, c])


def _backward(b0, b1, x, y, z, wc, area, edges, edge_faces, opposite, zbuf, color, h, w, gout,
              gcolor, gx, gy):  # pragma: no cover - compiled; tested through antialias
    """The gradients of ``_forward``'s output against gout (B * H * W, C), walking the same crossings: gcolor (a
    copy of gout on entry) and gx, gy (B, V) (zero on entry) get each crossing's share. At d = 1/2 both sides
    pass their gradient in d, as the tensor walk's clamps do."""
    half, one, zero = np.float32(0.5), np.float32(1.0), np.float32(0.0)
    for b in range(b0, b1):
        for e in range(edges.shape[0]):
            i0, i1, fa, fb = edges[e, 0], edges[e, 1], edge_faces[e, 0], edge_faces[e, 1]
            if not (wc[b, i0] > 1e-8 and wc[b, i1] > 1e-8) or (fb >= 0 and (area[b, fa] > 0) == (area[b, fb] > 0)):
                continue
            ax, ay, bx, by, oc = x[b, i0], y[b, i0], x[b, i1], y[b, i1], opposite[e, 0]
            steep = abs(by - ay) >= abs(bx - ax)
            nx, ny = -(by - ay), bx - ax
            side = np.sign(nx * (x[b, oc] - ax) + ny * (y[b, oc] - ay))
            if steep:
                lim, lim_o, A0, A1, O0, O1, inside_is_1 = h, w, ay, by, ax, bx, np.sign(nx) == side
            else:
                lim, lim_o, A0, A1, O0, O1, inside_is_1 = w, h, ax, bx, ay, by, np.sign(ny) == side
            s, hi = max(np.ceil(min(A0, A1)), zero), min(np.ceil(max(A0, A1)), np.float32(lim))
            while s < hi:
                t = (s - A0) / (A1 - A0)
                cross = O0 + t * (O1 - O0)
                j0 = np.floor(cross)
                sl, s = int(s), s + one
                if not (j0 >= zero and j0 + one < np.float32(lim_o)):
                    continue
                p0 = (b * h + sl) * w + int(j0) if steep else (b * h + int(j0)) * w + sl
                p1 = p0 + 1 if steep else p0 + w
                pin, pout = (p1, p0) if inside_is_1 else (p0, p1)
                if not (np.isfinite(zbuf[pin]) and zbuf[pout] > z[b, i0] + t * (z[b, i1] - z[b, i0])):
                    continue
                d = one - (cross - j0) if inside_is_1 else cross - j0
                gd = zero  # the shares' gradient in d, then d's in the crossing's place
                for c in range(color.shape[1]):
                    diff = color[pin, c] - color[pout, c]
                    if d >= half:
                        gcolor[pin, c] += (d - half) * gout[pout, c]
                        gcolor[pout, c] -= (d - half) * gout[pout, c]
                        gd += gout[pout, c] * diff
                    if d <= half:
                        gcolor[pout, c] += (half - d) * gout[pin, c]
                        gcolor[pin, c] -= (half - d) * gout[pin, c]
                        gd += gout[pin, c] * diff
                g = -gd if inside_is_1 else gd  # cross = O0 + t (O1 - O0), t = (s - A0) / (A1 - A0)
                dt = g * (O1 - O0) / (A1 - A0)
                ga, go = (gy, gx) if steep else (gx, gy)
                go[b, i0] += g * (one - t)
                go[b, i1] += g * t
                ga[b, i0] += dt * (t - one)
                ga[b, i1] -= dt * t


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
        over_range(_forward, B, (_np(x.float()), _np(y.float()), *static, out))
        ctx.static, ctx.xy = static, (x.detach(), y.detach())
        return torch.from_numpy(out).view(B, h, w, C).to(color.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, y = ctx.xy
        B, C = x.shape[0], ctx.static[-3].shape[1]
        g = _np(grad.float()).reshape(-1, C)
        gcolor = g.copy()
        gx, gy = np.zeros(x.shape, np.float32), np.zeros(x.shape, np.float32)
        over_range(_backward, B, (_np(x.float()), _np(y.float()), *ctx.static, g, gcolor, gx, gy))
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
