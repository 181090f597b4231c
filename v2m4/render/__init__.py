"""Differentiable mesh rendering: four small primitives and one convenience. The paper renders with
nvdiffrast [19] (Sec. 4.1, Appendix A); this package offers the same primitives on any device.

    ctx  = context("torch", device)                       # or "nvdiffrast" (CUDA, opt-in)
    rast = rasterize(ctx, pos_clip, tri, (H, W))          # (B, H, W, 4) = (u, v, z_ndc, triangle id + 1)
    col  = interpolate(ctx, vertex_colors, rast, tri)     # (B, H, W, C)
    col  = texture(ctx, tex, uv_pixels)                   # (B, H, W, C)
    col  = antialias(ctx, col, rast, pos_clip, tri, topology=edge_topology(tri))

The layout of every tensor is nvdiffrast's, with one difference stated in camera.py: row 0 of an image is its
top row, because our clip space has ndc_y growing downward. ``render(ctx, mesh, cameras)`` composes the primitives.

Backends. ``torch`` (default, any device) is pure PyTorch and is the reference; ``nvdiffrast`` wraps the CUDA
rasteriser. On the CPU the ``torch`` backend finds visibility with a compiled kernel (``_cpu``, numba) that gives
the same pixels to the same triangles, and walks the antialias's silhouette edges with another (``_cpu_aa``).
Silhouette gradients always come from this package's edge-crossing antialias, also with the nvdiffrast backend:
nvdiffrast's own antialias loses most of its gradient once triangles are smaller than a pixel (its edge analysis
between neighbouring pixels rarely sees the owning triangle; figures in docs/calibration.md), which is the normal
case for generated meshes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, Sequence as Seq

import torch
from torch import Tensor

from ..camera import Camera, near_far
from ..errors import V2M4Error
from ..types import Mesh
from . import _cpu, _torch, _torch_aa, _visible

__all__ = ["RenderContext", "context", "rasterize", "interpolate", "texture", "sample_texture", "texture_taps",
           "antialias", "edge_topology", "weld_faces", "render", "render_each", "can_merge_views", "merge_views",
           "ViewMerge",
           "render_visible", "clip_positions", "visible_faces", "silhouette_crossings", "vertex_normals",
           "weld_map", "CHANNELS"]

CHANNELS = ("rgb", "mask", "depth", "normal", "points", "tri_id")


@dataclass
class RenderContext:
    """Which backend renders, on which device. Made by ``context``; pass it to every primitive.

    max_candidates bounds the (triangle, pixel) pairs the torch rasteriser tests at once (memory ~40 B each).
    compiled: on the CPU, find visibility and walk the antialias's silhouette edges with compiled kernels (``_cpu``:
    the same pixels, 5-15x faster; ``_cpu_aa``: the same crossings) where numba is installed; False keeps the
    tensor rasteriser and antialias, the reference.
    """

    backend: str
    device: torch.device
    max_candidates: int = 1 << 24
    compiled: bool = True
    _dr: Any = field(default=None, repr=False)
    _glctx: Any = field(default=None, repr=False)
    _glctxs: dict = field(default_factory=dict, repr=False)  # nvdiffrast: a context per batch shape (raster_context)


def context(backend: str = "torch", device: str | torch.device = "cpu", *, max_candidates: int = 1 << 24,
            compiled: bool = True) -> RenderContext:
    """A rendering context. backend: "torch", "nvdiffrast", or "auto" (nvdiffrast on CUDA when it loads);
    compiled: see ``RenderContext``."""
    device = torch.device(device)
    if backend == "auto":
        backend = "torch"
        if device.type == "cuda":
            try:
                return context("nvdiffrast", device, max_candidates=max_candidates)
            except V2M4Error:
                backend = "torch"  # nvdiffrast is optional: the pure-PyTorch backend does the same job
    if backend == "torch":
        return RenderContext("torch", device, max_candidates, compiled)
    if backend == "nvdiffrast":
        if device.type != "cuda":
            raise V2M4Error(f"the nvdiffrast backend renders on CUDA only, got device {device}; use backend='torch'")
        from ._nvdiffrast import make_context

        dr, glctx = make_context(device)
        return RenderContext("nvdiffrast", device, max_candidates, _dr=dr, _glctx=glctx)
    raise V2M4Error(f"unknown render backend {backend!r}; choose 'torch', 'nvdiffrast' or 'auto'")


def _check_pos_tri(pos: Tensor, tri: Tensor) -> tuple[Tensor, Tensor]:
    if pos.ndim == 2:
        pos = pos[None]
    if pos.ndim != 3 or pos.shape[-1] != 4:
        raise V2M4Error(f"pos must have shape (B, V, 4) in clip space, got {tuple(pos.shape)}")
    if tri.ndim != 2 or tri.shape[-1] != 3:
        raise V2M4Error(f"tri must have shape (F, 3), got {tuple(tri.shape)}")
    return pos, tri


def rasterize(ctx: RenderContext, pos: Tensor, tri: Tensor, resolution: tuple[int, int]) -> Tensor:
    """pos (B, V, 4) float32 clip-space positions, tri (F, 3) int -> rast (B, H, W, 4).

    rast[b, i, j] = (u, v, z_ndc, f + 1) where triangle f is visible at the centre of pixel (i, j) and the point
    there is u * p0 + v * p1 + (1 - u - v) * p2 (perspective-correct); all zeros where nothing is visible.
    u, v and z are differentiable in pos.
    """
    pos, tri = _check_pos_tri(pos, tri)
    h, w = int(resolution[0]), int(resolution[1])
    if ctx.backend == "nvdiffrast":
        from ._nvdiffrast import raster_context

        glctx = raster_context(ctx, (pos.shape[0], h, w))
        rast, _ = ctx._dr.rasterize(glctx, pos.float().contiguous(), tri.int().contiguous(), resolution=[h, w])
        return rast
    return _torch.rast_from_fragments(_fragments(ctx, pos, tri.long(), (h, w)))


def _fragments(ctx: RenderContext, pos: Tensor, tri: Tensor, resolution: tuple[int, int]) -> "_torch.Fragments":
    """The visible pixels, compact; what every higher-level operation works on."""
    if ctx.backend == "nvdiffrast":
        from ._nvdiffrast import DenseFragments

        return DenseFragments(ctx._dr, rasterize(ctx, pos, tri, resolution))
    if ctx.compiled and pos.device.type == "cpu" and _cpu.available():
        tri_id = _cpu.visibility(pos, tri, resolution)
    else:
        tri_id = _torch.visibility(pos, tri, resolution, ctx.max_candidates)
    return _torch.fragments(pos, tri, tri_id)


def interpolate(ctx: RenderContext, attr: Tensor, rast: Tensor, tri: Tensor) -> Tensor:
    """attr (V, C) or (B, V, C) -> (B, H, W, C) attributes at pixel centres; zero where nothing is visible.

    Gradients reach attr, and pos through rast's barycentrics.
    """
    if ctx.backend == "nvdiffrast":
        out, _ = ctx._dr.interpolate(attr.float().contiguous(), rast, tri.int().contiguous())
        return out
    frag = _torch.fragments_from_rast(rast)
    return frag.dense(_torch.interpolate_fragments(attr, frag, tri.long()))


def texture(ctx: RenderContext, tex: Tensor, uv: Tensor, *, mip_levels: int = 0, uv_da: Tensor | None = None) -> Tensor:
    """tex (Ht, Wt, C) or (B, Ht, Wt, C), uv (B, H, W, 2) in glTF convention -> (B, H, W, C), bilinear.

    Texture coordinates out of [0, 1] clamp to the border. mip_levels > 0 with uv_da (B, H, W), the pixel's
    footprint in level-0 texels, blends box-filtered levels (trilinear). Gradients reach tex and uv.
    Both backends share this implementation (grid_sample), so they agree exactly.
    """
    return _torch.texture(tex, uv, mip_levels=mip_levels, uv_da=uv_da)


def sample_texture(tex: Tensor, uv: "Tensor | _torch.Taps") -> Tensor:
    """tex (Ht, Wt, C) float, uv (..., 2) same dtype and device -> (..., C): bilinear lookups at arbitrary points
    (uv may also be ``texture_taps`` of (N, 2) points: -> (N, C)).

    The filter ``texture`` and ``render`` use (level 0, no context needed), for code that works on texture
    coordinates rather than pixels, e.g. comparing a texture with colours observed at known uv.
    uv in glTF convention: u grows along texel columns, v along texel rows, (0, 0) is the top-left corner of
    texel (0, 0), whose centre is (0.5 / Wt, 0.5 / Ht). Coordinates out of [0, 1] clamp to the border texels.
    Gradients reach tex and uv.

    >>> tex = torch.tensor([[[0.0], [1.0]], [[2.0], [3.0]]])  # 2 x 2 texels, one channel
    >>> sample_texture(tex, torch.tensor([[0.25, 0.25], [0.5, 0.5]]))  # texel (0, 0)'s centre; the middle
    tensor([[0.0000],
            [1.5000]])
    """
    if tex.ndim != 3:
        raise V2M4Error(f"tex must have shape (Ht, Wt, C), got {tuple(tex.shape)}")
    if isinstance(uv, _torch.Taps):
        return _torch.sample_taps(tex[None], uv)
    if uv.shape[-1:] != (2,):
        raise V2M4Error(f"uv must have last dimension 2, got shape {tuple(uv.shape)}")
    out = _torch._bilinear(tex[None], uv.reshape(-1, 2), None)
    return out.reshape(*uv.shape[:-1], tex.shape[-1])


def texture_taps(uv: Tensor, size: tuple[int, int]) -> "_torch.Taps":
    """The reads ``sample_texture`` makes at points uv (N, 2) of an (Ht, Wt) texture, worked out once: pass them to
    ``sample_texture`` in place of uv where the same points are read again and again (a texture fit), for the same
    values and texture gradients with less work a read; uv gets no gradient through them."""
    if uv.ndim != 2 or uv.shape[-1] != 2:
        raise V2M4Error(f"uv must have shape (N, 2), got {tuple(uv.shape)}")
    return _torch.taps(uv, (int(size[0]), int(size[1])))


def edge_topology(tri: Tensor, vertices: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """tri (F, 3) -> (edges (E, 2), edge_faces (E, 2), opposite (E, 2)); compute once per mesh, pass to antialias.
    vertices (V, 3): weld vertices at the same position first (``weld_faces``). Meshes split at UV seams (a
    textured mesh, most files from other tools) need it, or every seam is an outline to the antialias, which
    blends background into the surface along it and shrinks the mask (docs/calibration.md)."""
    if vertices is not None:
        tri = weld_faces(tri, vertices.to(tri.device))
    return _torch_aa.edge_topology(tri.long())


def weld_faces(faces: Tensor, vertices: Tensor) -> Tensor:
    """faces (F, 3) with every vertex replaced by the lowest-index vertex at the same position: the connectivity of
    a mesh split at UV seams (the copies share positions), for ``edge_topology``. Indices stay valid for vertices."""
    uniq, inv = torch.unique(vertices.detach(), dim=0, return_inverse=True)
    idx = torch.arange(vertices.shape[0], device=vertices.device)
    rep = idx.new_full((uniq.shape[0],), vertices.shape[0]).scatter_reduce(0, inv, idx, "amin")
    return rep[inv][faces.long()]


def antialias(ctx: RenderContext, color: Tensor, rast: Tensor, pos: Tensor, tri: Tensor, *,
              topology: tuple[Tensor, Tensor, Tensor] | None = None) -> Tensor:
    """color (B, H, W, C) -> (B, H, W, C) with silhouette edges blended, differentiable in pos and color."""
    pos, tri = _check_pos_tri(pos, tri)
    if topology is None:
        topology = edge_topology(tri)
    zbuf = _torch.fragments_from_rast(rast.detach()).depth_buffer()
    return _torch_aa.antialias(color, zbuf, pos, tri.long(), topology, compiled=ctx.compiled)


def vertex_normals(vertices: Tensor, faces: Tensor, weld: Tensor | None = None) -> Tensor:
    """vertices (..., V, 3), faces (F, 3) -> area-weighted unit vertex normals (..., V, 3). weld (V,) int64
    optional (``weld_map``): copies of one point (a mesh split at its uv seams) share the normal of every face
    around the point, not only of the faces on their side of the seam, so the shading has no seam."""
    f = faces if weld is None else weld[faces]
    # index_select, not advanced indexing: its backward is an index_add, several times faster on the CPU
    v0, v1, v2 = (vertices.index_select(-2, faces[:, k]) for k in range(3))
    fn = torch.cross(v1 - v0, v2 - v0, dim=-1)
    n = torch.zeros_like(vertices)
    for k in range(3):
        n = n.index_add(-2, f[:, k], fn)
    if weld is not None:
        n = n.index_select(-2, weld)
    return torch.nn.functional.normalize(n, dim=-1, eps=1e-12)


def weld_map(vertices: Tensor) -> Tensor:
    """(V,) int64: for each vertex (V, 3), the first vertex at exactly the same position."""
    _, inverse = torch.unique(vertices, dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), vertices.shape[0], dtype=torch.int64, device=vertices.device)
    first = first.scatter_reduce(0, inverse, torch.arange(vertices.shape[0], device=vertices.device), "amin")
    return first[inverse]


def render(ctx: RenderContext, mesh: Mesh, cameras: Camera, *, channels: Seq[str] = ("rgb", "mask"),
           vertices: Tensor | None = None, topology: tuple[Tensor, Tensor, Tensor] | None = None,
           background: float | Tensor = 0.0, antialias_edges: bool = True, near: Tensor | None = None,
           far: Tensor | None = None, sliver_area: float = 0.05, normals: Tensor | None = None,
           per_pixel: bool = False) -> dict[str, Tensor]:
    """Render a mesh from B cameras in one batched call.

    vertices: optional (V, 3) or (B, V, 3) positions replacing mesh.vertices (one pose per view), e.g. every frame
    of an animation at once. sliver_area (pixels²): triangles smaller on screen pass no position gradient
    through their barycentrics (0 turns this off). normals: optional (V, 3) or (B, V, 3) unit vertex normals of
    those positions for the normal channel (where many views see one pose, found once per pose; default: each
    view's ``vertex_normals``).
    Returns a dict with the requested channels, B = len(cameras), H x W = cameras.resolution:
      rgb (B, H, W, 3)     unlit base colour (texture, else vertex colours, else 0.7 grey) over ``background``
      mask (B, H, W)       coverage in [0, 1]; antialiased, so differentiable in vertex positions
      depth (B, H, W)      distance along the view axis; 0 on background
      normal (B, H, W, 3)  world-space unit normals (interpolated vertex normals); 0 on background
      points (B, H, W, 3)  world-space surface points; 0 on background
      tri_id (B, H, W)     int64 visible face, -1 on background
    per_pixel: depth, normal and points as rows of the covered pixels instead of images: (N,), (N, 3), (N, 3),
    with pixel (N,) int64 each row's pixel as a flat index into (B * H * W) (B * H * W for a row that holds none,
    whose values are 0). N is the number of covered pixels on the CPU's rasteriser; a loss over the rows costs a
    fraction of one over whole images where the object covers a small part of them.
    """
    verts_b, faces, pos = _project(mesh, cameras, vertices, near, far, channels)
    normals = _pose_normals(mesh, vertices, faces, channels, normals)
    frag = _fragments(ctx, pos, faces, cameras.resolution)
    return _shade(frag, mesh, cameras, verts_b, faces, pos, channels=channels, topology=topology,
                  background=background, antialias_edges=antialias_edges, sliver_area=sliver_area,
                  normals=normals, per_pixel=per_pixel, compiled=ctx.compiled)


@torch.no_grad()
def clip_positions(mesh: Mesh, cameras: Camera, *, vertices: Tensor | None = None, near: Tensor | None = None,
                   far: Tensor | None = None) -> Tensor:
    """(B, V, 4) the clip-space positions ``render`` rasterises for these arguments (as in ``render``); given to
    ``visible_faces`` and ``silhouette_crossings`` as ``pos``, they skip their own projection. No host
    synchronisation: a CUDA graph can capture it."""
    return _project(mesh, cameras, vertices, near, far, ())[2]


@torch.no_grad()
def visible_faces(ctx: RenderContext, mesh: Mesh, cameras: Camera, *, vertices: Tensor | None = None,
                  near: Tensor | None = None, far: Tensor | None = None, pos: Tensor | None = None) -> Tensor:
    """(B, H, W) int64 the face ``render`` sees at each pixel centre, -1 on background: visibility alone, no
    gradient, for ``render_visible``. vertices, near, far as in ``render``; pos: their ``clip_positions``, if
    already found."""
    if pos is None:
        _, faces, pos = _project(mesh, cameras, vertices, near, far, ())
    else:
        faces = mesh.faces.to(pos.device)
    h, w = cameras.resolution
    if ctx.backend == "nvdiffrast":
        return rasterize(ctx, pos, faces, (h, w))[..., 3].long() - 1
    if ctx.compiled and pos.device.type == "cpu" and _cpu.available():
        return _cpu.visibility(pos, faces.long(), (h, w))
    return _torch.visibility(pos, faces.long(), (h, w), ctx.max_candidates)


@torch.no_grad()
def silhouette_crossings(mesh: Mesh, cameras: Camera, *, vertices: Tensor | None = None,
                         topology: tuple[Tensor, Tensor, Tensor] | None = None, near: Tensor | None = None,
                         far: Tensor | None = None, pos: Tensor | None = None) -> Tensor:
    """0-d int64: the ``crossings`` that ``render_visible`` needs to antialias these positions exactly (how many
    pixel lines their silhouette edges cross). On the device: reading it is the caller's one synchronisation.
    pos: the arguments' ``clip_positions``, if already found."""
    if pos is None:
        _, faces, pos = _project(mesh, cameras, vertices, near, far, ())
    else:
        faces = mesh.faces.to(pos.device)
    if topology is None:
        topology = edge_topology(faces, mesh.vertices)
    return _torch_aa.silhouette_crossings(pos, faces.long(), topology, cameras.resolution)


