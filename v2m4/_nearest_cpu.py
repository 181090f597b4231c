"""Exact nearest neighbours between point sets on the CPU, compiled (numba): a uniform grid per row, searched in
shells of cells around each query until no nearer point can remain.

Why not a k-d tree: the fit asks this of ~10 rows of 1,500-5,000 surface samples every step, where scipy's tree
spends about a microsecond a query; surface samples fill a grid evenly, and a shell search reads a few dozen
points a query. Exact: a shell k cells out is at least k - 1 cell widths away from any point of the query's cell,
so the search stops once the best distance found is within that.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ._compiled import available, over_rows

__all__ = ["available", "nearest"]


def _kernel(q, p, out):  # pragma: no cover - compiled; tested through nearest
    """q (R, N, 3), p (R, M, 3) float64 -> out (R, N) int64 written in place: row r's index in p[r] of the point
    nearest each q[r, i]."""
    R, N, M = q.shape[0], q.shape[1], p.shape[1]
    for r in range(R):
        lo = np.empty(3)
        hi = np.empty(3)
        for a in range(3):
            lo[a] = min(q[r, :, a].min(), p[r, :, a].min())
            hi[a] = max(q[r, :, a].max(), p[r, :, a].max())
        ext = hi - lo
        # cells of about two of p's points each, were p spread over a surface as large as half the box's
        half_area = ext[0] * ext[1] + ext[1] * ext[2] + ext[2] * ext[0]
        # and never more cells than four per point, whatever the spread (a volume of points, a few far outliers)
        h = max(np.sqrt(2.0 * half_area / max(M, 1)), (ext[0] * ext[1] * ext[2] / (4.0 * M)) ** (1.0 / 3.0),
                ext.max() / 256.0, 1e-12)
        n0, n1, n2 = int(ext[0] / h) + 1, int(ext[1] / h) + 1, int(ext[2] / h) + 1
        cell = np.empty(M, np.int64)
        count = np.zeros(n0 * n1 * n2 + 1, np.int64)
        for j in range(M):
            c0 = min(int((p[r, j, 0] - lo[0]) / h), n0 - 1)
            c1 = min(int((p[r, j, 1] - lo[1]) / h), n1 - 1)
            c2 = min(int((p[r, j, 2] - lo[2]) / h), n2 - 1)
            cell[j] = (c0 * n1 + c1) * n2 + c2
            count[cell[j] + 1] += 1
        start = np.cumsum(count)  # points of cell c: order[start[c]:start[c + 1]]
        fill = start[:-1].copy()
        order = np.empty(M, np.int64)
        for j in range(M):
            order[fill[cell[j]]] = j
            fill[cell[j]] += 1
        top = max(n0, n1, n2)
        for i in range(N):
            x, y, z = q[r, i, 0], q[r, i, 1], q[r, i, 2]
            c0 = min(int((x - lo[0]) / h), n0 - 1)
            c1 = min(int((y - lo[1]) / h), n1 - 1)
            c2 = min(int((z - lo[2]) / h), n2 - 1)
            best, arg = np.inf, -1
            for k in range(top + 1):
                for d0 in range(-k, k + 1):
                    a0 = c0 + d0
                    if a0 < 0 or a0 >= n0:
                        continue
                    for d1 in range(-k, k + 1):
                        a1 = c1 + d1
                        if a1 < 0 or a1 >= n1:
                            continue
                        edge = abs(d0) == k or abs(d1) == k
                        step = 1 if edge else 2 * k  # inside the shell's faces only its two ends lie on it
                        d2 = -k
                        while d2 <= k:
                            a2 = c2 + d2
                            if 0 <= a2 < n2:
                                c = (a0 * n1 + a1) * n2 + a2
                                for s in range(start[c], start[c + 1]):
                                    j = order[s]
                                    dx, dy, dz = p[r, j, 0] - x, p[r, j, 1] - y, p[r, j, 2] - z
                                    d = dx * dx + dy * dy + dz * dz
                                    if d < best:
                                        best, arg = d, j
                            d2 += step if step > 0 else 1
                # every cell of the next shell is at least k cell widths away
                if arg >= 0 and best <= (k * h) * (k * h):
                    break
            out[r, i] = arg


def nearest(q: Tensor, p: Tensor) -> Tensor:
    """q (R, N, 3), p (R, M, 3) CPU tensors (M >= 1) -> (R, N) int64: in each row, the index in p of the point
    nearest each point of q. Rows are split over threads (``_compiled.over_rows``)."""
    # numpy's conversion: torch's runs on its intra-op threads, which cost more than the copy on a busy machine
    qa = np.ascontiguousarray(q.detach().numpy(), dtype=np.float64)
    pa = np.ascontiguousarray(p.detach().numpy(), dtype=np.float64)
    out = np.empty(qa.shape[:2], np.int64)
    over_rows(_kernel, [qa, pa], (), out)
    return torch.from_numpy(out)
