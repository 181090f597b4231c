"""Input-view image metrics, weight-free (Table 2's PSNR/SSIM columns and the silhouette IoU).

All take batches, frames first: masks (T, H, W) in [0, 1], images (T, H, W, 3) in [0, 1]; each returns (T,).
"""

from __future__ import annotations

import torch
from torch import Tensor


def mask_iou(pred: Tensor, target: Tensor, *, threshold: float = 0.5) -> Tensor:
    """Intersection over union of the binarised masks; 1 where both are empty."""
    a, b = pred > threshold, target > threshold
    inter = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def masked_psnr(pred: Tensor, target: Tensor, mask: Tensor, *, threshold: float = 0.5) -> Tensor:
    """PSNR (dB, peak 1) over the pixels where the *target's* mask is set: the object as the video shows it.

    A render that misses part of the object is compared with its background there, so silhouette errors count.
    """
    m = (mask > threshold).to(pred.dtype)[..., None]
    n = m.flatten(1).sum(1).clamp_min(1) * pred.shape[-1]
    mse = (((pred - target) ** 2) * m).flatten(1).sum(1) / n
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))


def _gaussian_window(size: int, sigma: float, dtype, device) -> Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_map(a: Tensor, b: Tensor, *, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Per-pixel SSIM (Wang et al. 2004; Gaussian window 11, sigma 1.5, C1 = 0.01², C2 = 0.03²), mean over
    channels: images (T, H, W, C) -> (T, H, W)."""
    T, H, W, C = a.shape
    x = a.permute(0, 3, 1, 2).reshape(T * C, 1, H, W)
    y = b.permute(0, 3, 1, 2).reshape(T * C, 1, H, W)
    k = _gaussian_window(window, sigma, a.dtype, a.device)
    pad = window // 2

    def blur(z):
        return torch.nn.functional.conv2d(torch.nn.functional.pad(z, [pad] * 4, mode="replicate"), k)

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx ** 2
    vy = blur(y * y) - my ** 2
    cxy = blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return s.reshape(T, C, H, W).mean(1)


def ssim(pred: Tensor, target: Tensor, region: Tensor | None = None, *, threshold: float = 0.5) -> Tensor:
    """Mean SSIM of (T, H, W, 3) images, over ``region`` (T, H, W) when given (e.g. the union of both masks, so
    that a large empty background does not inflate the score), else over the whole image."""
    s = ssim_map(pred, target)
    if region is None:
        return s.flatten(1).mean(1)
    m = (region > threshold).to(s.dtype)
    return (s * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1)