def render_visible(ctx: RenderContext, mesh: Mesh, cameras: Camera, tri_id: Tensor, *, crossings: int,
                   pixels: int | None = None, channels: Seq[str] = ("mask",), vertices: Tensor | None = None,
                   topology: tuple[Tensor, Tensor, Tensor] | None = None, background: float | Tensor = 0.0,
                   antialias_edges: bool = True, near: Tensor | None = None, far: Tensor | None = None,
                   sliver_area: float = 0.05, normals: Tensor | None = None,
                   per_pixel: bool = False) -> dict[str, Tensor]:
    """``render`` from a visibility found beforehand (``visible_faces`` of the same positions), with static shapes
    throughout: the covered pixels go into ``pixels`` rows (at least (tri_id >= 0).sum(); None: every pixel of
    the batch is shaded) and the silhouette's crossings into ``crossings`` slots (at least
    ``silhouette_crossings`` for an exact antialias). No host synchronisation, so a CUDA graph can capture it;
    the values and gradients are ``render``'s. Arguments and channels as in ``render``."""
    verts_b, faces, pos = _project(mesh, cameras, vertices, near, far, channels)
    if tuple(tri_id.shape) != (len(cameras), *cameras.resolution):
        raise V2M4Error(f"tri_id must be ({len(cameras)}, {cameras.resolution[0]}, {cameras.resolution[1]}) for "
                        f"these cameras, got {tuple(tri_id.shape)}")
    normals = _pose_normals(mesh, vertices, faces, channels, normals)
    frag = _visible.VisibleFragments(pos, faces.long(), tri_id, pixels)
    return _shade(frag, mesh, cameras, verts_b, faces, pos, channels=channels, topology=topology,
                  background=background, antialias_edges=antialias_edges, sliver_area=sliver_area,
                  crossings=crossings, normals=normals, per_pixel=per_pixel, compiled=ctx.compiled)


