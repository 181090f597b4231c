"""Pure-PyTorch sparse voxel operations that TRELLIS inference needs from CUDA extensions.

    nbr = neighbour_map(coords, (3, 3, 3))                      # (K, N) input row at each kernel offset, -1: none
    out = submanifold_conv3d(feats, coords, weight, bias)       # spconv.SubMConv3d's result, weight in its layout
    out = varlen_attention(q, k, v, q_lens, kv_lens)            # flash_attn_varlen_func's result, via SDPA

A sparse voxel tensor is feats (N, C) with coords (N, 4) int (batch, x, y, z), as spconv's SparseConvTensor holds
them. A submanifold convolution keeps the active sites: out[p] = bias + sum_k W_k x[p + d * (k - centre)] over the
offsets k whose site is active. It is computed as gather -> matmul -> scatter, one matmul per kernel offset,
with neighbours found by binary search in the sorted keys of the sites (a hash map without a hash table).
"""

from __future__ import annotations

import itertools
import math
import warnings
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

_BITS = 16  # bits per spatial axis in a site key; the batch index takes the 15 above them


def _keys(coords: Tensor) -> tuple[Tensor, Tensor]:
    """(N, 4) int coords -> (N,) int64 keys and (N,) bool "representable" (0 <= x, y, z < 2^16, batch < 2^15)."""
    c = coords.long()
    ok = (c[:, 1:] >= 0).all(1) & (c[:, 1:] < (1 << _BITS)).all(1) & (c[:, 0] >= 0) & (c[:, 0] < (1 << 15))
    c = torch.where(ok[:, None], c, torch.zeros_like(c))
    return (c[:, 0] << (3 * _BITS)) | (c[:, 1] << (2 * _BITS)) | (c[:, 2] << _BITS) | c[:, 3], ok


def kernel_offsets(kernel_size: Sequence[int], dilation: Sequence[int] | int = 1, device=None) -> Tensor:
    """(K, 3) offsets of a kernel, in the order of spconv's weight (out, kx, ky, kz, in): x slowest, z fastest."""
    d = (dilation,) * 3 if isinstance(dilation, int) else tuple(dilation)
    axes = [torch.arange(k, device=device) - k // 2 for k in kernel_size]
    grid = torch.tensor(list(itertools.product(*[a.tolist() for a in axes])), dtype=torch.long, device=device)
    return grid.view(-1, 3) * torch.tensor(d, device=device)


def neighbour_map(coords: Tensor, kernel_size: Sequence[int] = (3, 3, 3), dilation: Sequence[int] | int = 1) -> Tensor:
    """(N, 4) active sites -> (K, N) int64: the row of the site at p + offset_k for every site p, -1 where that
    site is not active. Computed once per set of sites and reused by every convolution on them."""
    keys, _ = _keys(coords)
    sorted_keys, order = torch.sort(keys)
    offs = kernel_offsets(kernel_size, dilation, coords.device)
    q = coords.long()[None, :, :].repeat(len(offs), 1, 1)
    q[..., 1:] += offs[:, None, :]
    qk, ok = _keys(q.view(-1, 4))
    pos = torch.searchsorted(sorted_keys, qk).clamp_max(max(len(keys) - 1, 0))
    hit = ok & (sorted_keys[pos] == qk) if len(keys) else torch.zeros_like(ok)
    return torch.where(hit, order[pos], torch.full_like(pos, -1)).view(len(offs), -1)


def submanifold_conv3d(feats: Tensor, coords: Tensor, weight: Tensor, bias: Tensor | None = None, *,
                       dilation: Sequence[int] | int = 1, neighbours: Tensor | None = None) -> Tensor:
    """feats (N, Cin), coords (N, 4), weight (Cout, kx, ky, kz, Cin) as spconv.SubMConv3d stores it -> (N, Cout).

    A 1 x 1 x 1 kernel is a plain matmul, and spconv (2.3, measured against it) then reads the memory of its
    (Cout, 1, 1, 1, Cin) weight as a (Cin, Cout) matrix, not as (Cout, Cin): weights trained with spconv (TRELLIS's
    skip connections) only give the same result when read the same way, so this does too.
    neighbours: neighbour_map(coords, kernel, dilation), to reuse between layers.
    """
    cout, kx, ky, kz, cin = weight.shape
    if feats.shape[1] != cin:
        raise ValueError(f"feats have {feats.shape[1]} channels, the weight expects {cin}")
    w = weight.to(feats.dtype)
    if kx * ky * kz == 1:
        out = feats @ w.reshape(cin, cout)
    else:
        nbr = neighbour_map(coords, (kx, ky, kz), dilation) if neighbours is None else neighbours
        wk = w.reshape(cout, -1, cin)  # (Cout, K, Cin), K in kernel_offsets order
        out = feats.new_zeros(feats.shape[0], cout)
        for k in range(nbr.shape[0]):
            src = nbr[k]
            rows = (src >= 0).nonzero()[:, 0]
            if rows.numel() == 0:
                continue
            # gather -> matmul -> scatter; index_add keeps it differentiable in feats and weight
            out = out.index_add(0, rows, feats.index_select(0, src[rows]) @ wk[:, k].T)
    if bias is not None:
        out = out + bias.to(out.dtype)
    return out


def varlen_attention(q: Tensor, k: Tensor, v: Tensor, q_lens: Sequence[int], kv_lens: Sequence[int], *,
                     scale: float | None = None) -> Tensor:
    """Attention within each of several packed sequences: q (Tq, H, C), k (Tk, H, C), v (Tk, H, Cv) hold the
    sequences one after another (lengths q_lens, kv_lens) -> (Tq, H, Cv). What flash_attn's varlen functions and
    xformers' BlockDiagonalMask compute, through torch's scaled_dot_product_attention.

    One call either way: several sequences go in as jagged nested tensors, which SDPA runs with its fused
    kernels (flash on a GPU), so the cost is each sequence's own. Padding them to the longest with a key mask
    instead forces SDPA's unfused path, whose time grows faster than the batch (measured: TRELLIS's
    structured-latent flow 5.8x slower at 4 sequences than at 1).
    """
    q_lens, kv_lens = [int(x) for x in q_lens], [int(x) for x in kv_lens]
    if len(q_lens) != len(kv_lens):
        raise ValueError(f"{len(q_lens)} query sequences but {len(kv_lens)} key sequences")
    if min(kv_lens, default=1) < 1:
        raise ValueError("every sequence needs at least one key")
    scale = scale if scale is not None else 1 / math.sqrt(q.shape[-1])
    if len(q_lens) == 1:
        out = F.scaled_dot_product_attention(q.transpose(0, 1)[None], k.transpose(0, 1)[None],
                                             v.transpose(0, 1)[None], scale=scale)
        return out[0].transpose(0, 1)

    def jagged(x: Tensor, lens: list[int]) -> Tensor:  # (T, H, C) -> (B, H, ragged, C)
        x = x.contiguous()  # a packed qkv's views are not, and jagged SDPA has no kernel for them
        offsets = torch.zeros(len(lens) + 1, dtype=torch.long)
        offsets[1:] = torch.as_tensor(lens).cumsum(0)
        return torch.nested.nested_tensor_from_jagged(x, offsets.to(x.device)).transpose(1, 2)

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*nested tensors is in prototype.*")
        out = F.scaled_dot_product_attention(jagged(q, q_lens), jagged(k, kv_lens), jagged(v, kv_lens), scale=scale)
    return out.transpose(1, 2).values()
