"""The video's light, estimated and taken out of the texture (ours, beyond the paper).

A video shows its object lit: each pixel is the surface's base colour times the light that falls on it. A texture
baked from the frames as they are keeps that light (dark flanks, a bright top), so an engine that lights the asset
lights it twice, and from a side the video never showed the baked shading belongs to no light at all. The
generated meshes' colours are base colour, unlit. Where a keyframe's generated mesh and its video frame cover the
same pixel, video = base colour x shading(normal) in linear light; shading under distant light is a smooth function
of the surface normal, which the nine spherical harmonics of degree at most 2 represent for Lambertian reflection to
within a few percent (Ramamoorthi and Hanrahan, "An efficient representation for irradiance environment maps",
2001). One grey shading (white light) is fitted to every such pixel by least squares (``fit_light``); the frames
are divided by it at our own surface's normals before they supervise the texture (``unlight``; a dim pixel's error
grows with the division, so each weighs by its shading: ``TextureConfig.shade_weight``), and the input-view
figures show the asset under it (``relight``), as the video showed the object.

Colours are sRGB in [0, 1] as images store them; the model works in linear light. Tensors: images (..., 3), normals
(..., 3) unit, world frame (0 where nothing is seen), light (9,).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import render as R

__all__ = ["FLOOR", "SRGB_GAMMA", "sh_basis", "fit_light", "shading", "unlight", "relight", "render_lit",
           "srgb_to_linear", "linear_to_srgb"]

# the shading's floor, as a share of its mean over all directions: the division in ``unlight`` must not blow up
# where the fitted harmonics dip towards 0 (a Lambertian surface facing away from the light gets the ambient part)
FLOOR = 0.1
# sRGB's curve is close to a power 1/2.2 (IEC 61966-2-1): a factor s on linear light is about s^(1/2.2) in sRGB
SRGB_GAMMA = 2.2


def srgb_to_linear(x: Tensor) -> Tensor:
    x = x.clamp(0, 1)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: Tensor) -> Tensor:
    x = x.clamp(0, 1)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(1e-12) ** (1 / 2.4) - 0.055)


def sh_basis(normals: Tensor) -> Tensor:
    """(..., 3) unit normals -> (..., 9) the real spherical harmonics of degree 0-2 (unnormalised: 1, x, y, z,
    xy, yz, xz, x² - y², 3z² - 1; the constant is the mean over all directions, the others average to 0)."""
    x, y, z = normals.unbind(-1)
    return torch.stack([torch.ones_like(x), x, y, z, x * y, y * z, x * z, x * x - y * y, 3 * z * z - 1], -1)


def fit_light(video: Tensor, generated: Tensor, normals: Tensor, *, min_pixels: int = 500,
              ridge: float = 1e-4) -> Tensor | None:
    """The light (9,) with video.rgb = generated.rgb x shading(normals) in linear light, by ridge-regularised
    least squares over the pixels both RGBA images (N, H, W, 4) cover fully (alpha above 0.99: no silhouette edge);
    normals (N, H, W, 3) the generated surface's. None where fewer than ``min_pixels`` pixels are shared or the
    fit's mean shading is not positive (nothing to go on)."""
    sel = (video[..., 3] > 0.99) & (generated[..., 3] > 0.99) & (normals.norm(dim=-1) > 0.5)
    if int(sel.sum()) < min_pixels:
        return None
    v = srgb_to_linear(video[..., :3][sel]).double()
    g = srgb_to_linear(generated[..., :3][sel]).double()
    b = sh_basis(torch.nn.functional.normalize(normals[sel].double(), dim=-1))
    a = (g[:, :, None] * b[:, None, :]).reshape(-1, 9)  # each channel a row: v_c = g_c * (b . light)
    y = v.reshape(-1)
    n = a.shape[0]
    # the ridge (relative to the system's scale) pulls towards no light direction at all (the constant alone), not
    # towards black: it only decides what the pixels leave undetermined (normals of one side only)
    lhs = a.T @ a / n
    lam = ridge * float(lhs.diagonal().mean())
    rhs = a.T @ y / n
    rhs[0] += lam * float((a[:, 0] * y).sum() / (a[:, 0] * a[:, 0]).sum().clamp_min(1e-12))
    lhs = lhs + lam * torch.eye(9, dtype=a.dtype, device=a.device)
    light = torch.linalg.solve(lhs, rhs)
    if not bool(torch.isfinite(light).all()) or float(light[0]) <= 0:
        return None
    return light.to(video.dtype)


def shading(normals: Tensor, light: Tensor) -> Tensor:
    """(...) the grey shading at unit normals (..., 3), at least ``FLOOR`` x its mean over all directions."""
    light = light.to(normals)
    return (sh_basis(normals) @ light).clamp_min(FLOOR * float(light[0]))


def unlight(rgb: Tensor, normals: Tensor, light: Tensor) -> Tensor:
    """Lit sRGB colours (..., 3) seen on a surface of normals (..., 3) back to base colour (sRGB)."""
    return linear_to_srgb(srgb_to_linear(rgb) / shading(normals, light)[..., None])


def relight(rgb: Tensor, normals: Tensor, light: Tensor) -> Tensor:
    """Base colours (..., 3) (sRGB) as the light shows them on a surface of normals (..., 3) (sRGB)."""
    return linear_to_srgb(srgb_to_linear(rgb) * shading(normals, light)[..., None])


def render_lit(ctx, mesh, cameras, light: Tensor | None, *, vertices: Tensor | None = None,
               weld: Tensor | None = None, channels: tuple[str, ...] = ("rgb", "mask")) -> dict[str, Tensor]:
    """``render.render`` of the mesh's channels, its rgb under the light (``relight``) where one is given. Normals
    (rendered for the light or when asked for) are those of the welded surface: the texture's seams split vertices,
    not the shading. weld: ``render.weld_map`` of the mesh's vertices, found here when not given."""
    if light is None and "normal" not in channels:
        return R.render(ctx, mesh, cameras, channels=channels, vertices=vertices)
    weld = R.weld_map(mesh.vertices) if weld is None else weld
    nrm = R.vertex_normals(mesh.vertices if vertices is None else vertices, mesh.faces, weld)
    out = R.render(ctx, mesh, cameras, channels=tuple(dict.fromkeys((*channels, "normal"))), vertices=vertices,
                   normals=nrm)
    if light is not None:
        out["rgb"] = relight(out["rgb"], out["normal"], light)
    return out