def _pose_normals(mesh: Mesh, vertices: Tensor | None, faces: Tensor, channels: Seq[str],
                  normals: Tensor | None) -> Tensor | None:
    """The normals given, or where every view sees one pose ((V, 3) vertices), that pose's, found once."""
    if normals is not None or "normal" not in channels or (vertices is not None and vertices.ndim != 2):
        return normals
    return vertex_normals(mesh.vertices if vertices is None else vertices, faces)


def _project(mesh: Mesh, cameras: Camera, vertices: Tensor | None, near: Tensor | None, far: Tensor | None,
             channels: Seq[str]) -> tuple[Tensor, Tensor, Tensor]:
    """-> (vertices (B, V, 3), faces (F, 3), clip positions (B, V, 4)); checks the channels and shapes."""
    unknown = set(channels) - set(CHANNELS)
    if unknown:
        raise V2M4Error(f"unknown render channels {sorted(unknown)}; choose from {CHANNELS}")
    verts = mesh.vertices if vertices is None else vertices
    B = len(cameras)
    if verts.ndim == 2:
        verts_b = verts[None].expand(B, -1, -1)
    elif verts.shape[0] == B:
        verts_b = verts
    else:
        raise V2M4Error(f"vertices must be (V, 3) or ({B}, V, 3) for {B} cameras, got {tuple(verts.shape)}")
    faces = mesh.faces.to(verts.device)
    if near is None or far is None:
        near, far = near_far(verts, cameras)
    P = cameras.clip_from_world(near, far).to(verts.dtype)  # (B, 4, 4)
    homo = torch.cat([verts_b, torch.ones_like(verts_b[..., :1])], -1)
    return verts_b, faces, homo @ P.transpose(1, 2)


