"""CLIP similarity of renders to the input frames (paper Table 2: OpenCLIP ViT-bigG-14 on the input view).
PyPI ``open_clip_torch``; weights from the Hugging Face cache (the library's own) or a checkpoint file."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .common import LearnedUnavailable, require, to_nchw

BACKBONE = ("ViT-bigG-14", "laion2b_s39b_b160k")  # the paper's (Appendix A)
_MEAN = (0.48145466, 0.4578275, 0.40821073)       # OpenAI CLIP's normalisation (open_clip's default)
_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class CLIPSimilarity:
    """model.encode_image((B, 3, S, S) normalised) -> (B, D). similarity: cosine of the two embeddings, per pair."""

    model: object
    size: int = 224
    batch: int = 64
    backbone: str = "/".join(BACKBONE)

    @torch.no_grad()
    def embed(self, images: Tensor) -> Tensor:
        dev = next(self.model.parameters()).device
        mean = torch.tensor(_MEAN, device=dev)[None, :, None, None]
        std = torch.tensor(_STD, device=dev)[None, :, None, None]
        out = []
        for s in range(0, images.shape[0], self.batch):
            x = to_nchw(images[s: s + self.batch], self.size).to(dev)
            out.append(F.normalize(self.model.encode_image((x - mean) / std).float(), dim=-1))
        return torch.cat(out)

    def similarity(self, a: Tensor, b: Tensor) -> Tensor:
        """(N, H, W, 3) x (N, H, W, 3) in [0, 1] -> (N,) cosine similarities."""
        return (self.embed(a) * self.embed(b)).sum(-1).cpu()


def _cached(oc, name: str, tag: str) -> bool:
    """Whether open_clip would find these weights without the network (Hugging Face cache or its URL cache)."""
    import os
    try:
        cfg = oc.get_pretrained_cfg(name, tag) or {}
    except Exception:
        return False
    hub = (cfg.get("hf_hub") or "").strip("/")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return False
        return any(isinstance(try_to_load_from_cache(hub, f), str)
                   for f in ("open_clip_pytorch_model.bin", "open_clip_model.safetensors"))
    url = cfg.get("url")
    return bool(url) and os.path.isfile(os.path.expanduser(f"~/.cache/clip/{os.path.basename(url)}"))


def load_clip(device="cpu", *, backbone: tuple[str, str] = BACKBONE, checkpoint: str | None = None,
              batch: int = 64) -> CLIPSimilarity:
    oc = require("open_clip", "open_clip_torch")
    name, tag = backbone
    if checkpoint is None and not _cached(oc, name, tag):  # never wait on a download that cannot happen
        raise LearnedUnavailable(
            f"CLIP {name} ({tag}) weights are not in the local cache; fetch them once where there is internet: "
            f"python -c \"import open_clip; open_clip.create_model('{name}', pretrained='{tag}')\" (or name a "
            f"checkpoint file)")
    try:
        model = oc.create_model(name, pretrained=checkpoint or tag, device=device, cache_dir=None)
    except Exception as exc:  # open_clip raises RuntimeError / OSError / HF errors when it cannot fetch offline
        raise LearnedUnavailable(
            f"CLIP {name} ({checkpoint or tag}) weights could not be loaded ({type(exc).__name__}); fetch them once "
            f"where there is internet: python -c \"import open_clip; open_clip.create_model('{name}', "
            f"pretrained='{tag}')\" (or name a checkpoint file)") from None
    return CLIPSimilarity(model.eval().requires_grad_(False), batch=batch, backbone=f"{name}/{checkpoint or tag}")
