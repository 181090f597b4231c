"""Pure-PyTorch kernels of the four rendering primitives; any device, no compiled code.

Visibility is found without gradients (a z-buffer built by one scatter-min over every (triangle, pixel) pair of
each triangle's bounding box); everything that should carry gradients (barycentrics, attributes, texture lookups,
silhouette edges) is then recomputed differentiably on the visible pixels only. All loops are over tensors, never
over views, triangles or pixels in Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from ..errors import V2M4Error

_BIG = torch.iinfo(torch.int64).max


class _RowGather(torch.autograd.Function):
    """src (N, ...) float32 rows of a multiple of 16 bytes, gathered on CUDA as 16-byte (complex128) elements.

    Why: torch's CUDA gather of 16-byte-aligned float rows (index_select, advanced indexing and embedding all
    reach the same vectorised kernel) ran 80x slower than the element-wise path on an H200 (torch 2.11: 73.6 ms
    vs 0.9 ms for 122M rows of 4 floats), and this gather is the largest step of a batched render.
    """

    @staticmethod
    def forward(ctx, src: Tensor, idx: Tensor) -> Tensor:
        k = src[0].numel() // 4  # 16-byte elements per row
        flat = src.reshape(-1).view(torch.complex128)
        ii = idx if k == 1 else (idx[:, None] * k + torch.arange(k, device=idx.device)).reshape(-1)
        ctx.save_for_backward(idx)
        ctx.src_shape = src.shape
        return flat.index_select(0, ii).view(torch.float32).view(idx.shape[0], *src.shape[1:])

    @staticmethod
    def backward(ctx, grad: Tensor):
        (idx,) = ctx.saved_tensors
        out = grad.new_zeros(ctx.src_shape)
        return out.index_add_(0, idx, grad.contiguous()), None


def _gather(src: Tensor, idx: Tensor) -> Tensor:
    """src (N, ...) rows at idx (any shape) -> (*idx.shape, ...).

    index_select's backward is index_add, which on the CPU is far faster than the accumulating index_put that
    advanced indexing (src[idx]) uses; on CUDA rows of 16-byte multiples take _RowGather.
    """
    flat_idx = idx.reshape(-1)
    if src.is_cuda and src.dtype == torch.float32 and src.is_contiguous() and src[0].numel() % 4 == 0 and src.shape[0]:
        out = _RowGather.apply(src, flat_idx)
    else:
        out = src.index_select(0, flat_idx)
    return out.view(*idx.shape, *src.shape[1:])


class _ScatterRows(torch.autograd.Function):
    """A zero (n, ...) tensor with rows idx set to vals; its backward gathers through _gather."""

    @staticmethod
    def forward(ctx, n: int, idx: Tensor, vals: Tensor) -> Tensor:
        ctx.save_for_backward(idx)
        out = vals.new_zeros((n,) + tuple(vals.shape[1:]))
        return out.index_copy_(0, idx, vals)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (idx,) = ctx.saved_tensors
        return None, None, _gather(grad.contiguous(), idx)


def _scatter_dense(n: int, idx: Tensor, vals: Tensor) -> Tensor:
    """A zero (n, ...) tensor with rows idx set to vals; differentiable in vals (backward is a gather)."""
    if vals.is_cuda:
        return _ScatterRows.apply(n, idx, vals)
    out = torch.zeros((n,) + tuple(vals.shape[1:]), dtype=vals.dtype, device=vals.device)
    return out.index_copy(0, idx, vals)


def _screen(pos: Tensor, resolution: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
    """Clip (B, V, 4) -> pixel coordinates x, y (B, V) with pixel centres on integers, and z_ndc (B, V)."""
    h, w = resolution
    wc = pos[..., 3]
    x = (pos[..., 0] / wc + 1) * (w / 2) - 0.5
    y = (pos[..., 1] / wc + 1) * (h / 2) - 0.5
    return x, y, pos[..., 2] / wc


SUBPIXEL = 16  # vertex positions snap to 1/16 pixel before the coverage test, as in nvdiffrast's rasteriser


def _snap(pos: Tensor, resolution: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Clip (B, V, 4) -> integer subpixel coordinates (as float) with pixel (i, j)'s centre at (16 j, 16 i).

    Why snap: on integers the edge functions below are exact, so coverage is watertight by construction (every
    pixel centre on a shared edge goes to exactly one side), and it is the same fixed-point grid nvdiffrast
    uses, so the two backends give the same pixels to the same triangles (with float coverage ~2% of the pixels
    of a 20k-face mesh at 256² went to a neighbour, and their barycentric gradients made the backends' vertex
    gradients disagree).
    """
    h, w = resolution
    rw = 1.0 / pos[..., 3]
    lim = float(1 << 26)  # saturate like a float->int conversion; such vertices are far off screen anyway
    sx = torch.round(pos[..., 0] * rw * (w * SUBPIXEL / 2)).clamp(-lim, lim)
    sy = torch.round(pos[..., 1] * rw * (h * SUBPIXEL / 2)).clamp(-lim, lim)
    return sx + (w - 1) * SUBPIXEL / 2, sy + (h - 1) * SUBPIXEL / 2


