"""Render-versus-frame similarity for the camera search and the appearance refinement (Sec. 4.1, Appendix A).

A scorer takes P renders and one frame and returns P losses (lower is better), batched. The paper scores with
DreamSim (weight 1) plus a foreground-mask term (weight 0.1). The default here needs no learned weights:
the mask term is the same (weighted to this appearance term's scale), and the appearance term compares the object
composited on grey at two scales, so that it sees colour layout (which side of the object faces the camera) and,
through the composite, the outline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor


class Scorer(Protocol):
    name: str

    def __call__(self, rgb: Tensor, mask: Tensor, frame: Tensor) -> Tensor:
        """rgb (P, H, W, 3), mask (P, H, W) renders; frame (H, W, 4) straight-alpha RGBA -> (P,) losses."""
        ...


def composite(rgb: Tensor, mask: Tensor, background: float = 0.5) -> Tensor:
    """(..., H, W, 3) colours over a grey background by their coverage (..., H, W)."""
    return rgb * mask[..., None] + background * (1 - mask[..., None])


def _pool(img: Tensor, k: int) -> Tensor:
    """(P, H, W, C) average-pooled by k."""
    return torch.nn.functional.avg_pool2d(img.permute(0, 3, 1, 2), k).permute(0, 2, 3, 1)


@dataclass(frozen=True)
class SilhouetteColourScorer:
    """Weight-free default: appearance L1 of grey composites at full and 1/4 resolution + mask_weight * mask MSE."""

    mask_weight: float = 1.0      # Appendix A pairs 0.1 with DreamSim; our L1 appearance terms are ~10x smaller
                                  # than DreamSim distances and can be flat between a right and a wrong view of a
                                  # small object, where the mask term still differs; at 0.1 the mask could not
                                  # break such ties. Tuned: see docs/calibration.md
    coarse: int = 4               # pooling factor of the second, wide-basin scale
    name: str = "silhouette-colour"
    per_view_frames: bool = True  # frame may also be (P, H, W, 4), one per render (joint camera refinement)
    capturable: bool = True       # no host synchronisation or copy: a CUDA graph can capture it (refine_poses)

    def __call__(self, rgb: Tensor, mask: Tensor, frame: Tensor) -> Tensor:
        f = frame.to(rgb.dtype)
        if f.ndim == 3:
            f = f[None]
        a = composite(rgb, mask)
        b = composite(f[..., :3], f[..., 3])
        fine = (a - b).abs().mean((1, 2, 3))
        k = max(1, min(self.coarse, rgb.shape[1] // 4))
        coarse = (_pool(a, k) - _pool(b, k)).abs().mean((1, 2, 3))
        mask_mse = ((mask - f[..., 3]) ** 2).mean((1, 2))
        return fine + coarse + self.mask_weight * mask_mse