def _shade(frag, mesh: Mesh, cameras: Camera, verts_b: Tensor, faces: Tensor, pos: Tensor, *, channels: Seq[str],
           topology, background, antialias_edges: bool, sliver_area: float,
           crossings: int | None = None, normals: Tensor | None = None, per_pixel: bool = False,
           compiled: bool = True) -> dict[str, Tensor]:
    """The channels of fragments frag (``_torch.Fragments``, ``_visible.VisibleFragments`` or nvdiffrast's dense
    ones); per_pixel as in ``render``; compiled: ``RenderContext.compiled``."""
    emit = frag.rows if per_pixel else frag.dense
    guard = sliver_area > 0 and torch.is_grad_enabled() and pos.requires_grad
    shaded = "rgb" in channels or "mask" in channels
    area = _torch_aa.screen_area(pos, faces, cameras.resolution) if guard or (shaded and antialias_edges) else None
    if guard:
        # A triangle seen almost edge-on covers a pixel centre now and then, and there its barycentrics'
        # derivatives are ~1 / area: a few such pixels (0.01% of a 20k-face mesh's at 256²) outweigh all the
        # others in d(image)/d(vertices), while their true share of the pixel is ~area. Their colour stays;
        # their position gradient is dropped (the silhouette gradient still comes from the antialias).
        frag = frag.guard_slivers(area.abs() < sliver_area)
    out: dict[str, Tensor] = {}
    if antialias_edges and topology is None and shaded:
        topology = edge_topology(faces, mesh.vertices)

    if shaded:
        if "rgb" in channels:
            if mesh.texture is not None:
                col = frag.texture(mesh.texture.to(verts_b.device), frag.interpolate(mesh.uv.to(verts_b.device), faces))
            elif mesh.vertex_colors is not None:
                col = frag.interpolate(mesh.vertex_colors.to(verts_b.device), faces)
            else:
                col = frag.full(3, 0.7)
            # a number by a fill, not a copy from the host (a CUDA graph captures no copy)
            bg = verts_b.new_full((), float(background)) if isinstance(background, (int, float)) else \
                torch.as_tensor(background, dtype=verts_b.dtype, device=verts_b.device)
            img = frag.dense(torch.cat([col, frag.ones()], -1), torch.cat([bg.expand(3), bg.new_zeros(1)]))
        else:
            img = frag.dense(frag.ones())
        if antialias_edges:
            img = _torch_aa.antialias(img, frag.depth_buffer(), pos, faces, topology, area, crossings,
                                      compiled=compiled)
        if "rgb" in channels:
            out["rgb"] = img[..., :3]
        if "mask" in channels:
            out["mask"] = img[..., -1]
    if "points" in channels:
        out["points"] = emit(frag.interpolate(verts_b, faces))
    if "depth" in channels:
        # depth along the view axis is linear in position, so interpolating it per vertex is exact
        E = cameras.cam_from_world.to(verts_b.dtype)
        zc = (verts_b * E[:, None, 2, :3]).sum(-1, keepdim=True) + E[:, None, 2, 3:]
        out["depth"] = emit(-frag.interpolate(zc, faces))[..., 0]
    if "normal" in channels:
        vn = vertex_normals(verts_b, faces) if normals is None else normals
        n = torch.nn.functional.normalize(frag.interpolate(vn, faces), dim=-1, eps=1e-12)
        out["normal"] = emit(n)
    if per_pixel:
        out["pixel"] = frag.row_pixels()
    if "tri_id" in channels:
        out["tri_id"] = frag.tri_id()
    return out


