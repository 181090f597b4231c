"""Temporal smoothing of the registered keyframes, its weight chosen per clip by the video (ours, beyond the paper).

Why: each keyframe is fitted to its own generated mesh, and a generator's shape noise is drawn anew for every
frame, so the fit passes it on and a still object trembles from keyframe to keyframe. A smoothing weight that
steadies a still clip flattens a moving one, so no single weight serves every clip (bench ``jitter_smoothing``).
The weight is therefore chosen per clip, by cross-validation on evidence the clip has: with the keyframes alone as
data, the smoothed trajectories predict the frames between them, and the largest weight whose predicted
silhouettes match those frames' masks at least as well as the unsmoothed keyframes' do is kept: as smooth as the
video allows (``pick_weight``). A still clip's keyframes differ only by noise, and smoothing them costs its
in-betweens nothing; a moving clip's keyframes differ by motion that the video confirms between them, and
smoothing it loses the in-betweens' outline. (Taking the best-scoring weight instead chose between near-equal
scores on still clips: bench/results/jitter_cv.json.)

Where the generator's noise was measured (``noise``), a second rule bounds the weight by it: the discrepancy
principle (``noise_weight``) keeps the largest weight whose smoothing moves the keyframes by no more than their
noise, and the larger of the two rules' weights is used. Cross-validation cannot tell noise from motion that the
in-betweens confirm; the measured noise can (bench ``jitter_noise``).

The frames between keyframes then take the smoothed trajectory too if it predicts their masks at least as well as
their own fit does (a still clip: smooth at every frame, not only from keyframe to keyframe); otherwise they keep
their own fit and move by what the smoothing changed there (below).

The prior is the squared second difference over every frame, in closed form:
    S_lam y = argmin_x  sum_k |x_k - y_k|^2 + lam s^4 sum_t |x_(t-1) - 2 x_t + x_(t+1)|^2,
k over the keyframes, s their mean spacing in frames (so lam acts the same at any spacing). It is linear in y and
the same for every vertex: one banded solve with every vertex coordinate a right-hand side. A frame that keeps its
own fit moves by what the smoothing changed there: x_t = y_t + (S_lam y - S_0 y)_t, S_0 the interpolating limit;
at a keyframe that is the smoothed position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import solveh_banded
from torch import Tensor

from ... import render as R
from ...camera import Camera
from ...metrics.image import mask_iou
from ...types import Mesh

# the interpolating limit's weight: small enough to leave the keyframes where they are (within about 1e-5 of their
# own second difference), large enough that frames outside the keyframes' span are determined (the trajectory
# continues linearly there)
_INTERPOLATING = 1e-8


def smooth_from_keyframes(y: Tensor, key_index: Tensor, lam: float) -> Tensor:
    """S_lam y: positions y (T, ...) smoothed in time with the keyframes' positions (key_index (K,), K >= 2) as the
    only data (module docstring); float64 on the CPU inside, y's dtype and device out."""
    T = y.shape[0]
    key = key_index.detach().cpu().numpy().astype(np.int64)
    spacing = max(1.0, float(key[-1] - key[0]) / max(1, len(key) - 1))
    w = np.zeros(T)
    w[key] = 1.0
    lam_eff = max(float(lam), _INTERPOLATING) * spacing ** 4
    # D^T D of the second difference (rows (1, -2, 1)), in symmetric upper banded storage (bandwidth 2)
    c, rows = (1.0, -2.0, 1.0), max(0, T - 2)
    d0, d1, d2 = np.zeros(T), np.zeros(max(0, T - 1)), np.zeros(rows)
    for a in range(3):
        d0[a:a + rows] += c[a] ** 2
    for a in range(2):
        d1[a:a + rows] += c[a] * c[a + 1]
    d2 += c[0] * c[2]
    ab = np.zeros((3, T))
    ab[2] = w + lam_eff * d0
    ab[1, 1:] = lam_eff * d1
    ab[0, 2:] = lam_eff * d2
    rhs = (y.detach().cpu().double().reshape(T, -1).numpy()) * w[:, None]
    x = solveh_banded(ab, rhs)
    return torch.from_numpy(x).reshape(y.shape).to(y)


def smooth_keyframes(y: Tensor, key_index: Tensor, lam: float, *, between: bool = False) -> Tensor:
    """y (T, V, 3) with its keyframes smoothed at weight lam (``smooth_from_keyframes``) and every other frame moved
    by what that changed there (module docstring; before the first keyframe and after the last, by what it changed
    at that keyframe); with ``between``, the frames between the first and the last keyframe are the smoothed
    trajectory itself (their own fit dropped). lam 0 returns y."""
    if lam <= 0:
        return y
    smooth = smooth_from_keyframes(y, key_index, lam)
    change = smooth - smooth_from_keyframes(y, key_index, 0.0)
    a, b = int(key_index[0]), int(key_index[-1]) + 1
    # outside the keyframes' span both trajectories continue linearly and their difference grows: hold the end's
    change[:a], change[b:] = change[a], change[b - 1]
    out = y + change
    if between:
        out[a:b] = smooth[a:b]
    return out