def _setup(x: list[Tensor], y: list[Tensor], z: list[Tensor], box: Tensor, dtype: torch.dtype) -> Tensor:
    """Per-triangle coverage and depth coefficients, (17, n): edge functions a (0-2), b (3-5), c (6-8), depth plane
    (9-11), first pixel centre x and box width - 1 (12, 13), y and height - 1 (14, 15), snapped area (16).

    x, y, z: three (n,) tensors each, the corners' subpixel x, y and z_ndc; box (4, n) the pixel-centre range
    xmin, xmax, ymin, ymax. Coordinates are taken relative to the box's first pixel centre so that every product
    stays an exactly representable integer in ``dtype``. One row per coefficient (structure of arrays): on the
    CPU, stacking or reducing along a last dimension of 3 or 17 cost several times the arithmetic itself.
    """
    S = SUBPIXEL
    out = torch.empty((17, box.shape[1]), dtype=dtype, device=box.device)  # written in place: no final stack
    xmin, xmax, ymin, ymax = box.to(dtype).unbind(0)
    x = [xi.to(dtype) - S * xmin for xi in x]
    y = [yi.to(dtype) - S * ymin for yi in y]
    z = [zi.to(dtype) for zi in z]
    area = torch.sub((x[1] - x[0]) * (y[2] - y[0]), (x[2] - x[0]) * (y[1] - y[0]), out=out[16])
    sgn = torch.sign(area)
    # edge function of the edge opposite vertex i, e_i = sgn * cross(d_i, p - p_{i+1}) with d_i = p_{i+2} - p_{i+1}:
    # positive inside whatever the winding. Fill rule: a centre exactly on the edge is inside when the oriented
    # direction D = sgn * d_i points down, or left if horizontal; the triangle across a shared edge sees -D.
    a, b, ce = out[0:3], out[3:6], []
    for i in range(3):
        j, k = (i + 1) % 3, (i + 2) % 3
        dx = torch.mul(x[k] - x[j], sgn, out=b[i])
        dy = (y[k] - y[j]) * sgn
        torch.neg(dy, out=a[i])
        ce.append(dy * x[j] - dx * y[j])
        # e is an integer, so "e > 0, or e == 0 on a tie edge" is "e - (not tie) >= 0"
        tie = (dy > 0) | ((dy == 0) & (dx < 0))
        torch.add(ce[i], tie.to(dtype) - 1, out=out[6 + i])
    # e_i / |area| are the screen barycentrics, so the depth plane is sum_i e_i z_i / |area|
    inv = 1 / area.abs().clamp_min(1e-30)
    for r, u in enumerate((a, b, ce)):
        torch.mul(u[0] * z[0] + u[1] * z[1] + u[2] * z[2], inv, out=out[9 + r])
    out[12] = xmin
    torch.sub(xmax, xmin, out=out[13])
    out[14] = ymin
    torch.sub(ymax, ymin, out=out[15])
    return out


def _min3(a: list[Tensor]) -> Tensor:
    return torch.minimum(torch.minimum(a[0], a[1]), a[2])


def _max3(a: list[Tensor]) -> Tensor:
    return torch.maximum(torch.maximum(a[0], a[1]), a[2])


def _pixel_box(xlo: Tensor, xhi: Tensor, ylo: Tensor, yhi: Tensor, resolution: tuple[int, int]) -> list[Tensor]:
    """Subpixel extents (n,) -> [xmin, xmax, ymin, ymax] (n,) the range of pixel centres inside, clamped to the
    image (empty when max < min)."""
    h, w = resolution
    S = SUBPIXEL
    return [(xlo / S).ceil().clamp(0, w), (xhi / S).floor().clamp(-1, w - 1),
            (ylo / S).ceil().clamp(0, h), (yhi / S).floor().clamp(-1, h - 1)]


