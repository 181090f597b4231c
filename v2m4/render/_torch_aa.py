"""Pure-PyTorch antialiasing: the silhouette edges' analytic coverage, which carries the silhouette's gradient to
the vertex positions (edge topology, screen-space areas, the edge-crossing antialias)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ._cpu_aa import antialias as _antialias_cpu, available as _cpu_available
from ._torch import _screen


def edge_topology(tri: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """tri (F, 3) -> edges (E, 2) vertex pairs, edge_faces (E, 2) adjacent faces (-1: boundary),
    opposite (E, 2) the vertex of each adjacent face that is not on the edge (-1: boundary).

    Non-manifold edges (three or more faces) keep their first two faces.
    """
    F = tri.shape[0]
    dev = tri.device
    e = torch.cat([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]], 0)  # (3F, 2), edge k of face f at k*F+f
    opp = torch.cat([tri[:, 2], tri[:, 0], tri[:, 1]], 0)
    face = torch.arange(F, device=dev).repeat(3)
    key_e = torch.sort(e, dim=1).values
    uniq, inv = torch.unique(key_e, dim=0, return_inverse=True)
    E = uniq.shape[0]
    order = torch.argsort(inv, stable=True)
    inv_sorted = inv[order]
    first = torch.ones_like(inv_sorted, dtype=torch.bool)
    first[1:] = inv_sorted[1:] != inv_sorted[:-1]
    rank = torch.arange(inv_sorted.shape[0], device=dev) - torch.cummax(
        torch.where(first, torch.arange(inv_sorted.shape[0], device=dev), torch.zeros_like(inv_sorted)), 0).values
    keep = rank < 2
    edge_faces = torch.full((E, 2), -1, dtype=torch.int64, device=dev)
    opposite = torch.full((E, 2), -1, dtype=torch.int64, device=dev)
    edge_faces[inv_sorted[keep], rank[keep]] = face[order][keep]
    opposite[inv_sorted[keep], rank[keep]] = opp[order][keep]
    return uniq, edge_faces, opposite


@torch.no_grad()
def screen_area(pos: Tensor, tri: Tensor, resolution: tuple[int, int]) -> Tensor:
    """(B, F) signed screen-space area of every triangle in pixels² (positive: counter-clockwise on screen)."""
    B, V = pos.shape[:2]
    x, y, _ = _screen(pos.detach(), resolution)
    # a gather along rows of (view, coordinate): indexing a middle dimension is several times slower on the CPU
    rows = torch.stack([x, y], 0).view(2 * B, V)
    px, py = zip(*(rows.gather(1, tri[:, k][None].expand(2 * B, -1)).view(2, B, -1) for k in range(3)))
    return 0.5 * ((px[1] - px[0]) * (py[2] - py[0]) - (px[2] - px[0]) * (py[1] - py[0]))


class _Spans(NamedTuple):
    """The silhouette edges of a batch, one row per (view, edge) pair, and the pixel lines each one crosses."""

    view: Tensor    # (M,) int64 view b
    edge: Tensor    # (M,) int64 index into topology's edges
    steep: Tensor   # (M,) bool: walked across pixel rows (steep) rather than columns (flat)
    nx: Tensor      # (M,) a normal of the edge in screen space, x
    ny: Tensor      # (M,) and y
    side: Tensor    # (M,) sign of (nx, ny) . (c - a) for the inside point c: the inside is that side of the edge
    first: Tensor   # (M,) the first row (steep) or column (flat) crossed, float
    count: Tensor   # (M,) int64 how many rows or columns are crossed


@torch.no_grad()
def _silhouette_spans(x: Tensor, y: Tensor, pos: Tensor, topology: tuple[Tensor, Tensor, Tensor], area: Tensor,
                      resolution: tuple[int, int], compact: bool = True) -> _Spans:
    """x, y (B, V) pixel coordinates, pos (B, V, 4) clip, area (B, F) signed screen area -> the silhouette edges
    (boundary edges, or edges between a front- and a back-facing triangle) with both ends in front of the eye.
    compact=False: every (view, edge) pair, in the same order, the others with a count of 0 (static shapes: no
    host synchronisation)."""
    h, w = resolution
    edges, edge_faces, opposite = topology
    # per-edge tests with edges as rows, (E, B): gathering rows is several times faster than a middle dimension
    facing = (area > 0).T.contiguous()  # (F, B)
    boundary = edge_faces[:, 1] < 0
    f0 = facing.index_select(0, edge_faces[:, 0])
    f1 = facing.index_select(0, edge_faces[:, 1].clamp_min(0))
    in_front = (pos[..., 3] > 1e-8).T.contiguous()
    both_in_front = in_front.index_select(0, edges[:, 0]) & in_front.index_select(0, edges[:, 1])
    sil = ((boundary[:, None] | (f0 != f1)) & both_in_front).T  # (B, E)
    if compact:
        bi, ei = sil.nonzero(as_tuple=True)  # (view, edge) order
    else:
        B, E = sil.shape
        bi = torch.arange(B, device=sil.device).repeat_interleave(E)
        ei = torch.arange(E, device=sil.device).repeat(B)
    ax, ay = x[bi, edges[ei, 0]], y[bi, edges[ei, 0]]
    bx, by = x[bi, edges[ei, 1]], y[bi, edges[ei, 1]]
    steep = (by - ay).abs() >= (bx - ax).abs()
    # the inside of the edge is the side of face 0's third vertex (for a fold both faces lie on that side)
    cx, cy = x[bi, opposite[ei, 0]], y[bi, opposite[ei, 0]]
    nx, ny = -(by - ay), (bx - ax)
    side = torch.sign(nx * (cx - ax) + ny * (cy - ay))
    # sweep coordinate: rows for steep edges, columns for flat ones; half-open span so that consecutive
    # edges of a silhouette polyline never both claim one crossing
    s0 = torch.where(steep, ay, ax)
    s1 = torch.where(steep, by, bx)
    lim = torch.where(steep, torch.full_like(s0, h), torch.full_like(s0, w))
    lo = torch.minimum(s0, s1).ceil().clamp(0, None)
    hi = torch.maximum(s0, s1).ceil().clamp(None, lim)
    count = (hi - lo).clamp_min(0).long()
    if not compact:
        count = torch.where(sil.reshape(-1), count, 0)
    return _Spans(bi, ei, steep, nx, ny, side, lo, count)


@torch.no_grad()
def silhouette_crossings(pos: Tensor, tri: Tensor, topology: tuple[Tensor, Tensor, Tensor],
                         resolution: tuple[int, int]) -> Tensor:
    """0-d int64: how many pixel lines the silhouette edges of pos (B, V, 4) cross, the ``crossings`` that
    ``antialias`` needs to be exact on these positions. Counted over every (view, edge) pair, not the compacted
    silhouette: compaction reads its size on the host, and a caller that enqueues this before reading it (a
    captured step's sizes) would wait on the device mid-way instead of once."""
    x, y, _ = _screen(pos, resolution)
    area = screen_area(pos, tri, resolution)
    return _silhouette_spans(x, y, pos, topology, area, resolution, compact=False).count.sum()


def _expand(count: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """For primitives with count[i] candidates each, the candidates in n slots, without reading their total on
    the host: (primitive index, local index, valid) of slot j, valid where j < count.sum() (the other slots point
    at arbitrary primitives)."""
    cum = torch.cumsum(count, 0)
    j = torch.arange(n, device=count.device)
    k = torch.searchsorted(cum, j, right=True).clamp_max(max(count.shape[0] - 1, 0))
    valid = j < cum[-1]
    # unused slots spread over the primitives: their (zero) gradients are added back into the primitives'
    # vertices, and on a GPU many adds into one address queue up on it
    k = torch.where(valid, k, j % max(count.shape[0], 1))
    return k, j - (cum[k] - count[k]), valid


@torch.no_grad()
def _pixel_pairs(cross: Tensor, line: Tensor, view: Tensor, steep: Tensor, inside_is_1: Tensor,
                 resolution: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The two pixel centres either side of each crossing. cross (N,) position along the other axis, line (N,)
    the row (steep) or column (flat) crossed, view (N,), steep (N,), inside_is_1 (N,) bool: the inside pixel is
    the one after the crossing -> (j0 (N,) the pixel before the crossing along the other axis, float; pix_in,
    pix_out (N,) flat pixel indices b * H * W + i * W + j; ok (N,) bool, both pixels in the image)."""
    h, w = resolution
    lim_o = torch.where(steep, torch.full_like(cross, w), torch.full_like(cross, h))
    j0 = cross.floor()
    ok = (j0 >= 0) & (j0 + 1 < lim_o)
    # clamp so that the lookups stay in bounds; crossings outside the image are dropped by `ok`
    j0l = torch.minimum(j0.long().clamp_min(0), lim_o.long() - 1)
    j1l = torch.minimum((j0.long() + 1).clamp_min(0), lim_o.long() - 1)
    sl = line.long()
    row0 = torch.where(steep, sl, j0l)
    col0 = torch.where(steep, j0l, sl)
    row1 = torch.where(steep, sl, j1l)
    col1 = torch.where(steep, j1l, sl)
    pix0 = (view * h + row0) * w + col0
    pix1 = (view * h + row1) * w + col1
    return j0, torch.where(inside_is_1, pix1, pix0), torch.where(inside_is_1, pix0, pix1), ok


def _share_coverage(color: Tensor, d: Tensor, pix_in: Tensor, pix_out: Tensor) -> Tensor:
    """color (B, H, W, C); per crossing d (N,) distance from the inside pixel's centre, pix_in, pix_out (N,) ->
    (B, H, W, C): the outside pixel takes (d - 0.5)+ of the inside colour, the inside one (0.5 - d)+ of the
    outside colour."""
    B, h, w, C = color.shape
    cflat = color.reshape(-1, C)
    c_in, c_out = cflat[pix_in], cflat[pix_out]
    delta_out = (d - 0.5).clamp_min(0)[:, None] * (c_in - c_out)
    delta_in = (0.5 - d).clamp_min(0)[:, None] * (c_out - c_in)
    # one scatter for both sides: each out-of-place index_add copies the whole image
    out = cflat.index_add(0, torch.cat([pix_out, pix_in]), torch.cat([delta_out, delta_in]))
    return out.view(B, h, w, C)


def antialias(color: Tensor, zbuf: Tensor, pos: Tensor, tri: Tensor, topology: tuple[Tensor, Tensor, Tensor],
              area: Tensor | None = None, crossings: int | None = None, *, compiled: bool = True) -> Tensor:
    """Blend colours across visible silhouette edges so that the image is differentiable in vertex positions.

    color (B, H, W, C), zbuf (B * H * W,) z_ndc of the visible surface or +inf (Fragments.depth_buffer),
    pos (B, V, 4) clip, tri (F, 3), topology from edge_topology(tri), area (B, F) screen_area if already known.

    Edge-crossing formulation: every silhouette edge (boundary edge, or edge between a front- and a back-facing
    triangle in this view) is walked across pixel rows (for steep edges) or columns (for flat ones). Where it
    crosses the segment between two neighbouring pixel centres, the inside pixel p and the outside pixel q share
    coverage: with d the distance from p's centre to the crossing, q takes (d - 0.5)+ of p's colour and p takes
    (0.5 - d)+ of q's. Summed over crossings this moves the image by exactly the area swept by the edge, so
    d(image)/d(vertex) is right however small the triangles are. An edge counts as visible where the outside
    pixel is background or lies behind the edge. Why not nvdiffrast's antialias (an analysis of neighbouring
    pixel pairs, Laine et al. 2020): near a smooth silhouette the last front-facing triangles are far narrower
    than a pixel, so the triangle at a pixel centre rarely owns the silhouette edge, and the silhouette gradient
    all but vanishes once triangles are smaller than a pixel (see docs/calibration.md).

    crossings: None, the crossings are counted and compacted (the host reads their number); an int, they go into
    that many slots (static shapes, no host synchronisation: what a CUDA graph needs); exact when it is at least
    ``silhouette_crossings``, crossings beyond it are dropped.

    compiled: on the CPU (float32, crossings None), the same walk as one compiled loop per view (``_cpu_aa``) when
    numba is installed; False: always these tensor operations.
    """
    B, h, w, C = color.shape
    edges = topology[0]
    if area is None:
        area = screen_area(pos, tri, (h, w))
    if compiled and crossings is None and color.device.type == "cpu" and color.dtype == torch.float32 \
            and pos.dtype == torch.float32 and _cpu_available():
        return _antialias_cpu(color, zbuf, pos, tri, topology, area)
    x, y, z = _screen(pos, (h, w))
    sp = _silhouette_spans(x, y, pos, topology, area, (h, w), compact=crossings is None)
    if crossings is None:
        crossings = int(sp.count.sum())  # the host's one read of the walk's size (it waits on the device here)
        if crossings == 0:
            return color
    # (the walk has no Python loop over edges; crossings are bounded by the silhouette length, so no tiling)
    k, local, valid = _expand(sp.count, crossings)
    s = sp.first[k] + local  # integer row (steep) or column (flat) of each crossing
    b, st = sp.view[k], sp.steep[k]
    i0, i1 = edges[sp.edge[k], 0], edges[sp.edge[k], 1]
    # an unused slot sits on some (view, edge) pair, maybe one behind the eye (w <= 0) or crossing nothing
    # (A1 = A0): it takes the unit diagonal instead, so that no infinity reaches the backward pass
    X0, Y0, X1, Y1 = (torch.where(valid, c, float(v)) for c, v in
                      ((x[b, i0], 0), (y[b, i0], 0), (x[b, i1], 1), (y[b, i1], 1)))
    s = torch.where(valid, s, 0.5)
    A0 = torch.where(st, Y0, X0)
    A1 = torch.where(st, Y1, X1)
    O0 = torch.where(st, X0, Y0)
    O1 = torch.where(st, X1, Y1)
    t = (s - A0) / (A1 - A0)
    cross = O0 + t * (O1 - O0)  # differentiable crossing position along the other axis
    with torch.no_grad():
        # which of the two pixels is inside: moving +1 along the other axis goes to the side sign(n . dir)
        inside_is_1 = torch.sign(torch.where(st, sp.nx[k], sp.ny[k])) == sp.side[k]
        j0, pix_in, pix_out, ok = _pixel_pairs(cross, s, b, st, inside_is_1, (h, w))
        # unused slots: distinct pixels (no pile-up of atomic adds on one), and no share
        spread = torch.arange(crossings, device=zbuf.device) % zbuf.shape[0]
        pix_in, pix_out = torch.where(valid, pix_in, spread), torch.where(valid, pix_out, spread)
        ok = ok & valid
        ze = z[b, i0] + t * (z[b, i1] - z[b, i0])
        ok &= torch.isfinite(zbuf[pix_in]) & (zbuf[pix_out] > ze)
    frac = cross - j0  # distance of the crossing from pixel 0's centre, in [0, 1)
    d = torch.where(inside_is_1, 1 - frac, frac)
    # crossings that are not ok share nothing (d = 1/2 either way) rather than being compacted out, which would
    # make the host wait on the device for their number
    return _share_coverage(color, torch.where(ok, d, 0.5), pix_in, pix_out)
