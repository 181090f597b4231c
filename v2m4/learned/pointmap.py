"""DUSt3R (Wang et al. 2024) point maps for the stereo prior (Sec. 4.1, Alg. 1 lines 2-4). DUSt3R is not on PyPI:
the user's checkout (``--dust3r PATH`` or importable ``dust3r``) and a checkpoint (a file, or a Hugging Face id in
the local cache, e.g. naver/DUSt3R_ViTLarge_BaseDecoder_512_dpt).

The stereo prior wants every image's points in the frame's camera: DUSt3R's pairs (frame, render_i) give exactly
that for render_i (``pts3d_in_other_view``) and for the frame (``pts3d``, averaged over the pairs, each pair's scale
first matched to the mean by the median point distance, since each pair has its own scale).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from .common import LearnedUnavailable, require

CHECKPOINT = "naver/DUSt3R_ViTLarge_BaseDecoder_512_dpt"


@dataclass
class Dust3rPointMaps:
    """model(view1, view2) -> (pred1, pred2) as DUSt3R's AsymmetricCroCo3DStereo; views are dicts with "img"
    (B, 3, S, S) in [-1, 1], "true_shape" (B, 2), "idx", "instance"."""

    model: object
    size: int = 512
    batch: int = 8
    name: str = "dust3r"

    @torch.no_grad()
    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """images (N, H, W, 3) in [0, 1], the frame first -> points (N, H, W, 3) in the frame's camera and
        confidence (N, H, W)."""
        N, H, W, _ = images.shape
        if N < 2:
            raise ValueError("the stereo prior needs the frame and at least one render")
        dev = next(self.model.parameters()).device
        x = F.interpolate(images.permute(0, 3, 1, 2).float(), size=(self.size, self.size), mode="bilinear",
                          align_corners=False).to(dev) * 2 - 1
        shape = torch.tensor([[self.size, self.size]], device=dev)
        frame_pts, frame_conf, pts, conf = [], [], [], []
        for s in range(1, N, self.batch):
            b = min(self.batch, N - s)
            v1 = {"img": x[:1].expand(b, -1, -1, -1), "true_shape": shape.expand(b, 2), "idx": list(range(b)),
                  "instance": [str(i) for i in range(b)]}
            v2 = {"img": x[s: s + b], "true_shape": shape.expand(b, 2), "idx": list(range(s, s + b)),
                  "instance": [str(i) for i in range(s, s + b)]}
            p1, p2 = self.model(v1, v2)
            frame_pts.append(p1["pts3d"])
            frame_conf.append(p1["conf"])
            pts.append(p2["pts3d_in_other_view"])
            conf.append(p2["conf"])
        fp, fc = torch.cat(frame_pts), torch.cat(frame_conf)
        rp, rc = torch.cat(pts), torch.cat(conf)
        # one scale for all pairs: each pair's frame points matched to the first pair's by median distance
        d = fp.flatten(1, 2).norm(dim=-1).median(dim=1).values.clamp_min(1e-8)
        k = (d[0] / d).view(-1, 1, 1, 1)
        fp, rp = fp * k, rp * k
        out = torch.cat([fp.mean(0, keepdim=True), rp])
        c = torch.cat([fc.mean(0, keepdim=True), rc])
        out = F.interpolate(out.permute(0, 3, 1, 2), size=(H, W), mode="bilinear", align_corners=False)
        c = F.interpolate(c[:, None], size=(H, W), mode="bilinear", align_corners=False)[:, 0]
        return out.permute(0, 2, 3, 1).to(images.device), c.to(images.device)


def load_dust3r(device="cpu", *, checkout: str | None = None, checkpoint: str = CHECKPOINT,
                batch: int = 8) -> Dust3rPointMaps:
    if checkout:
        if not (Path(checkout) / "dust3r").is_dir():
            raise LearnedUnavailable(f"DUSt3R checkout {checkout} has no dust3r/ package folder")
        sys.path.insert(0, str(Path(checkout)))
    mod = require("dust3r.model", "the DUSt3R checkout: git clone --recursive https://github.com/naver/dust3r and "
                                  "pass --stereo PATH")
    if not Path(checkpoint).exists():  # a Hugging Face id: only from the local cache, never a download
        try:
            from huggingface_hub import try_to_load_from_cache
            found = any(isinstance(try_to_load_from_cache(checkpoint, f), str)
                        for f in ("model.safetensors", "pytorch_model.bin"))
        except Exception:
            found = False
        if not found:
            raise LearnedUnavailable(f"DUSt3R checkpoint {checkpoint} is not in the Hugging Face cache; fetch it once "
                                     f"where there is internet: huggingface-cli download {checkpoint}")
    try:
        model = mod.AsymmetricCroCo3DStereo.from_pretrained(checkpoint)
    except Exception as exc:
        raise LearnedUnavailable(f"DUSt3R checkpoint {checkpoint} could not be loaded ({type(exc).__name__}); give a "
                                 f"local .pth file or fetch the Hugging Face model once where there is internet") \
            from None
    return Dust3rPointMaps(model.to(device).eval(), batch=batch)