@dataclass(frozen=True)
class ViewMerge:
    """B meshes as one, for renders in which view b shows meshes[b] alone (``render_each``): mesh, the meshes
    concatenated (vertex colours too; grey where a mesh has none); mine (B, V) bool, the vertices of view b's
    mesh; topology, each mesh's own edge topology, offset (welding the merged mesh would join the meshes)."""

    mesh: Mesh
    mine: Tensor
    topology: tuple[Tensor, Tensor, Tensor]

    def place(self, cameras: Camera) -> tuple[Tensor, Tensor, Tensor]:
        """(B, V, 3) positions of each view (every other mesh one unit behind the camera, which looks down its -Z:
        w < 0 there, so both rasterisers drop those triangles) and near, far (B,) of each view's own mesh. No host
        synchronisation."""
        verts = self.mesh.vertices
        behind = (cameras.world_from_cam[:, :3, 3] + cameras.world_from_cam[:, :3, 2]).detach().to(verts)  # (B, 3)
        near, far = near_far(verts, cameras, mask=self.mine)
        return torch.where(self.mine[..., None], verts[None], behind[:, None]), near, far


def can_merge_views(meshes: Seq[Mesh]) -> bool:
    """Whether ``merge_views`` serves these meshes: several, none textured (their textures would differ)."""
    return len(meshes) > 1 and all(m.texture is None for m in meshes)


