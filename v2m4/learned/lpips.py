"""LPIPS (Zhang et al. 2018), VGG variant: a scorer for the camera search and a metric (paper Table 2).
PyPI ``lpips``: its linear heads ship inside the package; the VGG-16 backbone comes from torchvision's cache
(``$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth``) or the file the user names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..scoring import composite
from .common import LearnedUnavailable, batched, require, to_nchw

VGG_FILE = "vgg16-397923af.pth"


@dataclass
class LPIPSScorer:
    """net(a, b) -> (B, 1, 1, 1) distances for (B, 3, H, W) images in [-1, 1] (lpips.LPIPS's interface)."""

    net: object
    mask_weight: float = 0.1          # as the DreamSim scorer (Appendix A's mask weight)
    size: int | None = None           # None: the renders' own size
    batch: int = 64
    name: str = "lpips"

    def distance(self, a: Tensor, b: Tensor) -> Tensor:
        """(N, H, W, 3) x (N, H, W, 3) in [0, 1] -> (N,) LPIPS distances."""
        dev = next(self.net.parameters()).device if hasattr(self.net, "parameters") else a.device
        x, y = to_nchw(a, self.size) * 2 - 1, to_nchw(b, self.size) * 2 - 1
        return batched(lambda p, q: self.net(p.to(dev), q.to(dev)).reshape(-1), x, y, self.batch).to(a.device)

    def __call__(self, rgb: Tensor, mask: Tensor, frame: Tensor) -> Tensor:
        f = frame.to(rgb.dtype)
        a = composite(rgb, mask)
        b = composite(f[..., :3], f[..., 3])[None].expand_as(a)
        mask_mse = ((mask - f[None, ..., 3]) ** 2).mean((1, 2))
        return self.distance(a, b).to(rgb.dtype) + self.mask_weight * mask_mse


def vgg_weights(path: str | None = None) -> Path:
    if path:
        p = Path(path)
        if not p.is_file():
            raise LearnedUnavailable(f"LPIPS: VGG-16 weights file {p} does not exist")
        return p
    hub = Path(torch.hub.get_dir()) / "checkpoints" / VGG_FILE
    if not hub.is_file():
        raise LearnedUnavailable(
            f"LPIPS: VGG-16 weights not found at {hub}; fetch them once where there is internet: python -c "
            f"\"import torchvision; torchvision.models.vgg16(weights='IMAGENET1K_V1')\" (or name the file)")
    return hub


def load_lpips(device="cpu", *, weights: str | None = None, batch: int = 64) -> LPIPSScorer:
    lp = require("lpips", "lpips")
    path = vgg_weights(weights)
    # pnet_rand builds VGG without a download; its ImageNet weights are then loaded from the found file
    net = lp.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False)
    state = torch.load(path, map_location="cpu", weights_only=True)
    feats = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    slices = [net.net.slice1, net.net.slice2, net.net.slice3, net.net.slice4, net.net.slice5]
    for sl in slices:  # lpips splits vgg.features into slices that keep the original layer names
        sl.load_state_dict({k: feats[k] for k in sl.state_dict()}, strict=True)
    return LPIPSScorer(net.to(device).eval().requires_grad_(False), batch=batch)
