"""Fragments with static shapes: every pixel of a batch, dense, its visible triangle given beforehand. What a CUDA
graph can capture (no compaction, so no host synchronisation); ``render_visible`` shades them."""

from __future__ import annotations

import torch
from torch import Tensor

from ._torch import _Barycentrics, _bilinear, _gather, _scatter_dense


class VisibleFragments:
    """The visible pixels of a batch, their triangles given beforehand, in a fixed number of rows: the ``Fragments``
    methods with static shapes throughout (what a CUDA graph can capture: no host synchronisation). Visibility
    comes from any rasteriser; the barycentrics are recomputed here, differentiably, from pos.

    pos (B, V, 4) clip, tri (F, 3) int64, tri_id (B, H, W) int64 visible face or -1. pixels: rows for the covered
    pixels, in pixel order (at least their number, which the caller knows from tri_id; covered pixels beyond it
    are dropped); None: one row per pixel of the batch, background included.
    """

    # a triangle around every pixel centre, for the rows that hold no covered pixel: their barycentrics are
    # computed and discarded, and must stay finite so that a zero gradient times their derivatives stays zero
    _SAFE = ((-3.0, -3.0, 0.0, 1.0), (3.0, -3.0, 0.0, 1.0), (0.0, 3.0, 0.0, 1.0))

    def __init__(self, pos: Tensor, tri: Tensor, tri_id: Tensor, pixels: int | None = None):
        B, h, w = tri_id.shape
        n = B * h * w
        dev = pos.device
        self.shape, self.tri_id_, self.n = (B, h, w), tri_id, n
        flat = tri_id.reshape(-1)
        cov = flat >= 0
        self.covered = cov.view(B, h, w).to(pos.dtype)
        if pixels is None:
            pix, valid = torch.arange(n, device=dev), cov
            self.slot = None
        else:
            # covered pixels into the first rows, in order, by a prefix sum and a scatter (no host synchronisation);
            # everything else goes to one spare row, dropped
            rank = torch.cumsum(cov, 0) - 1
            to = torch.where(cov & (rank < pixels), rank, pixels)
            pix = torch.full((pixels + 1,), n, dtype=torch.int64, device=dev)
            pix = pix.scatter(0, to, torch.arange(n, device=dev))[:pixels]
            valid = pix < n
            self.slot = torch.where(valid, pix, n)  # the image row each row is written to (n: a spare, dropped)
            pix = torch.where(valid, pix, torch.arange(pixels, device=dev) % n)
        self.valid = valid
        # a row without a covered pixel reads some face, its values discarded; a different one for each row,
        # because the gathers' backward adds (zeros) into the faces' vertices, and on a GPU millions of atomic adds
        # into one face's three vertices queue up on them
        self.face = torch.where(valid, flat[pix], pix % tri.shape[0])
        self.view = pix // (h * w)
        q = pix % (h * w)
        ndc_x = (2 * (q % w) + 1).to(pos.dtype) / w - 1
        ndc_y = (2 * (q // w) + 1).to(pos.dtype) / h - 1
        p = _gather(pos.reshape(-1, 4), self.view[:, None] * pos.shape[1] + tri[self.face])  # (N, 3, 4)
        safe = p.new_zeros(3, 4)  # written by fills, not copied from the host (a CUDA graph captures no copy)
        for i, row in enumerate(self._SAFE):
            for j, v in enumerate(row):
                if v:
                    safe[i, j].fill_(v)
        p = torch.where(valid[:, None, None], p, safe)
        self.bary, self.z = _Barycentrics.apply(p, ndc_x, ndc_y)

    def coverage(self) -> Tensor:
        return self.covered

    def ones(self) -> Tensor:
        return self.valid.to(self.z.dtype)[:, None]

    def full(self, channels: int, value: float) -> Tensor:
        return self.ones().expand(-1, channels) * value

    def interpolate(self, attr: Tensor, tri: Tensor) -> Tensor:
        """attr (V, C) or (B, V, C) -> (N, C) one per row (rows without a covered pixel: arbitrary)."""
        C = attr.shape[-1]
        corners = tri[self.face]
        a = _gather(attr, corners) if attr.ndim == 2 else \
            _gather(attr.reshape(-1, C), self.view[:, None] * attr.shape[1] + corners)
        return (self.bary[..., None] * a).sum(1)

    def texture(self, tex: Tensor, uv: Tensor) -> Tensor:
        return _bilinear(tex if tex.ndim == 4 else tex[None], uv, None)

    def dense(self, vals: Tensor, background: float | Tensor = 0.0) -> Tensor:
        """vals (N, C) one per row -> (B, H, W, C), ``background`` where nothing is covered."""
        if self.slot is None:
            img = vals.view(*self.shape, -1)
        else:
            img = _scatter_dense(self.n + 1, self.slot, vals)[:self.n].view(*self.shape, -1)
        bg = background.to(vals) if isinstance(background, Tensor) else float(background)
        return torch.where(self.covered[..., None] > 0, img, bg)

    def rows(self, vals: Tensor) -> Tensor:
        """vals (N, C) one per row -> the same, 0 in rows that hold no covered pixel."""
        return torch.where(self.valid[:, None], vals, 0.0)

    def row_pixels(self) -> Tensor:
        """(N,) each row's pixel as a flat index into (B * H * W); B * H * W for a row that holds none."""
        if self.slot is not None:
            return self.slot
        return torch.where(self.valid, torch.arange(self.n, device=self.valid.device), self.n)

    def guard_slivers(self, sliver: Tensor) -> "VisibleFragments":
        s = sliver.reshape(-1).index_select(0, self.view * sliver.shape[1] + self.face)
        out = VisibleFragments.__new__(VisibleFragments)
        out.__dict__.update(self.__dict__, bary=torch.where(s[:, None], self.bary.detach(), self.bary))
        return out

    def depth_buffer(self) -> Tensor:
        z = torch.where(self.valid, self.z.detach(), float("inf"))
        if self.slot is None:
            return z
        return torch.full((self.n + 1,), float("inf"), dtype=z.dtype, device=z.device).index_copy(
            0, self.slot, z)[:self.n]

    def tri_id(self) -> Tensor:
        return self.tri_id_