def merge_views(meshes: Seq[Mesh], topologies: Seq[tuple[Tensor, Tensor, Tensor]] | None = None) -> ViewMerge:
    """The ``ViewMerge`` of B untextured meshes (topologies: each mesh's ``edge_topology``, found when None)."""
    B = len(meshes)
    dev = meshes[0].vertices.device
    nv = [int(m.vertices.shape[0]) for m in meshes]
    v_off = list(accumulate(nv[:-1], initial=0))
    f_off = list(accumulate((int(m.faces.shape[0]) for m in meshes[:-1]), initial=0))
    faces = torch.cat([m.faces.to(dev).long() + o for m, o in zip(meshes, v_off)])
    colors = None
    if any(m.vertex_colors is not None for m in meshes):
        colors = torch.cat([m.vertex_colors.to(dev) if m.vertex_colors is not None
                            else torch.full((n, 3), 0.7, device=dev) for m, n in zip(meshes, nv)])
    verts = torch.cat([m.vertices for m in meshes])
    owner = torch.repeat_interleave(torch.arange(B, device=dev), torch.tensor(nv, device=dev))
    mine = owner[None] == torch.arange(B, device=dev)[:, None]  # (B, V)
    if topologies is None:
        topologies = [edge_topology(m.faces.to(dev), m.vertices) for m in meshes]
    topology = tuple(torch.cat(parts) for parts in zip(*[
        (e + vo, torch.where(ef >= 0, ef + fo, ef), torch.where(op >= 0, op + vo, op))
        for (e, ef, op), vo, fo in zip(topologies, v_off, f_off)]))
    return ViewMerge(Mesh(verts, faces, vertex_colors=colors), mine, topology)


