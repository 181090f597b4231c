"""What the learned adapters share: the unavailable error, where weights are looked for, image batching."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import V2M4Error


class LearnedUnavailable(V2M4Error):
    """A learned model cannot be used here: its package or its weights are missing (the message says which)."""


def weights_root() -> Path:
    """$V2M4_WEIGHTS, else ~/.cache/v2m4: the folder adapters look in before their library's own cache."""
    return Path(os.environ.get("V2M4_WEIGHTS") or Path.home() / ".cache" / "v2m4")


def require(module: str, install: str):
    """Import ``module`` or raise LearnedUnavailable naming the package to install."""
    import importlib
    try:
        return importlib.import_module(module)
    except Exception as exc:  # ImportError, or a broken install (e.g. a torchvision built for another torch)
        why = "not installed" if isinstance(exc, ImportError) else f"fails to import ({type(exc).__name__})"
        raise LearnedUnavailable(f"{module} is {why}: pip install {install}") from None


def to_nchw(images: Tensor, size: int | None = None) -> Tensor:
    """(N, H, W, 3) in [0, 1] -> (N, 3, size, size), bicubic like the models' own preprocessing."""
    x = images.permute(0, 3, 1, 2).float()
    if size is not None and x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    return x


def batched(fn, a: Tensor, b: Tensor, batch: int) -> Tensor:
    """fn over aligned chunks of a and b (first dimension), concatenated: bounded memory for any N."""
    return torch.cat([fn(a[s: s + batch], b[s: s + batch]) for s in range(0, a.shape[0], batch)])
