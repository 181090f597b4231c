"""DreamSim (Fu et al. 2023) as the camera-search scorer, as in the paper (Sec. 4.1, Appendix A: DreamSim
distance + 0.1 x foreground-mask MSE). PyPI ``dreamsim``; its weights live in a cache folder (the library's
``cache_dir``): ``$V2M4_WEIGHTS/dreamsim`` by default, or the folder the user names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..scoring import composite
from .common import LearnedUnavailable, batched, require, to_nchw, weights_root

# what dreamsim(cache_dir=...) needs on disk, per model type (its download_weights unpacks these)
_FILES = {
    "ensemble": ["ensemble_lora/adapter_config.json", "dino_vitb16_pretrain.pth", "clip_vitb16_pretrain.pth.tar",
                 "open_clip_vitb16_pretrain.pth.tar"],
    "dino_vitb16": ["dino_vitb16_single_lora/adapter_config.json", "dino_vitb16_pretrain.pth"],
    "open_clip_vitb32": ["open_clip_vitb32_single_lora/adapter_config.json", "open_clip_vitb32_pretrain.pth.tar"],
    "clip_vitb32": ["clip_vitb32_single_lora/adapter_config.json", "clip_vitb32_pretrain.pth.tar"],
}


@dataclass
class DreamSimScorer:
    """model(img_a, img_b) -> (B,) distances for (B, 3, 224, 224) images in [0, 1] (DreamSim's own interface).
    Renders and the frame are composited on the same grey, so the background never counts as a difference."""

    model: object
    mask_weight: float = 0.1          # Appendix A
    size: int = 224                   # DreamSim's input size
    batch: int = 64
    name: str = "dreamsim"

    def distance(self, a: Tensor, b: Tensor) -> Tensor:
        """(N, H, W, 3) x (N, H, W, 3) in [0, 1] -> (N,) DreamSim distances."""
        dev = next(self.model.parameters()).device if hasattr(self.model, "parameters") else a.device
        x, y = to_nchw(a, self.size), to_nchw(b, self.size)
        return batched(lambda p, q: self.model(p.to(dev), q.to(dev)).reshape(-1), x, y, self.batch).to(a.device)

    def __call__(self, rgb: Tensor, mask: Tensor, frame: Tensor) -> Tensor:
        f = frame.to(rgb.dtype)
        a = composite(rgb, mask)
        b = composite(f[..., :3], f[..., 3])[None].expand_as(a)
        mask_mse = ((mask - f[None, ..., 3]) ** 2).mean((1, 2))
        return self.distance(a, b).to(rgb.dtype) + self.mask_weight * mask_mse


def missing_files(cache_dir: str | None = None, dreamsim_type: str = "ensemble") -> Path:
    """The weights folder, or LearnedUnavailable naming the files it lacks and how to fetch them."""
    folder = Path(cache_dir) if cache_dir else weights_root() / "dreamsim"
    if dreamsim_type not in _FILES:
        raise LearnedUnavailable(f"DreamSim type {dreamsim_type!r} unknown here; choose {', '.join(_FILES)}")
    missing = [f for f in _FILES[dreamsim_type] if not (folder / f).exists()]
    if missing:
        raise LearnedUnavailable(
            f"DreamSim weights not found in {folder} (missing {', '.join(missing)}); fetch them once where there "
            f"is internet: python -c \"from dreamsim import dreamsim; dreamsim(cache_dir='{folder}')\"")
    return folder


def load_dreamsim(device="cpu", *, cache_dir: str | None = None, dreamsim_type: str = "ensemble",
                  batch: int = 64) -> DreamSimScorer:
    ds = require("dreamsim", "dreamsim")
    folder = missing_files(cache_dir, dreamsim_type)
    model, _ = ds.dreamsim(pretrained=True, device=str(device), cache_dir=str(folder), dreamsim_type=dreamsim_type)
    return DreamSimScorer(model.eval().requires_grad_(False), batch=batch)
