"""The CPU's visibility kernel, compiled (numba): the z-buffer of ``_torch.visibility`` as one loop per view.

Why: on the CPU the tensor rasteriser's cost is the fixed price of each of its window groups' ~25 tensor
operations (a few dozen groups a call), not the arithmetic; a loop over each triangle's box pays none of it. The
coverage rule is the same (vertices snapped to 1/16 pixel, exact edge functions, the same fill rule), so both give
the same pixels to the same triangles; depth is interpolated in float64 here (float32 in the tensor rasteriser for
small triangles), so where two surfaces meet within a float32 step of depth the nearer may differ. Views are split
over a thread pool (``_compiled.over_rows``).

Without numba, ``available()`` is False and the tensor rasteriser does the work.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .._compiled import available, over_rows
from ._torch import SUBPIXEL, _snap

__all__ = ["available", "visibility"]


def _kernel(sx, sy, z, wc, tri, h, w, out):  # pragma: no cover - compiled; tested through visibility
    """sx, sy (B, V) float32 snapped subpixel positions, z (B, V) z_ndc, wc (B, V) clip w, tri (F, 3) int64 ->
    out (B, H * W) int64, -1 on entry, written in place: the visible triangle of each pixel, -1 where none."""
    B, F = sx.shape[0], tri.shape[0]
    S = float(SUBPIXEL)
    zbuf = np.empty(h * w, np.float32)
    for b in range(B):
        zbuf[:] = np.inf
        for f in range(F):
            i0, i1, i2 = tri[f, 0], tri[f, 1], tri[f, 2]
            if min(wc[b, i0], wc[b, i1], wc[b, i2]) <= 1e-8:  # behind the eye: dropped, as the tensor rasteriser
                continue
            z0, z1, z2 = np.float64(z[b, i0]), np.float64(z[b, i1]), np.float64(z[b, i2])
            if max(z0, z1, z2) < -1 or min(z0, z1, z2) > 1:
                continue
            x0, x1, x2 = np.float64(sx[b, i0]), np.float64(sx[b, i1]), np.float64(sx[b, i2])
            y0, y1, y2 = np.float64(sy[b, i0]), np.float64(sy[b, i1]), np.float64(sy[b, i2])
            # the range of pixel centres inside the box (``_torch._pixel_box``)
            xmin = min(max(np.ceil(min(x0, x1, x2) / S), 0.0), float(w))
            xmax = min(max(np.floor(max(x0, x1, x2) / S), -1.0), w - 1.0)
            ymin = min(max(np.ceil(min(y0, y1, y2) / S), 0.0), float(h))
            ymax = min(max(np.floor(max(y0, y1, y2) / S), -1.0), h - 1.0)
            if xmax < xmin or ymax < ymin:
                continue
            # ``_torch._setup``, relative to the box's first centre: integers, exact in float64
            x0, x1, x2 = x0 - S * xmin, x1 - S * xmin, x2 - S * xmin
            y0, y1, y2 = y0 - S * ymin, y1 - S * ymin, y2 - S * ymin
            area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
            if area == 0:
                continue
            sg = 1.0 if area > 0 else -1.0
            # edge i is opposite corner i, from corner i+1 to i+2 (oriented by the winding's sign)
            dx0, dy0 = (x2 - x1) * sg, (y2 - y1) * sg
            dx1, dy1 = (x0 - x2) * sg, (y0 - y2) * sg
            dx2, dy2 = (x1 - x0) * sg, (y1 - y0) * sg
            e0 = dy0 * x1 - dx0 * y1
            e1 = dy1 * x2 - dx1 * y2
            e2 = dy2 * x0 - dx2 * y0
            inv = 1.0 / abs(area)
            za = -(dy0 * z0 + dy1 * z1 + dy2 * z2) * inv
            zb = (dx0 * z0 + dx1 * z1 + dx2 * z2) * inv
            zc = (e0 * z0 + e1 * z1 + e2 * z2) * inv
            # fill rule: a centre exactly on an edge is inside when the edge points down, or left if flat; the
            # edge functions are integers, so "e > 0 or (e == 0 and tie)" is "e - (not tie) >= 0"
            c0 = e0 if (dy0 > 0 or (dy0 == 0 and dx0 < 0)) else e0 - 1.0
            c1 = e1 if (dy1 > 0 or (dy1 == 0 and dx1 < 0)) else e1 - 1.0
            c2 = e2 if (dy2 > 0 or (dy2 == 0 and dx2 < 0)) else e2 - 1.0
            px0, py0 = int(xmin), int(ymin)
            for oy in range(int(ymax - ymin) + 1):
                qy = S * oy
                r0, r1, r2 = c0 + dx0 * qy, c1 + dx1 * qy, c2 + dx2 * qy
                dr = zb * qy + zc
                row = (py0 + oy) * w + px0
                for ox in range(int(xmax - xmin) + 1):
                    qx = S * ox
                    if r0 - dy0 * qx < 0 or r1 - dy1 * qx < 0 or r2 - dy2 * qx < 0:
                        continue
                    d = za * qx + dr
                    if d < -1.0 or d > 1.0:
                        continue
                    # the tensor rasteriser's key: depth in [0, 1] as float32, ties to the lower triangle id
                    d01 = np.float32((d + 1.0) * 0.5)
                    p = row + ox
                    if d01 < zbuf[p] or (d01 == zbuf[p] and f < out[b, p]):
                        zbuf[p] = d01
                        out[b, p] = f


@torch.no_grad()
def visibility(pos: Tensor, tri: Tensor, resolution: tuple[int, int]) -> Tensor:
    """``_torch.visibility`` on CPU tensors: pos (B, V, 4) clip, tri (F, 3) -> triangle id (B, H, W) int64, -1 where
    nothing is visible."""
    h, w = resolution
    B = pos.shape[0]
    p = pos.detach().float()
    sx, sy = _snap(p, resolution)
    views = [t.contiguous().numpy() for t in (sx, sy, p[..., 2] / p[..., 3], p[..., 3])]
    out = np.full((B, h * w), -1, np.int64)
    over_rows(_kernel, views, (tri.detach().to(torch.int64).contiguous().numpy(), h, w), out)
    return torch.from_numpy(out).view(B, h, w)
