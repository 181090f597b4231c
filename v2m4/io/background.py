"""Background removal for frames without alpha (optional: the ``rembg`` package and its model weights)."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import V2M4Error
from ..types import Frames


def remove_background(frames: Frames, *, model: str = "u2net") -> Frames:
    """Frames with alpha from rembg's segmentation model (its weights come from ~/.u2net or $U2NET_HOME)."""
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
    return Frames(rgba=rgba, fps=frames.fps, source=frames.source)
