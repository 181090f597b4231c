"""Appearance refinement by negative-condition optimisation (paper Sec. 4.2, Appendix A).

The structured-latent stage of a rectified-flow generator is re-sampled on the same voxels with classifier-free
guidance; while the flow time is at most 0.6, each denoising step first runs a few Adam steps on the negative
condition embedding only, so that the decoded prediction, rendered under the frame's recovered camera, looks like
the frame. The network's prior is kept (only the embedding moves, and an MSE term holds it near its start).

Generator-agnostic: the caller gives the velocity model and a loss on a predicted clean sample (decode, render,
compare); ``v2m4.generators.trellis`` wires TRELLIS's. The sampler arithmetic is TRELLIS's FlowEulerSampler
(x0 = (1 - s) x_t - (s + (1 - s) t) v, Euler step x_t - (t - t_prev) v, rescaled time grid). x_t may be any
object with +, - and scalar * (a tensor, or TRELLIS's SparseTensor).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from ..optim import Adam


@dataclass(frozen=True)
class AppearanceConfig:
    t_max: float = 0.6             # Appendix A: optimise only while 0.6 >= t >= 0
    first_iters: int = 5           # Appendix A: 5 Adam steps at the first optimised denoising step ...
    iters_every: int = 5           # ... and one more every 5 denoising steps
    lr: float = 0.1                # ours (the paper gives none): Adam on the embedding; docs/calibration.md
    reg_weight: float = 0.2        # Appendix A: MSE to the embedding's initial value
    cfg_interval: tuple[float, float] = (0.0, 1.0)  # ours: guidance at every t while refining, since the negative
                                   # embedding acts (and gets a gradient) only inside it; docs/calibration.md


def time_pairs(steps: int, rescale_t: float = 1.0) -> list[tuple[float, float]]:
    """TRELLIS's time grid: 1 -> 0 in ``steps`` Euler steps, warped by rescale_t."""
    t = np.linspace(1, 0, steps + 1)
    t = rescale_t * t / (1 + (rescale_t - 1) * t)
    return [(float(t[i]), float(t[i + 1])) for i in range(steps)]


def iterations_per_step(pairs: list[tuple[float, float]], cfg: AppearanceConfig) -> list[int]:
    """Adam steps before each denoising step: 0 above t_max, then 5, 5, 5, 5, 5, 6, ... (Appendix A)."""
    out, k = [], 0
    for t, _ in pairs:
        if t <= cfg.t_max + 1e-9:
            out.append(cfg.first_iters + k // cfg.iters_every)
            k += 1
        else:
            out.append(0)
    return out


def guided_velocity(model: Callable, x, t: float, cond: Tensor, neg_cond: Tensor, strength: float,
                    interval: tuple[float, float]):
    """Classifier-free guidance inside ``interval`` (TRELLIS's mixins): (1 + w) v(cond) - w v(neg); outside it,
    the conditional velocity alone, so the negative embedding has no effect (and no gradient) there."""
    v = model(x, t, cond)
    if interval[0] <= t <= interval[1] and strength != 0:
        v = (1 + strength) * v - strength * model(x, t, neg_cond)
    return v


def predicted_x0(x, t: float, v, sigma_min: float):
    return (1 - sigma_min) * x - (sigma_min + (1 - sigma_min) * t) * v


@dataclass
class RefineResult:
    sample: Any                    # the refined clean sample (same type as the noise)
    neg_cond: Tensor               # the optimised negative embedding
    losses: list[float] = field(default_factory=list)  # render loss at every Adam step
    iterations: list[int] = field(default_factory=list)  # Adam steps before each denoising step


def refine_negative_condition(model: Callable, render_loss: Callable[[Any], Tensor], noise, cond: Tensor,
                              neg_cond: Tensor, *, steps: int = 25, cfg_strength: float = 3.0,
                              rescale_t: float = 3.0, sigma_min: float = 1e-5,
                              config: AppearanceConfig = AppearanceConfig(), progress=None) -> RefineResult:
    """Sample from ``noise`` with guidance while optimising the negative embedding (Sec. 4.2).

    model(x_t, t, cond) -> velocity, with t in [0, 1]; render_loss(x0) -> scalar loss of a predicted clean sample
    against the frame (decode it, render it under the frame's camera, compare: perceptual + MSE by the scorer).
    Defaults are the official structured-latent sampler's (25 steps, strength 3, rescale_t 3).
    """
    pairs = time_pairs(steps, rescale_t)
    iters = iterations_per_step(pairs, config)
    neg0 = neg_cond.detach()
    neg = neg0.clone().requires_grad_(True)
    opt = Adam([neg], lr=config.lr)
    losses = []
    x = noise
    for i, ((t, t_prev), n) in enumerate(zip(pairs, iters)):
        for _ in range(n):
            opt.zero_grad()
            v = guided_velocity(model, x, t, cond, neg, cfg_strength, config.cfg_interval)
            loss = render_loss(predicted_x0(x, t, v, sigma_min))
            losses.append(float(loss.detach()))
            (loss + config.reg_weight * ((neg - neg0) ** 2).mean()).backward()
            opt.step()
        with torch.no_grad():
            v = guided_velocity(model, x, t, cond, neg.detach(), cfg_strength, config.cfg_interval)
            x = x - (t - t_prev) * v
        if progress:
            progress(i, len(pairs))
    return RefineResult(sample=x, neg_cond=neg.detach(), losses=losses, iterations=iters)


def negative_condition_gradient(model: Callable, render_loss: Callable[[Any], Tensor], x, t: float, cond: Tensor,
                                neg_cond: Tensor, *, cfg_strength: float, interval: tuple[float, float],
                                sigma_min: float = 1e-5) -> Tensor:
    """d(render loss of the predicted x0)/d(negative embedding) at one (x_t, t); zero outside the interval."""
    neg = neg_cond.detach().clone().requires_grad_(True)
    v = guided_velocity(model, x, t, cond, neg, cfg_strength, interval)
    loss = render_loss(predicted_x0(x, t, v, sigma_min))
    if not loss.requires_grad:  # outside the interval the embedding never entered the graph
        return torch.zeros_like(neg)
    (g,) = torch.autograd.grad(loss, neg, allow_unused=True)
    return torch.zeros_like(neg) if g is None else g