def pick_weight(weights: tuple[float, ...], scores: tuple[float, ...]) -> float:
    """The largest of ``weights`` whose score (higher is better) is at least that of weight 0 (the unsmoothed
    keyframes; the first weight where there is no 0)."""
    base = scores[list(weights).index(0.0)] if 0.0 in weights else scores[0]
    return float(max(w for w, s in zip(weights, scores) if s >= base))


@dataclass(frozen=True)
class TemporalChoice:
    """What the video chose: weight (0: no smoothing); scores: each weight's mean IoU over the frames between
    keyframes, predicted from the keyframes alone; fitted: those frames' own fit's mean IoU; between: the chosen
    weight's trajectory predicts them at least as well as their own fit does, so they take it (and the clip is
    smooth at every frame, not only from keyframe to keyframe); noise_weight: the weight the generator's measured
    noise allows (``noise_weight``; 0 where none was measured), weight the larger of the two rules'."""

    weight: float = 0.0
    scores: tuple[float, ...] = ()
    fitted: float = 0.0
    between: bool = False
    noise_weight: float = 0.0


def silhouette_iou(x: Tensor, target: Tensor, camera: Camera, mesh: Mesh, ctx: R.RenderContext, *,
                   chunk: int = 32) -> Tensor:
    """Mean IoU of mesh's silhouettes at positions x (N, V, 3) through the fixed camera (1 view) against target
    (N, H, W); ``chunk`` frames per render call."""
    ious = []
    for s in range(0, x.shape[0], chunk):
        v = x[s:s + chunk]
        n = v.shape[0]
        cams = Camera(camera.K.expand(n, 3, 3), camera.cam_from_world.expand(n, 4, 4), camera.resolution)
        with torch.no_grad():
            m = R.render(ctx, mesh, cams, channels=("mask",), vertices=v)["mask"]
        ious.append(mask_iou(m, target[s:s + chunk].to(m)))
    return torch.cat(ious).mean()


def noise_weight(y: Tensor, key_index: Tensor, weights: tuple[float, ...], vertex_variance: float) -> float:
    """The discrepancy principle (Morozov): the largest of ``weights`` whose keyframe-only smoothing moves the
    keyframes of y (T, V, 3) by no more than their noise, a mean squared move per vertex of at most
    ``vertex_variance`` (y's units squared; ``noise.NoiseEstimate.vertex_variance``). Noise alone lets the
    smoothing go as far as a straight line in time; motion beyond the noise stops it early."""
    key = key_index.detach().cpu()
    if len(key) < 3 or not weights or vertex_variance <= 0:
        return 0.0
    yk = y[key.to(y.device)].double()
    moved = [float(((smooth_from_keyframes(y, key, lam)[key.to(y.device)].double() - yk) ** 2).sum(-1).mean())
             for lam in weights]
    return float(max([w for w, m in zip(weights, moved) if m <= vertex_variance] or [0.0]))


def choose_weight(y: Tensor, key_index: Tensor, masks: Tensor, camera: Camera, mesh: Mesh, ctx: R.RenderContext,
                  weights: tuple[float, ...], *, max_frames: int = 0, chunk: int = 32,
                  vertex_variance: float | None = None) -> TemporalChoice:
    """The weight of ``weights`` (``pick_weight``) by how well the keyframe-only smoothing of y (T, V, 3, world)
    predicts the silhouettes (mesh's faces through the fixed ``camera``) of the frames between keyframes against
    their masks (T, H, W), and whether it predicts them as well as their own fit in y does. No smoothing with
    fewer than three keyframes; with no frame between them, the noise's rule alone. max_frames > 0: at most that
    many of those frames, evenly spread. vertex_variance: the keyframes' noise variance per vertex, where measured
    (``noise``): the weight is then the larger of this rule's and the discrepancy principle's (``noise_weight``),
    each a weight the clip's evidence says removes noise and no more."""
    key = key_index.detach().cpu()
    inside = torch.zeros(y.shape[0], dtype=torch.bool)
    inside[int(key[0]):int(key[-1]) + 1] = True
    inside[key] = False
    between = inside.nonzero()[:, 0]
    if len(key) < 3 or not weights:
        return TemporalChoice()
    by_noise = 0.0 if vertex_variance is None else noise_weight(y, key, weights, vertex_variance)
    if len(between) == 0:  # every frame a keyframe: no frame to test against, only the noise to go by
        return TemporalChoice(by_noise, noise_weight=by_noise)
    if 0 < max_frames < len(between):
        between = between[torch.linspace(0, len(between) - 1, max_frames).round().long()]
    target = masks[between.to(masks.device)]
    idx = between.to(y.device)
    scores = [silhouette_iou(smooth_from_keyframes(y, key, lam)[idx], target, camera, mesh, ctx, chunk=chunk)
              for lam in weights]
    scores.append(silhouette_iou(y[idx], target, camera, mesh, ctx, chunk=chunk))
    *scores, fitted = torch.stack(scores).cpu().tolist()  # one host copy for the whole grid
    weight = max(pick_weight(weights, tuple(scores)), by_noise)
    return TemporalChoice(weight, tuple(round(v, 6) for v in scores), round(fitted, 6),
                          between=weight > 0 and scores[list(weights).index(weight)] >= fitted, noise_weight=by_noise)
