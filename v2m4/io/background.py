"""Background removal for frames without alpha (optional: the ``rembg`` package and its model weights)."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import V2M4Error
from ..types import Frames


def smooth_alpha(alpha: torch.Tensor, radius: int = 1) -> torch.Tensor:
    """(T, H, W) alpha -> the per-pixel temporal median over 2 * radius + 1 frames (clamped at the ends).

    A segmentation model run frame by frame flickers: a leg lost in one frame, a shadow caught in the next. Those
    errors last one frame while the object persists, so a short median removes them; a moving part keeps what
    its neighbouring frames share (a part moving by its own width within ``radius`` frames is thinned)."""
    if radius <= 0 or alpha.shape[0] < 2:
        return alpha
    T = alpha.shape[0]
    idx = (torch.arange(T)[:, None] + torch.arange(-radius, radius + 1)[None]).clamp(0, T - 1)
    return alpha[idx].median(dim=1).values


def remove_background(frames: Frames, *, model: str = "u2net", temporal_radius: int = 0) -> Frames:
    """Frames with alpha from rembg's segmentation model (its weights come from ~/.u2net or $U2NET_HOME), made
    temporally consistent by ``smooth_alpha`` (radius 0 turns that off)."""
    try:
        import rembg
    except ImportError:
        raise V2M4Error("background removal needs rembg (pip install 'v2m4[learned]' or pip install rembg), "
                        "or give --masks DIR") from None
    try:
        session = rembg.new_session(model)
    except Exception as exc:  # no weights on disk and no network, mostly
        raise V2M4Error(f"rembg could not load its {model} model ({type(exc).__name__}: {exc}); put the weights "
                        f"in ~/.u2net or set U2NET_HOME, or give --masks DIR") from None
    out = []
    for im in (frames.rgb.clamp(0, 1) * 255).to(torch.uint8).numpy():
        from PIL import Image
        cut = rembg.remove(Image.fromarray(im), session=session)
        out.append(np.asarray(cut.convert("RGBA")))
    rgba = torch.as_tensor(np.stack(out)).float() / 255
    rgba = torch.cat([frames.rgb.to(rgba), smooth_alpha(rgba[..., 3], temporal_radius)[..., None]], -1)
    return Frames(rgba=rgba, fps=frames.fps, source=frames.source)
