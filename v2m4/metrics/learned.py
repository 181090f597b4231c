"""Learned metrics of the input view (paper Table 2), each optional: CLIP similarity (OpenCLIP ViT-bigG-14),
LPIPS-VGG, DreamSim, FVD (I3D on 32-frame clips, Appendix A). A metric whose model is missing is reported as
``"n/a: not installed"`` or ``"n/a: no weights"``; the full reason goes to ``notes``.

Renders and frames are compared as the camera saw them: the object composited on white (the paper's renders)."""

from __future__ import annotations

import os
import statistics

import numpy as np
import torch
from torch import Tensor

from ..learned.common import LearnedUnavailable

FVD_CLIP = 32  # Appendix A: 32-frame clips


def _short(exc: LearnedUnavailable) -> str:
    m = str(exc)
    return "n/a: not installed" if ("not installed" in m or "fails to import" in m) else "n/a: no weights"


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets a (N, D) and b (M, D)."""
    from scipy import linalg
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def load_i3d(device="cpu", path: str | None = None):
    """The I3D feature detector as a TorchScript file (StyleGAN-V's ``i3d_torchscript.pt``, the FVD reference
    implementation), from ``path`` or ``$V2M4_I3D``."""
    p = path or os.environ.get("V2M4_I3D")
    if not p or not os.path.isfile(p):
        raise LearnedUnavailable("FVD: the I3D detector is not here; download i3d_torchscript.pt (StyleGAN-V's FVD "
                                 "detector) once and set V2M4_I3D to its path")
    return torch.jit.load(p, map_location=device).eval()


def fvd(detector, real: Tensor, fake: Tensor, clip: int = FVD_CLIP) -> float:
    """FVD between two videos (T, H, W, 3) in [0, 1] over their sliding clips of ``clip`` frames (stride clip/4);
    detector(x (N, 3, clip, 224, 224) in [-1, 1], rescale=False, resize=False, return_features=True) -> (N, D)."""
    T = real.shape[0]
    if T < clip:
        raise LearnedUnavailable(f"FVD: needs at least {clip} frames, the clip has {T}")
    starts = list(range(0, T - clip + 1, max(1, clip // 4)))
    dev = next(iter(detector.parameters()), torch.zeros(0)).device if hasattr(detector, "parameters") else "cpu"

    def feats(v):
        x = torch.nn.functional.interpolate(v.permute(0, 3, 1, 2).float(), size=(224, 224), mode="bilinear",
                                            align_corners=False)
        x = x * 2 - 1
        clips = torch.stack([x[s: s + clip].permute(1, 0, 2, 3) for s in starts]).to(dev)
        with torch.no_grad():
            return detector(clips, rescale=False, resize=False, return_features=True).double().cpu().numpy()

    fr, ff = feats(real), feats(fake)
    if len(starts) < 2:
        raise LearnedUnavailable("FVD: too few clips for a covariance (needs 2 or more)")
    return frechet_distance(fr, ff)


def learned_metrics(rgb: Tensor, mask: Tensor, frames: Tensor, *, device="cpu") -> tuple[dict, list[str]]:
    """rgb (T, H, W, 3) and mask (T, H, W) renders from the input camera; frames (T, H, W, 4) the input.
    Returns ({clip_sim, lpips, dreamsim, fvd}: median over frames or "n/a: ..."), notes."""
    from ..learned.clip import load_clip
    from ..learned.dreamsim import load_dreamsim
    from ..learned.lpips import load_lpips

    a = rgb * mask[..., None] + (1 - mask[..., None])
    b = frames[..., :3] * frames[..., 3:] + (1 - frames[..., 3:])
    out, notes = {}, []
    for key, load, run in (
            ("clip_sim", lambda: load_clip(device), lambda m: m.similarity(a, b)),
            ("lpips", lambda: load_lpips(device), lambda m: m.distance(a, b)),
            ("dreamsim", lambda: load_dreamsim(device), lambda m: m.distance(a, b))):
        try:
            model = load()
        except LearnedUnavailable as exc:
            out[key] = _short(exc)
            notes.append(str(exc))
            continue
        with torch.no_grad():
            out[key] = statistics.median(run(model).float().cpu().tolist())
        del model
    try:
        out["fvd"] = fvd(load_i3d(device), b, a)
    except LearnedUnavailable as exc:
        out["fvd"] = _short(exc)
        notes.append(str(exc))
    return out, notes