def render_each(ctx: RenderContext, meshes: Seq[Mesh], cameras: Camera, *, channels: Seq[str] = ("rgb", "mask"),
                topologies: Seq[tuple[Tensor, Tensor, Tensor]] | None = None, **kw) -> dict[str, Tensor]:
    """View b of ``cameras`` shows ``meshes[b]`` alone: B different meshes (any topologies) in one render call.

    What it is for: a GPU is bound by kernel launches, not arithmetic, when it renders one small view per call,
    so optimising B independent poses (camera refinement of B frames) in one call per step is B times fewer
    launches. The meshes are concatenated, and in view b the vertices of every other mesh are put behind the
    camera, where both rasterisers drop their triangles (``merge_views``). Work grows as B² x faces, so keep B to
    tens. Meshes with textures are rendered one per call (their textures differ); vertex colours are concatenated.
    Keyword arguments go to render(); near/far default to each mesh's own depth range in its view.
    """
    B = len(meshes)
    if len(cameras) != B:
        raise V2M4Error(f"render_each needs one camera per mesh, got {len(cameras)} cameras for {B} meshes")
    if not can_merge_views(meshes):
        outs = [render(ctx, m, cameras[b], channels=channels, topology=None if topologies is None else topologies[b],
                       **kw) for b, m in enumerate(meshes)]
        return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
    merged = merge_views(meshes, topologies)
    verts_b, near, far = merged.place(cameras)
    if kw.get("near") is None or kw.get("far") is None:
        kw["near"], kw["far"] = near, far
    return render(ctx, merged.mesh, cameras, channels=channels, vertices=verts_b, topology=merged.topology, **kw)