def _triangle_corners(pos: Tensor, tri: Tensor, resolution: tuple[int, int]) -> list[Tensor]:
    """pos (B, V, 4) clip, tri (F, 3) -> 3 x (B * F, 4): snapped subpixel x, y, z_ndc and w of corner k of every
    (view, triangle), flat index t = b * F + f.

    Corners are gathered as rows of 16 bytes: rows are the fast gather on the CPU (a middle or last dimension is
    several times slower); _gather handles the CUDA case, where 16-byte rows are slow.
    """
    B, V = pos.shape[:2]
    dev = pos.device
    sx, sy = _snap(pos.float(), resolution)
    z = pos[..., 2].float() / pos[..., 3].float()
    comp = torch.stack([sx, sy, z, pos[..., 3].float()], -1).view(B * V, 4)  # per (view, vertex): x, y, z, w
    vid = [(torch.arange(B, device=dev)[:, None] * V + tri[:, k]).view(-1) for k in range(3)]
    return [_gather(comp, vk) for vk in vid]


def _window_sizes(pos: Tensor, faces: int, resolution: tuple[int, int]) -> tuple[list[int], int]:
    """The window extents (pixels, ascending) that triangles are grouped by, and ``exact``: windows up to that
    extent fit their boxes exactly (0: none does).

    Each group costs some 25 tensor operations whatever its size. On the CPU that fixed cost dominates a small
    batch: windows of powers of two were 1.1-2.1x faster than exact shapes up to 8 pixels (64 groups) for 1-48
    views of a 3k-face mesh at 128², and as fast for 8 views of a 20k-face one. On a GPU a large batch is bound
    by memory traffic, where exact shapes up to 8 pixels pay (2000 views of a 20k-face mesh at 256² on an H200:
    0.21 s, 0.30 s with powers of two), and a small one by kernel launches, where every box up to 4 x 4 pixels
    shares one group (64 views: 23 groups -> 4).
    """
    h, w = resolution
    few_launches = pos.is_cuda and pos.shape[0] * faces * 16 <= (1 << 25)
    top = max(h, w) + 1
    exact = 0 if few_launches else 8 if pos.is_cuda else 2
    sizes = list(range(1, exact + 1)) if exact else [4, 8]
    while sizes[-1] < top:
        sizes.append(sizes[-1] * 2)
    return sizes, exact


def _group_by_window(corners: list[Tensor], sizes: list[int], resolution: tuple[int, int]
                     ) -> tuple[Tensor, list[int], list[int]]:
    """corners from _triangle_corners -> (order (n,) int64 the flat (view, triangle) indices of the triangles
    worth testing, sorted by group; keys and counts, one per group in that order).

    A group key is (window index x, window index y, float64 flag) packed as (ix * len(sizes) + iy) * 2 + flag.
    Dropped: triangles whose box holds no pixel centre (most triangles of a dense mesh), a vertex behind the eye
    (w <= 0) or that lie entirely outside the depth range.
    """
    h, w = resolution
    S = SUBPIXEL
    dev = corners[0].device
    lo = torch.minimum(torch.minimum(corners[0], corners[1]), corners[2]).T  # (4, B * F)
    hi = torch.maximum(torch.maximum(corners[0], corners[1]), corners[2]).T
    xmin, xmax, ymin, ymax = _pixel_box(lo[0], hi[0], lo[1], hi[1], resolution)
    keep = (xmax >= xmin) & (ymax >= ymin) & (lo[3] > 1e-8) & (hi[2] >= -1) & (lo[2] <= 1)
    top = max(h, w) + 1
    size_of = torch.tensor(sizes, device=dev)
    lut = torch.searchsorted(size_of, torch.arange(top + 1, device=dev))  # box extent -> window index
    ix = lut[(xmax - xmin + 1).long().clamp(1, top)]
    iy = lut[(ymax - ymin + 1).long().clamp(1, top)]
    # float32 is exact on the integers of the coverage test while triangles span at most ~120 pixels; larger ones
    # (rare in a dense mesh) are set up and tested in float64
    exact64 = (torch.maximum(hi[0] - lo[0], hi[1] - lo[1]) > 120 * S) | (size_of[ix] > 120) | (size_of[iy] > 120)
    # a small integer key per (window shape, precision): sorting int16 keys is 3x faster than int64 on the CPU
    group = torch.where(keep, (ix * len(sizes) + iy) * 2 + exact64.long(), -1).to(torch.int16)
    sorted_group, order = torch.sort(group, stable=True)
    keys, counts = torch.unique_consecutive(sorted_group, return_counts=True)
    keys, counts = keys.tolist(), counts.tolist()
    if keys and keys[0] < 0:  # the dropped triangles sort first
        order = order[counts[0]:]
        keys, counts = keys[1:], counts[1:]
    return order, keys, counts


