"""Keyframe selection (Sec. 4.5): which frames are reconstructed; the others are interpolated.

The paper reconstructs every 3rd frame of low-fps sources and every 5th of high-fps ones. Beyond the paper (its
stated limitation: motion speed varies), ``adaptive`` spends the same budget where the silhouette moves: keyframes
sit at equal steps of the cumulative motion, so a pause costs one keyframe and a fast swing gets many.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..errors import V2M4Error
from ..types import Frames, atomic_write_bytes


@dataclass(frozen=True)
class KeyframeConfig:
    stride: int | None = None     # Sec. 4.5: 3 (low fps) or 5 (high fps); None picks from the fps
    high_fps: float = 50.0        # ours: where "high fps" starts (the paper gives no number; 60 fps footage is
                                  # high, 24-30 fps film and web video low)
    mode: str = "fixed"           # "fixed" (the paper) or "adaptive" (ours)
    budget: int | None = None     # ours: this many keyframes instead of the stride (evenly spread when fixed)

    def stride_for(self, fps: float) -> int:
        return self.stride if self.stride else (5 if fps >= self.high_fps else 3)


def fixed_keyframes(n_frames: int, stride: int) -> Tensor:
    """Every ``stride``-th frame, and always the last one (so nothing is extrapolated)."""
    if n_frames < 1:
        raise V2M4Error("no frames to pick keyframes from")
    if stride < 1:
        raise V2M4Error(f"keyframe stride must be >= 1, got {stride}")
    k = list(range(0, n_frames, stride))
    if k[-1] != n_frames - 1:
        k.append(n_frames - 1)
    return torch.tensor(k, dtype=torch.int64)


def budget_keyframes(n_frames: int, budget: int) -> Tensor:
    """``budget`` keyframes evenly spread over the clip, first and last included (the benchmark's frame selection, so
    a run with ``--keyframes N`` reconstructs exactly the frames ``v2m4 bench --max-frames N`` scores)."""
    if n_frames < 1:
        raise V2M4Error("no frames to pick keyframes from")
    if budget < 1:
        raise V2M4Error(f"keyframe budget must be >= 1, got {budget}")
    if budget >= n_frames:
        return torch.arange(n_frames)
    if budget == 1:
        return torch.zeros(1, dtype=torch.int64)
    return torch.tensor(sorted({round(i * (n_frames - 1) / (budget - 1)) for i in range(budget)}), dtype=torch.int64)


def frame_motion(frames: Frames) -> Tensor:
    """(T - 1,) motion between consecutive frames: 1 - IoU of the masks plus the mean colour change inside them."""
    m = frames.mask.float()
    if len(frames) < 2:
        return torch.zeros(0)
    a, b = m[:-1], m[1:]
    inter = (a * b).flatten(1).sum(1)
    union = torch.maximum(a, b).flatten(1).sum(1).clamp_min(1e-6)
    rgb = frames.rgb
    both = (a * b)[..., None]
    col = ((rgb[1:] - rgb[:-1]).abs() * both).flatten(1).sum(1) / (3 * both.flatten(1).sum(1).clamp_min(1e-6))
    return (1 - inter / union) + col


def adaptive_keyframes(frames: Frames, budget: int) -> Tensor:
    """``budget`` keyframes (first and last included) at equal quantiles of the cumulative motion."""
    T = len(frames)
    budget = max(1, min(budget, T))
    if budget >= T:
        return torch.arange(T)
    if budget == 1:
        return torch.zeros(1, dtype=torch.int64)
    motion = frame_motion(frames).double() + 1e-6  # a floor, so a still clip spreads keyframes evenly
    cum = torch.cat([torch.zeros(1, dtype=torch.float64), motion.cumsum(0)])
    goals = torch.linspace(0, float(cum[-1]), budget, dtype=torch.float64)
    picked = torch.searchsorted(cum, goals).clamp(0, T - 1).tolist()
    picked[0], picked[-1] = 0, T - 1
    out = [picked[0]]
    for p in picked[1:]:  # strictly increasing, still budget-many where the clip allows
        out.append(max(p, out[-1] + 1))
    for i in range(len(out) - 1, 0, -1):  # pushed past the end: pull back from the last frame
        if out[i] > T - 1 - (len(out) - 1 - i):
            out[i] = T - 1 - (len(out) - 1 - i)
    return torch.tensor(out, dtype=torch.int64)


def select_keyframes(frames: Frames, cfg: KeyframeConfig = KeyframeConfig()) -> Tensor:
    """The keyframe indices (K,) int64 of ``frames``, first and last always among them."""
    if cfg.budget:
        if cfg.mode == "adaptive":
            return adaptive_keyframes(frames, cfg.budget)
        return budget_keyframes(len(frames), cfg.budget)
    fixed = fixed_keyframes(len(frames), cfg.stride_for(frames.fps))
    if cfg.mode == "fixed":
        return fixed
    if cfg.mode == "adaptive":
        return adaptive_keyframes(frames, len(fixed))
    raise V2M4Error(f"unknown keyframe mode {cfg.mode!r}; choose fixed or adaptive")


@dataclass(frozen=True)
class Keyframes:
    """The keyframe indices (K,) int64 chosen for a run (Sec. 4.5), saved as JSON."""

    indices: Tensor

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_bytes(path, json.dumps({"keyframes": self.indices.tolist()}).encode())

    @staticmethod
    def load(path: str | os.PathLike) -> "Keyframes":
        return Keyframes(torch.tensor(json.loads(Path(path).read_text())["keyframes"], dtype=torch.int64))
