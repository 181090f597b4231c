"""Novel-view appearance metrics: how an animated asset looks from every side, not only from the input camera.

An output is compared with a reference (the ground truth, textured) from ``views`` cameras evenly spread in
azimuth around the reference at every frame, after the output has been brought into the reference's frame (the
once-alignment the geometry metrics use, so drift counts). Each frame's cameras look at that frame's reference
centre from one distance for the whole clip (the clip's largest bounding sphere fills the field of view), so an
object that travels stays framed and a frame's size in the image says its size.

Images are (N, H, W, 3) in [0, 1] over a black background, masks (N, H, W) in [0, 1]; PSNR and SSIM are taken
over the union of both silhouettes, so a missing part and an extra part both count, while the empty background
does not inflate the score.
"""

from __future__ import annotations

import math
import statistics
from typing import Callable

import torch
from torch import Tensor

from ..camera import DEFAULT_FOV_DEG, Camera, orbit_camera
from . import image as I


def orbit_views(centres: Tensor, radius: float, *, views: int = 8, elevation_deg: float = 20.0,
                fov_deg: float = DEFAULT_FOV_DEG, resolution: tuple[int, int]) -> Camera:
    """(T * views) cameras: for each frame's centre (T, 3), ``views`` azimuths 360 / views degrees apart (the first
    on +Z), ``elevation_deg`` above the horizontal (+Y up), at the distance where a sphere of ``radius`` about the
    centre fills the vertical field of view. Frame t's views are rows t * views ... (t + 1) * views - 1."""
    T = centres.shape[0]
    dev, dt = centres.device, centres.dtype
    yaw = (torch.arange(views, dtype=dt, device=dev) * (2 * math.pi / views)).repeat(T)
    pitch = torch.full_like(yaw, math.radians(elevation_deg))
    dist = radius / math.sin(math.radians(fov_deg) / 2)
    target = centres.repeat_interleave(views, 0)
    return orbit_camera(yaw, pitch, torch.full_like(yaw, dist), target, fov_deg=fov_deg, resolution=resolution)


def image_scores(rgb: Tensor, mask: Tensor, ref_rgb: Tensor, ref_mask: Tensor) -> dict[str, list[float]]:
    """Per-view mask IoU, PSNR and SSIM of renders (N, H, W, 3) / (N, H, W) against reference renders, PSNR and
    SSIM over the union of both silhouettes (PSNR capped at 100 dB where the images agree exactly); and
    ``nv_psnr_shared``, PSNR over their intersection: the colour where both surfaces are seen, which the union's
    figure mixes with every pixel one silhouette covers and the other does not (object against background); and
    ``nv_psnr_texture_bound``, the union's PSNR once every pixel both silhouettes cover takes the reference's colour:
    what a perfect texture on this geometry would score, so the union's figure above it is the geometry's share."""
    union = torch.maximum(mask, ref_mask)
    both = ((mask > 0.5) & (ref_mask > 0.5))[..., None]
    return {"nv_mask_iou": I.mask_iou(mask, ref_mask).tolist(),
            "nv_psnr": I.masked_psnr(rgb, ref_rgb, union).tolist(),
            "nv_psnr_texture_bound": I.masked_psnr(torch.where(both, ref_rgb, rgb), ref_rgb, union).tolist(),
            "nv_psnr_shared": I.masked_psnr(rgb, ref_rgb, torch.minimum(mask, ref_mask)).tolist(),
            "nv_ssim": I.ssim(rgb, ref_rgb, union).tolist()}


RenderFn = Callable[[int, Camera], tuple[Tensor, Tensor]]


def novel_view_scores(render: RenderFn, render_ref: RenderFn, centres: Tensor, radius: float, *, views: int = 8,
                      elevation_deg: float = 20.0, resolution: tuple[int, int]) -> dict[str, float]:
    """Median over frames and views of ``nv_mask_iou``, ``nv_psnr`` and ``nv_ssim``.

    render(t, cameras) and render_ref(t, cameras) -> (rgb (N, H, W, 3), mask (N, H, W)) draw frame t of the output
    and of the reference through N cameras (black background, one frame at a time to bound memory); centres (T, 3)
    and radius frame the reference (``orbit_views``).
    """
    cams = orbit_views(centres, radius, views=views, elevation_deg=elevation_deg, resolution=resolution)
    acc: dict[str, list[float]] = {}
    for t in range(centres.shape[0]):  # one frame's views per render call: memory stays that of `views` images
        c = cams[t * views:(t + 1) * views]
        rgb, mask = render(t, c)
        ref_rgb, ref_mask = render_ref(t, c)
        for k, v in image_scores(rgb, mask, ref_rgb.to(rgb), ref_mask.to(mask)).items():
            acc.setdefault(k, []).extend(v)
    return {k: statistics.median(v) for k, v in acc.items()}


def framing(vertices: Tensor) -> tuple[Tensor, float]:
    """Each frame's bounding-box centre (T, 3) of a (T, V, 3) sequence and the clip's largest bounding-sphere
    radius about those centres (what ``orbit_views`` needs to keep every frame in view)."""
    lo, hi = vertices.min(1).values, vertices.max(1).values
    centres = (lo + hi) / 2
    radius = float((vertices - centres[:, None]).norm(dim=-1).max())
    return centres, radius