def _window_keys(co: Tensor, face: Tensor, window: tuple[Tensor, Tensor], masked: bool) -> Tensor:
    """co (17, n, 1) coefficient rows of _setup, face (n, 1), window (ox, oy) (P,) pixel offsets from each box's
    first centre -> (n, P) int64 z-test keys: depth in [0, 1] as float32 bits << 32 | face, _BIG where the
    window pixel is not covered. masked: the window is larger than some boxes, so pixels beyond a box are out."""
    ox, oy = window
    qx = SUBPIXEL * ox  # subpixel offsets from the box's first centre
    qy = SUBPIXEL * oy
    inside = co[6] + co[0] * qx + co[3] * qy >= 0
    for i in (1, 2):
        inside &= co[6 + i] + co[i] * qx + co[3 + i] * qy >= 0
    if masked:
        inside &= (ox <= co[13]) & (oy <= co[15])
    depth = co[9] * qx + co[10] * qy + co[11]
    inside &= (depth >= -1) & (depth <= 1)
    d01 = ((depth.float() + 1) * 0.5).clamp(0, 1)  # float32 bits of a depth in [0, 1] sort as the depth does
    key = (d01.view(torch.int32).long() << 32) | face
    return torch.where(inside, key, _BIG)


def _ztest_group(out: Tensor, coef: Tensor, view: Tensor, face: Tensor, extent: tuple[int, int], *, masked: bool,
                 max_candidates: int, resolution: tuple[int, int]) -> None:
    """Z-test one group into out (B * H * W,) int64 keys, in place: coef (17, n) of triangles whose boxes fit
    a window of extent (wx, wy) pixels, view and face (n,). A dense (triangles, window pixels) coverage and depth
    test per chunk of at most max_candidates pairs, then one scatter-min."""
    h, w = resolution
    wx, wy = extent
    ox = torch.arange(wx, device=coef.device, dtype=coef.dtype).repeat(wy)
    oy = torch.arange(wy, device=coef.device, dtype=coef.dtype).repeat_interleave(wx)
    step = max(1, max_candidates // (wx * wy))
    for c0 in range(0, coef.shape[1], step):
        c1 = min(coef.shape[1], c0 + step)
        co = coef[:, c0:c1, None]
        key = _window_keys(co, face[c0:c1, None], (ox, oy), masked)
        px = (co[12] + ox).long().clamp(max=w - 1)
        py = (co[14] + oy).long().clamp(max=h - 1)
        pix = (view[c0:c1, None] * h + py) * w + px
        out.scatter_reduce_(0, pix.reshape(-1), key.reshape(-1), reduce="amin")


@torch.no_grad()
def visibility(pos: Tensor, tri: Tensor, resolution: tuple[int, int], max_candidates: int) -> Tensor:
    """pos (B, V, 4) clip, tri (F, 3) int64 -> triangle id (B, H, W) int64, -1 where nothing is visible.

    Triangles with a vertex behind the eye (w <= 0) or entirely outside the depth range are dropped: the
    pipeline frames whole objects, so near-plane clipping is not worth its cost here. Coverage is tested on
    vertices snapped to 1/16 pixel with exact edge functions and a fill rule (a pixel centre exactly on an edge
    belongs to the triangle on one fixed side of it), so closed meshes render without cracks or double cover.

    Each triangle tests the pixels of its bounding box; triangles are grouped by box shape (exact up to a small
    size, powers of two beyond; see _window_sizes) so that each group is one dense (n, wx * wy) tensor operation.
    """
    h, w = resolution
    B, F = pos.shape[0], tri.shape[0]
    corners = _triangle_corners(pos, tri, resolution)
    sizes, exact = _window_sizes(pos, F, resolution)
    order, keys, counts = _group_by_window(corners, sizes, resolution)
    # set up the kept triangles in group order, so that every group is a slice of the coefficient rows
    view, face = order // F, order % F
    cv = [_gather(ck, order) for ck in corners]  # 3 x (n, 4)
    del corners
    cx, cy, cz = ([ck[:, r] for ck in cv] for r in range(3))
    # the boxes again from the gathered corners: a dozen elementwise operations cost less on the CPU than
    # gathering four columns of the (4, B * F) rows _group_by_window had
    box = torch.stack(_pixel_box(_min3(cx), _max3(cx), _min3(cy), _max3(cy), resolution), 0)
    coef = _setup(cx, cy, cz, box, torch.float32)
    # one scatter-min per chunk does the z-test on (depth, triangle) packed into one int64
    out = torch.full((B * h * w,), _BIG, dtype=torch.int64, device=pos.device)
    start = 0
    for key_g, count in zip(keys, counts):  # a few dozen window shapes at most
        s0, start = start, start + count
        if key_g % 2:  # float64: set up again, in double
            cf = _setup(*([t[s0:start] for t in ct] for ct in (cx, cy, cz)), box[:, s0:start], torch.float64)
        else:
            cf = coef[:, s0:start]
        wx, wy = sizes[(key_g // 2) // len(sizes)], sizes[(key_g // 2) % len(sizes)]
        _ztest_group(out, cf, view[s0:start], face[s0:start], (wx, wy), masked=max(wx, wy) > exact,
                     max_candidates=max_candidates, resolution=resolution)
    tri_id = torch.where(out == _BIG, torch.full_like(out, -1), out & 0xFFFFFFFF)
    return tri_id.view(B, h, w)


@dataclass
class Fragments:
    """The visible pixels of a rasterised batch, compact: N pixels instead of B * H * W.

    pix (N,) flat pixel index b * H * W + i * W + j; face (N,) visible triangle; bary (N, 3) perspective-correct
    barycentrics (differentiable in pos); z (N,) z_ndc (differentiable); shape (B, H, W).
    """

    pix: Tensor
    face: Tensor
    bary: Tensor
    z: Tensor
    shape: tuple[int, int, int]

    @property
    def view(self) -> Tensor:
        return self.pix // (self.shape[1] * self.shape[2])

    def dense(self, vals: Tensor, background: float | Tensor = 0.0) -> Tensor:
        """vals (N, C) -> (B, H, W, C) with ``background`` elsewhere."""
        B, h, w = self.shape
        out = _scatter_dense(B * h * w, self.pix, vals).view(B, h, w, -1)
        if isinstance(background, Tensor) or background != 0:
            covered = self.coverage()[..., None]
            out = out + (1 - covered) * background
        return out

    def rows(self, vals: Tensor) -> Tensor:
        """vals (N, C) -> the same rows, one per covered pixel (``row_pixels`` says which)."""
        return vals

    def row_pixels(self) -> Tensor:
        """(N,) int64 each row's pixel as a flat index into (B * H * W); B * H * W for a row that holds none."""
        return self.pix

    def coverage(self) -> Tensor:
        """(B, H, W) 1 where something is visible, else 0 (no gradient)."""
        B, h, w = self.shape
        cov = torch.zeros(B * h * w, dtype=self.bary.dtype, device=self.pix.device)
        cov[self.pix] = 1
        return cov.view(B, h, w)

    def ones(self) -> Tensor:
        """(N, 1) ones, one per visible pixel."""
        return torch.ones_like(self.z)[:, None]

    def full(self, channels: int, value: float) -> Tensor:
        return torch.full((self.pix.shape[0], channels), value, dtype=self.z.dtype, device=self.z.device)

    def interpolate(self, attr: Tensor, tri: Tensor) -> Tensor:
        return interpolate_fragments(attr, self, tri)

    def texture(self, tex: Tensor, uv: Tensor) -> Tensor:
        """tex (Ht, Wt, C), uv (N, 2) -> (N, C) bilinear."""
        return _bilinear(tex if tex.ndim == 4 else tex[None], uv, None)

    def tri_id(self) -> Tensor:
        """(B, H, W) int64 visible face, -1 on background."""
        B, h, w = self.shape
        out = torch.full((B * h * w,), -1, dtype=torch.int64, device=self.pix.device)
        out[self.pix] = self.face
        return out.view(B, h, w)

    def guard_slivers(self, sliver: Tensor) -> "Fragments":
        """sliver (B, F) bool -> the same fragments with no position gradient through the barycentrics of those
        triangles' pixels (see render)."""
        s = sliver.reshape(-1).index_select(0, self.view * sliver.shape[1] + self.face)
        bary = torch.where(s[:, None], self.bary.detach(), self.bary)
        return Fragments(self.pix, self.face, bary, self.z, self.shape)

    def depth_buffer(self) -> Tensor:
        """(B * H * W,) z_ndc of the visible surface, +inf on background (no gradient); antialias reads it."""
        B, h, w = self.shape
        zb = torch.full((B * h * w,), float("inf"), dtype=self.z.dtype, device=self.pix.device)
        zb[self.pix] = self.z.detach()
        return zb


class _Barycentrics(torch.autograd.Function):
    """p (N, 3, 4) clip corners of each visible pixel's triangle, ndc_x, ndc_y (N,) its centre -> perspective-correct
    barycentrics (N, 3) and z_ndc (N,), with the backward written out: one autograd node instead of some thirty
    (their bookkeeping, not their arithmetic, was most of a CPU render's backward).

    Homogeneous 2-D barycentrics: with each corner taken relative to the pixel's ray (x - ndc_x w, y - ndc_y w), the
    sub-triangle areas a_i are proportional to the perspective-correct barycentrics, with no division by w. The
    epsilon (the one nvdiffrast uses, so that both backends give the same values and gradients) bounds
    d(bary)/d(pos) where a snapped sliver covers a centre its float triangle misses (its area is ~0). The third
    barycentric is 1 - u - v, as nvdiffrast's rast stores (u, v) only.
    """

    @staticmethod
    def forward(ctx, p: Tensor, ndc_x: Tensor, ndc_y: Tensor):
        X, Y, Z, W = p.unbind(-1)  # (N, 3) each
        rx = (X - ndc_x[:, None] * W).unbind(1)
        ry = (Y - ndc_y[:, None] * W).unbind(1)
        a0 = rx[1] * ry[2] - ry[1] * rx[2]
        a1 = rx[2] * ry[0] - ry[2] * rx[0]
        a2 = rx[0] * ry[1] - ry[0] * rx[1]
        at = a0 + a1 + a2
        inv = 1 / (at + torch.where(at < 0, -1e-6, 1e-6))
        b0, b1 = a0 * inv, a1 * inv
        b2 = 1 - b0 - b1
        (z0, z1, z2), (w0, w1, w2) = Z.unbind(1), W.unbind(1)
        den = b0 * w0 + b1 * w1 + b2 * w2
        z = (b0 * z0 + b1 * z1 + b2 * z2) / den
        bary = torch.stack([b0, b1, b2], -1)
        ctx.save_for_backward(p, ndc_x, ndc_y, bary, z, den, inv, a0, a1)
        return bary, z

    @staticmethod
    def backward(ctx, g_bary: Tensor, g_z: Tensor):
        p, ndc_x, ndc_y, bary, z, den, inv, a0, a1 = ctx.saved_tensors
        X, Y, Z, W = p.unbind(-1)
        rx0, rx1, rx2 = (X - ndc_x[:, None] * W).unbind(1)
        ry0, ry1, ry2 = (Y - ndc_y[:, None] * W).unbind(1)
        if g_bary is None:
            g_bary = torch.zeros_like(bary)
        if g_z is None:
            g_z = torch.zeros_like(z)
        gzd = g_z / den
        # z = sum b Z / sum b W: through the barycentrics, and straight to each corner's z and w
        gb = g_bary + gzd[:, None] * (Z - z[:, None] * W)
        gZ = gzd[:, None] * bary
        gW = -(gzd * z)[:, None] * bary
        gb0, gb1, gb2 = gb.unbind(1)
        G0, G1 = gb0 - gb2, gb1 - gb2  # b2 = 1 - b0 - b1
        # b_i = a_i * inv, inv = 1 / (a0 + a1 + a2 + eps): d inv / d a_k = -inv²
        gat = -(G0 * a0 + G1 * a1) * inv * inv
        ga0, ga1, ga2 = G0 * inv + gat, G1 * inv + gat, gat
        grx = torch.stack([ga2 * ry1 - ga1 * ry2, ga0 * ry2 - ga2 * ry0, ga1 * ry0 - ga0 * ry1], 1)
        gry = torch.stack([ga1 * rx2 - ga2 * rx1, ga2 * rx0 - ga0 * rx2, ga0 * rx1 - ga1 * rx0], 1)
        gW = gW - ndc_x[:, None] * grx - ndc_y[:, None] * gry
        return torch.stack([grx, gry, gZ, gW], -1), None, None


def fragments(pos: Tensor, tri: Tensor, tri_id: Tensor) -> Fragments:
    """Differentiable barycentrics of the visible pixels. pos (B, V, 4) clip, tri (F, 3), tri_id (B, H, W)."""
    B, h, w = tri_id.shape
    flat = tri_id.reshape(-1)
    vis = (flat >= 0).nonzero()[:, 0]
    f = flat[vis]
    b = vis // (h * w)
    pix = vis % (h * w)
    py = (pix // w).to(pos.dtype)
    px = (pix % w).to(pos.dtype)
    ndc_x = (2 * px + 1) / w - 1
    ndc_y = (2 * py + 1) / h - 1
    p = _gather(pos.reshape(-1, 4), b[:, None] * pos.shape[1] + tri[f])  # (N, 3, 4)
    bary, z = _Barycentrics.apply(p, ndc_x, ndc_y)
    return Fragments(vis, f, bary, z, (B, h, w))


def interpolate_fragments(attr: Tensor, frag: Fragments, tri: Tensor) -> Tensor:
    """attr (V, C) or (B, V, C) -> (N, C) at the visible pixels."""
    C = attr.shape[-1]
    corners = tri[frag.face]
    if attr.ndim == 2:
        a = _gather(attr, corners)
    else:
        a = _gather(attr.reshape(-1, C), frag.view[:, None] * attr.shape[1] + corners)
    return (frag.bary[..., None] * a).sum(1)


def rast_from_fragments(frag: Fragments) -> Tensor:
    """(B, H, W, 4) nvdiffrast layout (u, v, z_ndc, face + 1)."""
    vals = torch.stack([frag.bary[:, 0], frag.bary[:, 1], frag.z, (frag.face + 1).to(frag.z.dtype)], -1)
    return frag.dense(vals)


def fragments_from_rast(rast: Tensor) -> Fragments:
    """The inverse of rast_from_fragments (keeps rast's gradients)."""
    B, h, w, _ = rast.shape
    flat = rast.reshape(-1, 4)
    vis = (flat[:, 3] > 0).nonzero()[:, 0]
    r = _gather(flat, vis)
    bary = torch.stack([r[:, 0], r[:, 1], 1 - r[:, 0] - r[:, 1]], -1)
    return Fragments(vis, r[:, 3].detach().long() - 1, bary, r[:, 2], (B, h, w))


class Taps(NamedTuple):
    """The bilinear filter's reads for N fixed points of a (Ht, Wt) texture: what ``_bilinear`` works out from uv
    before it reads the texture. idx (N, 4) the four taps' texel indices (row-major), fx, fy (N, 1) the fractions
    along x and y; grid (1, 1, N, 2): grid_sample's coordinates, for the GPU's path. Kept for points sampled again
    and again (a texture fit reads the same pixels every step); uv is taken as constant (no gradient reaches it)."""

    idx: Tensor
    fx: Tensor
    fy: Tensor
    grid: Tensor
    size: tuple[int, int]


def taps(uv: Tensor, size: tuple[int, int], batch: Tensor | None = None, *, keep_grad: bool = False) -> Taps:
    """``Taps`` of points uv (N, 2) in textures of size (Ht, Wt); batch (N,) each point's texture, or None.
    keep_grad: the fractions keep uv's gradient (``_bilinear``'s own use)."""
    Ht, Wt = size
    uv = uv if keep_grad else uv.detach()
    u, v = uv.unbind(-1)
    x = u * Wt - 0.5
    y = v * Ht - 0.5
    x0f, y0f = x.detach().floor(), y.detach().floor()
    fx, fy = (x - x0f)[:, None], (y - y0f)[:, None]
    x0 = x0f.long().clamp(0, Wt - 1)
    x1 = (x0f.long() + 1).clamp(0, Wt - 1)
    y0 = y0f.long().clamp(0, Ht - 1)
    y1 = (y0f.long() + 1).clamp(0, Ht - 1)
    # one gather of the four taps: one pass over the texture, and one index_add backward instead of four
    idx = torch.stack([y0 * Wt + x0, y0 * Wt + x1, y1 * Wt + x0, y1 * Wt + x1], -1)
    if batch is not None:
        idx = idx + (batch * (Ht * Wt))[:, None]
    return Taps(idx, fx, fy, (uv * 2 - 1).view(1, 1, -1, 2), (Ht, Wt))


def _grid_sample(tex: Tensor, grid: Tensor) -> Tensor:
    """tex (1, Ht, Wt, C) at grid (1, 1, N, 2) -> (N, C). On the GPU grid_sample's kernels (same bilinear filter,
    same texel centres, border clamp) beat a gather of 12-byte rows; on the CPU its backward is the slow part,
    hence the gather of ``sample_taps``."""
    out = torch.nn.functional.grid_sample(tex.permute(0, 3, 1, 2), grid, mode="bilinear", padding_mode="border",
                                          align_corners=False)
    return out[0, :, 0].T


def sample_taps(tex: Tensor, t: Taps) -> Tensor:
    """tex (Bt, Ht, Wt, C) read at taps t -> (N, C): ``_bilinear`` from its precomputed reads."""
    Bt, Ht, Wt, C = tex.shape
    if (Ht, Wt) != tuple(t.size):
        raise V2M4Error(f"taps made for a {t.size[0]} x {t.size[1]} texture cannot read one of {Ht} x {Wt}")
    if tex.is_cuda and Bt == 1:
        return _grid_sample(tex, t.grid)
    taps4 = _gather(tex.reshape(-1, C), t.idx)  # (N, 4, C)
    t00, t01, t10, t11 = taps4.unbind(1)
    # lerps in x then y: fewer operations (and backward nodes) than four weights and a sum over taps
    top = t00 + t.fx * (t01 - t00)
    bottom = t10 + t.fx * (t11 - t10)
    return top + t.fy * (bottom - top)


def _bilinear(tex: Tensor, uv: Tensor, batch: Tensor | None) -> Tensor:
    """tex (Bt, Ht, Wt, C), uv (N, 2), batch (N,) texture index or None -> (N, C); border clamping; gradients reach
    tex and uv.

    A gather forward and an index_add backward: on the CPU this is several times faster than grid_sample's
    backward pass, whose cost is what texture optimisation pays every step.
    """
    if tex.is_cuda and tex.shape[0] == 1:  # grid_sample's path needs no taps
        return _grid_sample(tex, (uv * 2 - 1).view(1, 1, -1, 2))
    return sample_taps(tex, taps(uv, tuple(tex.shape[1:3]), batch, keep_grad=True))


def texture(tex: Tensor, uv: Tensor, *, mip_levels: int = 0, uv_da: Tensor | None = None) -> Tensor:
    """tex (B, Ht, Wt, C) or (Ht, Wt, C), uv (B, H, W, 2) glTF-convention -> (B, H, W, C), bilinear.

    With mip_levels > 0 and uv_da (B, H, W) the texel footprint of each pixel (in texels of level 0), levels of
    a box-filtered pyramid are blended by log2 of the footprint (trilinear filtering).
    """
    B, h, w, _ = uv.shape
    t = tex if tex.ndim == 4 else tex[None]
    batch = None if t.shape[0] == 1 else torch.arange(B, device=uv.device).repeat_interleave(h * w)
    flat_uv = uv.reshape(-1, 2)

    def sample(img):
        return _bilinear(img, flat_uv, batch).view(B, h, w, -1)

    out = sample(t)
    if mip_levels <= 0 or uv_da is None:
        return out
    lod = torch.log2(uv_da.clamp_min(1.0)).clamp(0, mip_levels)
    level = t.permute(0, 3, 1, 2)
    prev = out
    acc = out
    for k in range(1, mip_levels + 1):
        level = torch.nn.functional.avg_pool2d(level, 2, ceil_mode=True)
        cur = sample(level.permute(0, 2, 3, 1))
        wk = (lod - (k - 1)).clamp(0, 1)[..., None]  # how far past level k-1 this pixel's footprint is
        acc = acc + wk * (cur - prev)
        prev = cur
    return acc
