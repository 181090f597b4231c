"""Exact nearest neighbours between point sets on a GPU, one fused kernel (Triton): each program holds a block of
queries and walks the other set in blocks, keeping each query's best distance and index in registers.

Why not the distance matrix (``geometry._nearest_dense``): for the fit's rows (about ten of 5,000 surface samples
against as many) the matrix is hundreds of millions of entries, written by a product and read again by an
argmin, a pass of memory each way for what is a few flops an entry. Here nothing but the indices leaves the chip.
The differences are taken point by point, not by the expansion |a|² - 2 a.b + |b|², so no cancellation either.
Measured inside the fit on an H100 (docs/pipeline.md, "Registration"): an argmin per block of candidates made the
kernel as slow as the matrix; keeping a best per lane and reducing once after the walk took the step's GPU time from
16.9 to 13.4 ms. The blocks (64 x 64, 4 warps) were not tuned further.
"""

from __future__ import annotations

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - the dense path serves where Triton is not installed
    triton = None

__all__ = ["available", "nearest"]


def available(x: Tensor) -> bool:
    """True where ``nearest`` runs: Triton installed and x a float32 CUDA tensor."""
    return triton is not None and x.is_cuda and x.dtype == torch.float32


if triton is not None:
    @triton.jit
    def _kernel(q_ptr, p_ptr, out_ptr, N, M, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr):
        # program (i, r): queries i * BLOCK_N ... of row r; q (R, N, 3), p (R, M, 3) contiguous, out (R, N) int64
        r = tl.program_id(1)
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        live = rows < N
        q = q_ptr + r * N * 3 + rows * 3
        qx = tl.load(q, mask=live, other=0.0)
        qy = tl.load(q + 1, mask=live, other=0.0)
        qz = tl.load(q + 2, mask=live, other=0.0)
        # the best so far per (query, lane of the block): the walk is compares and selects only, and the one
        # reduction over lanes comes after it
        best = tl.full((BLOCK_N, BLOCK_M), float("inf"), tl.float32)
        arg = tl.zeros((BLOCK_N, BLOCK_M), tl.int32)
        for start in range(0, M, BLOCK_M):
            cols = start + tl.arange(0, BLOCK_M)
            there = cols < M
            p = p_ptr + r * M * 3 + cols * 3
            dx = qx[:, None] - tl.load(p, mask=there, other=0.0)[None, :]
            dy = qy[:, None] - tl.load(p + 1, mask=there, other=0.0)[None, :]
            dz = qz[:, None] - tl.load(p + 2, mask=there, other=0.0)[None, :]
            d = tl.where(there[None, :], dx * dx + dy * dy + dz * dz, float("inf"))
            better = d < best
            best = tl.where(better, d, best)
            arg = tl.where(better, cols[None, :], arg)
        lane = tl.argmin(best, axis=1)
        pick = tl.arange(0, BLOCK_M)[None, :] == lane[:, None]
        arg = tl.sum(tl.where(pick, arg, 0), axis=1)
        tl.store(out_ptr + r * N + rows, arg.to(tl.int64), mask=live)


def nearest(q: Tensor, p: Tensor) -> Tensor:
    """q (R, N, 3), p (R, M, 3) float32 on the GPU (M > 0) -> (R, N) int64: row r's index in p[r] of the point
    nearest each q[r, i]. Equally near points: either may be chosen."""
    R, N, M = q.shape[0], q.shape[1], p.shape[1]
    out = torch.empty(R, N, dtype=torch.int64, device=q.device)
    if R == 0 or N == 0:
        return out
    grid = (triton.cdiv(N, 64), R)
    with torch.cuda.device(q.device):  # Triton launches on the current device, which need not be the tensors'
        _kernel[grid](q.contiguous(), p.contiguous(), out, N, M, BLOCK_N=64, BLOCK_M=64, num_warps=4)
    return out
