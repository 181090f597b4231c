"""One shared texture map for the whole animation (Sec. 4.4, Appendix A).

A uv atlas is made once on the rest mesh (xatlas), which splits it at seams; every frame's positions follow the
split through ``vmap``. The texture is then the only parameter, fitted with L1 + total variation to (a) many views
of the first keyframe's appearance and (b) every keyframe's appearance under the video camera, (b) weighted higher.
The fit starts from each texel's weighted mean of the pixels nearest it; the fast preset fits with a squared error
instead of L1 (``TextureConfig.fast`` says why).

Why the geometry is rasterised once: it does not change while the texture is fitted, so each view's per-pixel uv
and coverage are fixed. We rasterise every view once (batched) and each step is one bilinear lookup of all
supervised pixels plus its backward pass: the same loss as re-rendering, at a fraction of the cost. Pixels on
silhouette edges are left out (their colour mixes object and background), as are pixels the target does not cover.

uv convention: uv (0, 0) is the top-left texel of ``texture`` (H, W, 3), v grows downward (the renderer samples
texel row v * H), which is glTF's convention, so the atlas and the texture export as they are.

Beyond the paper (``TextureConfig.video_supervision``): the reference views are supervised with the input frames
themselves (where their alpha covers), the most faithful source for everything the camera saw. Then (a) only
fills what the video never saw: a multi-view pixel is weighted by the share of its bilinear taps on texels no
video pixel reached, so a generated appearance that differs from the video (a learned generator's colour drift,
our synthetic generator's colour jitter, the video's shading) cannot pull the seen texels away from the video;
and (a)'s targets are first mapped into the video's colours by an affine colour transform fitted where both see
the object (``colour_transfer``), so the unseen side matches the seen side instead of showing a seam. Before any of
this the video's light is divided out of the frames (``TextureConfig.delight``, ``lighting``): the generated
colours are base colour, and so is the texture.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .. import render as R
from .._graphs import StepGraphs
from ..camera import DEFAULT_FOV_DEG, Camera, near_far, orbit_camera
from ..errors import V2M4Error
from ..optim import Adam
from ..types import Frames, Mesh, Sequence, load_npz, atomic_save_npz
from .lighting import SRGB_GAMMA, fit_light, shading, unlight


__all__ = ["TextureConfig", "TextureResult", "bake_texture", "fit_texture", "uv_atlas", "ring_views", "random_views",
           "unreached_fraction"]


@dataclass(frozen=True)
class TextureConfig:
    size: int = 1024                  # ours (the default); the paper gives none
    iters: int = 2500                 # Appendix A: steps from the start texture (each texel the weighted mean of
                                      # the pixels nearest it); 0: that start is the bake
    loss: str = "l1"                  # Appendix A: L1 (+ TV) on the supervised pixels; "l2": squared error
    multi_views: int = 100            # Appendix A: random views of the first mesh
    ref_weight: float = 2.0           # Sec. 4.4 "higher weights" on reference views; the official code uses 2
    tv_weight: float = 0.01           # ours: Appendix A uses TV without a weight
    lr: float = 0.01                  # ours (Adam on texel values in [0, 1])
    render_res: int = 512             # ours: resolution of the multi-view targets
    fov_deg: float = DEFAULT_FOV_DEG  # ours: multi-view field of view (the generators' own)
    padding: int = 4                  # ours: texels between atlas charts (bilinear lookups must not bleed)
    video_supervision: bool = True    # beyond the paper: reference views supervised by the video frames
    delight: bool = True              # beyond the paper: the video's light is estimated against the generated
                                      # appearance and divided out of the frames before they supervise the texture,
                                      # so the texture is base colour (``lighting``); no effect without video
                                      # supervision or without a generated appearance
    shade_weight: bool = True         # ours: with ``delight``, each frame pixel's weight is its shading^(2/2.2):
                                      # dividing by the shading s scales the frame's error by about s^(-1/2.2) in
                                      # sRGB, so dim pixels (a flank turned from the light) say least about the
                                      # base colour (inverse-variance weights; the mean weight is unchanged)
    video_frames: int = 0             # beyond the paper: with the whole-clip registration, the video of this many
                                      # registered frames (evenly spread; every frame of a shorter clip)
                                      # supervises the texture, not only the keyframes'; 0: the keyframes'
    cuda_graphs: bool = True          # ours, no effect on the result: on CUDA each step of the fit after the first
                                      # few is replayed as one CUDA graph (its shapes never change: the supervised
                                      # pixels' texels are found once), not launched op by op from Python

    @staticmethod
    def paper() -> "TextureConfig":
        """The paper's numbers. The supervision source stays the video: the paper's reference views come from the
        generator's appearance after its Sec. 4.2 refinement, which matches the video; without that refinement
        (it needs TRELLIS) the generated appearance drifts from the video (bench ``full_genref``)."""
        return TextureConfig()

    @staticmethod
    def fast() -> "TextureConfig":
        """CPU preset: smaller texture and views, and 50 steps of an L2 (+ TV) fit in place of the paper's L1.
        Measured on the ten bench items' kept runs (docs/calibration.md): 25-150 L1 steps lowered input-view PSNR
        on every item (by up to 0.8 dB) below their own start texture, since L1 moves each texel towards the median
        of what the views show it and PSNR's best texel is the mean; 50 L2 steps from that start raised input-view
        PSNR on 9 of 10 items, SSIM on 9, and novel-view SSIM by 0.04 (median), as 150 did."""
        return TextureConfig(size=256, iters=50, loss="l2", multi_views=64, render_res=256)


@dataclass(frozen=True)
class TextureResult:
    """mesh: the rest mesh split at seams, with uv and the texture; vmap (V',) int64 original vertex of each split
    vertex; unreached (S, S) bool: texels no supervised pixel touched (before filling); losses: the fit's loss
    every 50 steps; seconds: the fit's wall time; light (9,): the video's light divided out of the texture
    (``lighting``; None where it was not estimated), under which the asset looks as the video showed it."""

    mesh: Mesh
    vmap: Tensor
    unreached: Tensor
    losses: tuple[float, ...] = ()
    seconds: float = 0.0
    light: Tensor | None = None

    def save(self, path: str | os.PathLike) -> None:
        light = torch.zeros(0) if self.light is None else self.light.detach().cpu()
        atomic_save_npz(path, **self.mesh.arrays("tex_"), vmap=self.vmap, unreached=self.unreached,
                        losses=torch.tensor(self.losses, dtype=torch.float64), seconds=torch.tensor(self.seconds),
                        light=light)

    @staticmethod
    def load(path: str | os.PathLike) -> "TextureResult":
        d = load_npz(path)
        return TextureResult(mesh=Mesh.from_arrays(d, "tex_"), vmap=torch.as_tensor(d["vmap"]),
                             unreached=torch.as_tensor(d["unreached"]).bool(),
                             losses=tuple(float(x) for x in d.get("losses", ())),
                             seconds=float(d.get("seconds", 0.0)),
                             light=torch.as_tensor(d["light"]).float() if len(d.get("light", ())) else None)


def bake_texture(frames: Frames, reposed: list[Mesh], sequence: Sequence, camera: Camera, cfg: TextureConfig,
                 ctx: R.RenderContext, *, generator: torch.Generator, progress=None, first: int = 0) -> TextureResult:
    """The texture stage (Sec. 4.4): a uv atlas on the registered rest mesh, then one texture fitted to every view.

    frames: the input frames the texture is fitted to (N: the keyframes, or frames the registration gave positions:
    ``TextureConfig.video_frames``); reposed: each keyframe's generated mesh in the world (its colours are
    the paper's targets); sequence: the registration's rest mesh and those frames' positions (N, V, 3); camera: the
    video camera (1 view); generator: draws the multi-views; first: the index in frames of the first keyframe,
    whose generated mesh (reposed[0]) gives the multi-view targets. Without video supervision the reference views
    are the generated meshes' own, so frames must then be the keyframes.
    """
    rest, key_vertices = sequence.rest, sequence.vertices.to(sequence.rest.vertices.device)
    N = key_vertices.shape[0]
    if len(frames) != N:
        raise V2M4Error(f"{len(frames)} frames for {N} registered positions")
    atlas, vmap = uv_atlas(rest, size=cfg.size, padding=cfg.padding)
    multi = random_views(reposed[0], cfg.multi_views, cfg.render_res, generator, fov_deg=cfg.fov_deg)
    targets = appearance_renders([reposed[0]], multi, ctx)
    light, ref_weight = None, None
    if cfg.video_supervision:
        ref = frames.rgba.to(rest.vertices.device)
        if cfg.delight and _coloured(reposed[0]):
            light = video_light(ref, reposed, camera, ctx, first)
        if light is not None:  # the frames as base colour: divided by the light at our surface's normals
            cams = Camera(camera.K.expand(N, 3, 3), camera.cam_from_world.expand(N, 4, 4), camera.resolution)
            with torch.no_grad():
                nrm = R.render(ctx, rest, cams, channels=("normal",), vertices=key_vertices)["normal"].to(ref)
            ref = torch.cat([unlight(ref[..., :3], nrm, light), ref[..., 3:]], -1)
            if cfg.shade_weight:
                ref_weight = shading(nrm, light) ** (2 / SRGB_GAMMA)
        # the generated appearance mapped into the video's colours where both see the object (module docstring)
        generated = appearance_renders(reposed[:1], camera, ctx)
        targets = apply_colour_transfer(targets, colour_transfer(generated, ref[first:first + 1].to(generated)))
    else:
        if len(reposed) != N:
            raise V2M4Error(f"without video supervision the reference views are the {len(reposed)} keyframes' "
                            f"generated meshes, but {N} frames were given")
        cams = Camera(camera.K.expand(N, 3, 3), camera.cam_from_world.expand(N, 4, 4), camera.resolution)
        ref = appearance_renders(reposed, cams, ctx)
    out = fit_texture(atlas, vmap, key_vertices, camera, ref, multi, targets, cfg, ctx, progress=progress,
                      ref_pixel_weight=ref_weight)
    return replace(out, light=light)


def _coloured(mesh: Mesh) -> bool:
    return mesh.vertex_colors is not None or mesh.texture is not None


def video_light(ref: Tensor, reposed: list[Mesh], camera: Camera, ctx: R.RenderContext, first: int = 0) -> Tensor | None:
    """The video's light (9,) (``lighting.fit_light``) from the frames ref (N, H, W, 4) and the re-posed generated
    meshes seen through the video camera: every keyframe's where the frames are the keyframes (N == len(reposed)),
    else the first keyframe's (frame ``first``). None where the fit has nothing to go on."""
    pairs = list(enumerate(reposed)) if len(reposed) == ref.shape[0] else [(first, reposed[0])]
    gen, nrm = [], []
    with torch.no_grad():
        for _, m in pairs:  # each generated mesh has its own topology: one render each
            r = R.render(ctx, m, camera, channels=("rgb", "mask", "normal"))
            gen.append(torch.cat([r["rgb"], r["mask"][..., None]], -1))
            nrm.append(r["normal"])
    idx = torch.tensor([i for i, _ in pairs], device=ref.device)
    return fit_light(ref.index_select(0, idx), torch.cat(gen).to(ref), torch.cat(nrm).to(ref))


def uv_atlas(mesh: Mesh, *, size: int = 1024, padding: int = 4) -> tuple[Mesh, Tensor]:
    """xatlas atlas of ``mesh``: the mesh split at seams (uv (V', 2) in [0, 1]) and vmap (V',) int64 such that
    new.vertices == mesh.vertices[vmap]. Vertex colours follow the split."""
    import xatlas

    v = mesh.vertices.detach().cpu().numpy().astype(np.float32)
    f = mesh.faces.detach().cpu().numpy().astype(np.uint32)
    atlas = xatlas.Atlas()
    atlas.add_mesh(v, f)
    pack = xatlas.PackOptions()
    pack.resolution = size
    pack.padding = padding
    pack.bilinear = True
    atlas.generate(xatlas.ChartOptions(), pack)
    vmap, faces, uv = atlas[0]
    vmap_t = torch.as_tensor(vmap.astype(np.int64), device=mesh.vertices.device)
    colors = mesh.vertex_colors[vmap_t] if mesh.vertex_colors is not None else None
    out = Mesh(mesh.vertices[vmap_t], torch.as_tensor(faces.astype(np.int64), device=mesh.vertices.device),
               uv=torch.as_tensor(uv, dtype=torch.float32, device=mesh.vertices.device), vertex_colors=colors)
    return out, vmap_t


def random_views(mesh: Mesh, n: int, resolution: int, generator: torch.Generator, *, fov_deg: float = DEFAULT_FOV_DEG,
                 vertices: Tensor | None = None) -> Camera:
    """n cameras on a sphere around the mesh (uniform directions), each seeing its whole bounding sphere."""
    v = mesh.vertices if vertices is None else vertices
    centre = (v.amax(0) + v.amin(0)) / 2
    radius = float((v - centre).norm(dim=-1).max())
    yaw = (torch.rand(n, generator=generator) * 2 - 1) * math.pi
    pitch = torch.asin(torch.rand(n, generator=generator) * 2 - 1).clamp(-1.45, 1.45)
    dist = 1.1 * radius / math.sin(math.radians(fov_deg) / 2)
    dev = v.device
    return orbit_camera(yaw.to(dev), pitch.to(dev), torch.full((n,), dist, device=dev),
                        centre[None].expand(n, 3).contiguous(), fov_deg=fov_deg, resolution=(resolution, resolution))


def ring_views(mesh: Mesh, n: int, resolution: int, *, pitch_deg: float = 20.0,
               fov_deg: float = DEFAULT_FOV_DEG) -> Camera:
    """n cameras evenly around the mesh at one elevation (for coverage checks and previews)."""
    v = mesh.vertices
    centre = (v.amax(0) + v.amin(0)) / 2
    radius = float((v - centre).norm(dim=-1).max())
    yaw = torch.arange(n, dtype=torch.float32, device=v.device) * (2 * math.pi / n)
    pitch = torch.full((n,), math.radians(pitch_deg), device=v.device)
    dist = 1.1 * radius / math.sin(math.radians(fov_deg) / 2)
    return orbit_camera(yaw, pitch, torch.full((n,), dist, device=v.device), centre[None].expand(n, 3).contiguous(),
                        fov_deg=fov_deg, resolution=(resolution, resolution))


def appearance_renders(meshes: list[Mesh], cameras: Camera, ctx: R.RenderContext, *, chunk: int = 32) -> Tensor:
    """(N, H, W, 4) RGBA renders of coloured meshes: one camera per mesh (len(meshes) == len(cameras)), or one mesh
    seen by every camera. Each mesh keeps its own topology, so different meshes render in separate calls."""
    out = []
    with torch.no_grad():
        if len(meshes) == 1:
            for s in range(0, len(cameras), chunk):
                r = R.render(ctx, meshes[0], cameras[s: s + chunk], channels=("rgb", "mask"))
                out.append(torch.cat([r["rgb"], r["mask"][..., None]], -1))
        else:
            if len(meshes) != len(cameras):
                raise V2M4Error(f"{len(meshes)} meshes for {len(cameras)} cameras")
            for k, m in enumerate(meshes):
                r = R.render(ctx, m, cameras[k], channels=("rgb", "mask"))
                out.append(torch.cat([r["rgb"], r["mask"][..., None]], -1))
    return torch.cat(out)


def colour_transfer(source: Tensor, target: Tensor, *, ridge: float = 1e-2) -> Tensor:
    """(3, 4) affine colour map A with target.rgb ≈ A @ [source.rgb, 1], fitted by ridge-regularised least squares
    (towards the identity) over the pixels both RGBA stacks (N, H, W, 4) cover. Identity when they share none."""
    sel = (source[..., 3] > 0.5) & (target[..., 3] > 0.5)
    eye = torch.eye(3, 4, dtype=torch.float64, device=source.device)
    if int(sel.sum()) < 16:
        return eye.to(source.dtype)
    x = torch.cat([source[..., :3][sel], torch.ones_like(source[..., :1][sel])], -1).double()
    y = target[..., :3][sel].double()
    n = x.shape[0]
    lhs = x.T @ x / n + ridge * torch.eye(4, dtype=torch.float64, device=x.device)
    rhs = x.T @ y / n + ridge * eye.T
    return torch.linalg.solve(lhs, rhs).T.to(source.dtype)


def apply_colour_transfer(images: Tensor, a: Tensor) -> Tensor:
    rgb = (images[..., :3] @ a[:, :3].T + a[:, 3]).clamp(0, 1)
    return torch.cat([rgb, images[..., 3:]], -1)


def _supervised_pixels(ctx, mesh: Mesh, vertices: Tensor, cameras: Camera, targets: Tensor, weight: float,
                       chunk: int = 16, pixel_weight: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """uv (P, 2), colour (P, 3), weight (P,) and uv footprint (P,) of every pixel covered by both the render
    (fully, not an edge) and the target (alpha > 0.5). vertices: (V, 3) or (N, V, 3), one pose per camera;
    pixel_weight (N, H, W): each pixel's weight relative to the others, scaled so that their mean is ``weight``."""
    uvs, cols, foot, pw = [], [], [], []
    if targets.shape[1:3] != cameras.resolution:
        raise V2M4Error(f"targets are {tuple(targets.shape[1:3])} but cameras render {cameras.resolution}")
    with torch.no_grad():
        for s in range(0, len(cameras), chunk):
            cams = cameras[s: s + chunk]
            vb = vertices if vertices.ndim == 2 else vertices[s: s + chunk]
            vb = vb[None].expand(len(cams), -1, -1) if vb.ndim == 2 else vb
            homo = torch.cat([vb, torch.ones_like(vb[..., :1])], -1)
            near, far = near_far(vb, cams)
            pos = homo @ cams.clip_from_world(near, far).to(vb.dtype).transpose(1, 2)
            rast = R.rasterize(ctx, pos, mesh.faces, cams.resolution)
            uv = R.interpolate(ctx, mesh.uv.to(vb.device), rast, mesh.faces)
            covered = rast[..., 3] > 0
            # interior only: a pixel whose 4-neighbours are all covered (its colour is not mixed with background)
            c = covered.float()[:, None]
            interior = (-F.max_pool2d(-c, 3, stride=1, padding=1))[:, 0] > 0.5
            tgt = targets[s: s + chunk].to(vb.device)
            sel = interior & (tgt[..., 3] > 0.5)
            # the pixel's footprint in uv: its distance to the right and lower neighbours' uv (interior pixels
            # have both; across a seam the jump is large and is clipped by the caller's quantile)
            du = torch.zeros_like(uv[..., 0])
            du[:, :, :-1] = (uv[:, :, 1:] - uv[:, :, :-1]).abs().amax(-1)
            dv = torch.zeros_like(uv[..., 0])
            dv[:, :-1] = (uv[:, 1:] - uv[:, :-1]).abs().amax(-1)
            uvs.append(uv[sel])
            cols.append(tgt[..., :3][sel])
            foot.append(torch.maximum(du, dv)[sel])
            if pixel_weight is not None:
                pw.append(pixel_weight[s: s + chunk].to(uv)[sel])
    uv = torch.cat(uvs)
    col = torch.cat(cols)
    w = torch.full((uv.shape[0],), weight, device=uv.device, dtype=uv.dtype)
    if pixel_weight is not None and uv.shape[0]:
        pw = torch.cat(pw)
        w = w * pw / pw.mean().clamp_min(1e-12)
    return uv, col, w, torch.cat(foot)


def _reached(uv: Tensor, footprint: Tensor, size: int) -> Tensor:
    """(S, S) bool: texels inside the footprint of any supervised pixel.

    A pixel's bilinear taps touch 2 x 2 texels, but when the texture is denser than the views' pixels (a 1024²
    map seen at 512²) a pixel stands for a block of texels, the gaps between neighbouring samples are seen too:
    the taps are dilated by the typical footprint (the median, in texels; seam jumps do not move a median).
    """
    x = uv[:, 0] * size - 0.5
    y = uv[:, 1] * size - 0.5
    x0, y0 = x.floor().long(), y.floor().long()
    hit = torch.zeros(size * size, dtype=torch.bool, device=uv.device)
    for dx in (0, 1):
        for dy in (0, 1):
            xi, yi = (x0 + dx).clamp(0, size - 1), (y0 + dy).clamp(0, size - 1)
            hit[yi * size + xi] = True
    hit = hit.view(size, size)
    k = int(math.ceil(float(footprint.median()) * size)) if footprint.numel() else 0
    k = max(0, min(k, 16))
    if k > 1:
        r = k // 2
        hit = F.max_pool2d(hit.float()[None, None], 2 * r + 1, stride=1, padding=r)[0, 0] > 0
    return hit


def _splat_init(uv: Tensor, col: Tensor, w: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Weighted mean colour per nearest texel, and where any pixel landed: the starting texture."""
    xi = (uv[:, 0] * size).long().clamp(0, size - 1)
    yi = (uv[:, 1] * size).long().clamp(0, size - 1)
    idx = yi * size + xi
    acc = torch.zeros(size * size, 3, device=uv.device, dtype=col.dtype).index_add(0, idx, col * w[:, None])
    wsum = torch.zeros(size * size, device=uv.device, dtype=col.dtype).index_add(0, idx, w)
    tex = acc / wsum.clamp_min(1e-12)[:, None]
    return tex.view(size, size, 3), (wsum > 0).view(size, size)


def fill_unreached(tex: Tensor, known: Tensor, *, max_iters: int | None = None) -> Tensor:
    """Fill texels outside ``known`` (S, S) by repeated 3x3 averaging of known neighbours (a push outward, so chart
    borders extend into the padding and no background colour bleeds into a lookup); leftovers get the mean."""
    t = tex.detach().clone().permute(2, 0, 1)[None]
    k = known.float()[None, None].to(t)
    ones = torch.ones(1, 1, 3, 3, device=t.device, dtype=t.dtype)
    for _ in range(max_iters or tex.shape[0]):
        if bool(k.min() > 0):
            break
        s = F.conv2d(t * k, ones.expand(3, 1, 3, 3), padding=1, groups=3)
        n = F.conv2d(k, ones, padding=1)
        grow = (n > 0) & (k == 0)
        t = torch.where(grow, s / n.clamp_min(1e-12), t)
        k = torch.maximum(k, grow.to(k))
    out = t[0].permute(1, 2, 0)
    if bool((k == 0).any()):
        mean = (out * k[0, 0][..., None]).sum((0, 1)) / k.sum().clamp_min(1)
        out = torch.where(k[0, 0][..., None] > 0, out, mean)
    return out.contiguous()


def fit_texture(rest: Mesh, vmap: Tensor, key_vertices: Tensor, ref_camera: Camera, ref_targets: Tensor,
                 multi_cameras: Camera, multi_targets: Tensor, cfg: TextureConfig, ctx: R.RenderContext,
                 *, progress=None, ref_pixel_weight: Tensor | None = None) -> TextureResult:
    """Fit one texture to every supervised view (Sec. 4.4).

    rest: the atlas mesh (uv set, split at seams); vmap (V',) its original vertex per split vertex; key_vertices
    (K, V, 3) every keyframe's positions (original indexing); ref_camera: the video camera (1 view); ref_targets
    (K, H, W, 4) what each keyframe should look like from it; multi_cameras (N views) and multi_targets (N, h, w, 4)
    views of the first keyframe; ref_pixel_weight (K, H, W): the reference pixels' weights relative to each other
    (their mean stays ``cfg.ref_weight``).
    """
    t0 = time.perf_counter()
    if rest.uv is None:
        raise V2M4Error("fit_texture needs a mesh with uv (run uv_atlas first)")
    if cfg.loss not in ("l1", "l2"):
        raise V2M4Error(f"unknown texture loss {cfg.loss!r}; choose l1 or l2")
    dev = rest.vertices.device
    K = key_vertices.shape[0]
    if ref_targets.shape[0] != K:
        raise V2M4Error(f"{ref_targets.shape[0]} reference targets for {K} keyframes")
    kv = key_vertices.to(dev)[:, vmap]
    ref_cams = Camera(ref_camera.K.expand(K, 3, 3), ref_camera.cam_from_world.expand(K, 4, 4), ref_camera.resolution)
    uv_r, col_r, w_r, f_r = _supervised_pixels(ctx, rest, kv, ref_cams, ref_targets, cfg.ref_weight,
                                               pixel_weight=ref_pixel_weight)
    uv_m, col_m, w_m, f_m = _supervised_pixels(ctx, rest, kv[0], multi_cameras, multi_targets, 1.0)
    uv = torch.cat([uv_r, uv_m])
    col = torch.cat([col_r, col_m]).clamp(0, 1)
    w = torch.cat([w_r, w_m])
    if uv.shape[0] == 0:
        raise V2M4Error("no pixel of any view covers the object; cannot bake a texture")
    S = cfg.size
    if cfg.video_supervision and uv_r.shape[0] and uv_m.shape[0]:
        # the video decides what it saw; the multi-view targets fill only the rest (module docstring)
        seen = _reached(uv_r, f_r, S).to(uv_m.dtype)
        w_m = w_m * (1 - R.sample_texture(seen[..., None].expand(-1, -1, 3), uv_m)[:, 0]).clamp(0, 1)
        w = torch.cat([w_r, w_m])
    reached = _reached(uv, torch.cat([f_r, f_m]), S)
    init, landed = _splat_init(uv, col, w, S)
    tex = fill_unreached(init, landed).requires_grad_(True)
    graphs = StepGraphs([tex], enabled=cfg.cuda_graphs)
    # capturable: the step count lives on the device, so a captured step counts on each replay
    opt = Adam([tex], lr=cfg.lr, capturable=graphs.enabled)
    wn = w / w.sum()
    losses = []
    reads = R.texture_taps(uv, (S, S))  # the supervised pixels' texels, the same every step
    last: list[Tensor] = []  # the step's loss; a replay updates the captured step's in place

    def body():
        pred = R.sample_texture(tex, reads)
        err = pred - col
        loss = ((err.abs() if cfg.loss == "l1" else err * err).sum(-1) * wn).sum() / 3
        if cfg.tv_weight > 0:
            tv = (tex[1:] - tex[:-1]).abs().mean() + (tex[:, 1:] - tex[:, :-1]).abs().mean()
            loss = loss + cfg.tv_weight * tv
        loss.backward()
        opt.step()
        with torch.no_grad():
            tex.clamp_(0, 1)
        last[:] = [loss.detach()]

    for it in range(cfg.iters):
        graphs((), body)
        if it % 50 == 0 or it == cfg.iters - 1:
            losses.append(float(last[0]))
        if progress:
            progress(it + 1, cfg.iters)
    final = fill_unreached(tex.detach(), reached)
    return TextureResult(mesh=Mesh(rest.vertices, rest.faces, uv=rest.uv, texture=final), vmap=vmap,
                         unreached=~reached, losses=tuple(losses), seconds=time.perf_counter() - t0)


def unreached_fraction(mesh: Mesh, unreached: Tensor, cameras: Camera, ctx: R.RenderContext,
                       vertices: Tensor | None = None) -> float:
    """Share of object pixels, over the given views, whose nearest texel no supervised pixel reached."""
    v = mesh.vertices if vertices is None else vertices
    vb = v[None].expand(len(cameras), -1, -1) if v.ndim == 2 else v
    with torch.no_grad():
        near, far = near_far(vb, cameras)
        homo = torch.cat([vb, torch.ones_like(vb[..., :1])], -1)
        pos = homo @ cameras.clip_from_world(near, far).to(vb.dtype).transpose(1, 2)
        rast = R.rasterize(ctx, pos, mesh.faces, cameras.resolution)
        uv = R.interpolate(ctx, mesh.uv.to(vb.device), rast, mesh.faces)
        cov = rast[..., 3] > 0
        S = unreached.shape[0]
        u = unreached.to(uv.device).float()
        # a pixel counts when most of its bilinear weight falls on unreached texels (a chart's rim shows a
        # padding texel only as a minor tap, filled from its reached neighbour)
        x = uv[..., 0][cov] * S - 0.5
        y = uv[..., 1][cov] * S - 0.5
        x0, y0 = x.floor(), y.floor()
        fx, fy = x - x0, y - y0
        x0, y0 = x0.long(), y0.long()
        share = torch.zeros_like(x)
        for dx, wx in ((0, 1 - fx), (1, fx)):
            for dy, wy in ((0, 1 - fy), (1, fy)):
                share += wx * wy * u[(y0 + dy).clamp(0, S - 1), (x0 + dx).clamp(0, S - 1)]
        bad = share > 0.5
    return float(bad.float().mean()) if bad.numel() else 0.0


def texture_frames(n_frames: int, first_key: int, cfg: TextureConfig) -> Tensor:
    """(N,) int64 the frames whose video supervises the texture when the registration fitted all n_frames
    (``TextureConfig.video_frames``): at most that many, evenly spread, with the first keyframe's among them."""
    n = min(cfg.video_frames, n_frames)
    idx = torch.linspace(0, n_frames - 1, max(n, 1)).round().long()
    return torch.unique(torch.cat([idx, torch.tensor([first_key])]))
