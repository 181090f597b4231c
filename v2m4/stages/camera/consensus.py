"""The camera search's consensus pass (ours, beyond the paper): each frame also tries the orientations the other
frames were found under.

The warm start hands every frame its predecessor's pose, and a small swarm and a short refinement settle it near
there. Each frame's generated mesh is a different mesh, so each frame's best pose is off by a little, and that
error is the next frame's start: along a clip the errors add up like a random walk. A fixed camera sees an object
that does not turn under one orientation, and one that turns under orientations its neighbours in time share, so
an orientation found for another frame, given this frame's own distance and place (``center_poses``) and the warm
frames' refinement, is a strong hypothesis; the frame keeps whichever pose its own objective prefers. It is loop
closure for the search: a drift the chain accumulated over many frames is undone by a frame that the chain found
before the drift began.

Deterministic (no random draws), so a stopped search that resumes between rounds finds what an uninterrupted one
does.
"""

from __future__ import annotations

import math
import time

import torch
from torch import Tensor

from ... import render as R
from ...scoring import Scorer
from ...types import Mesh
from .config import CameraSearchConfig
from .refine import refine_poses
from .sampling import center_poses, score_poses

_ANGLES = [0, 1, 6]  # yaw, pitch, roll in the (7,) pose


def _wrap(a: Tensor) -> Tensor:
    return torch.remainder(a + math.pi, 2 * math.pi) - math.pi


def _outside(a: Tensor, b: Tensor, box: Tensor) -> Tensor:
    """(N,) whether orientations a (N, 3) lie outside the box (3,) of half-widths around b (3,) or (N, 3)."""
    d = torch.stack([_wrap(a[:, 0] - b[..., 0]), a[:, 1] - b[..., 1], a[:, 2] - b[..., 2]], -1).abs()
    return (d >= box).any(-1)


def search_box(cfg: CameraSearchConfig) -> Tensor:
    """(3,) the half-widths in yaw, pitch and roll of what a warm frame's swarm has already searched around its own
    pose: its spread (``warm_spread``); the roll's only where the search has a roll."""
    box = torch.tensor(cfg.warm_spread, dtype=torch.float64)[_ANGLES]
    if not cfg.roll:
        box[2] = math.inf
    return box


def orientation_candidates(poses: Tensor, t: int, cfg: CameraSearchConfig) -> Tensor:
    """(N, 7) poses for frame t: the other frames' orientations (yaw, pitch, roll of ``poses`` (T, 7)), each also
    turned by quarter turns about +Y (generators snap objects to canonical axes and sometimes pick the wrong one:
    ``warm_turns``), at frame t's own radius and look-at. Orientations inside the box the warm swarm searched around
    frame t's pose (``search_box``) are left out, and so are repeats."""
    others = torch.cat([poses[:t], poses[t + 1:]])
    if not len(others):
        return poses[:0]
    turns = torch.arange(4, dtype=poses.dtype, device=poses.device) * (math.pi / 2)
    ang = others[:, _ANGLES].repeat_interleave(4, 0)
    ang[:, 0] = _wrap(ang[:, 0] + turns.repeat(len(others)))
    box = search_box(cfg).to(poses)
    keep = _outside(ang, poses[t, _ANGLES], box)
    ang = ang[keep]
    cands = poses[t].repeat(len(ang), 1)
    cands[:, _ANGLES] = ang
    return cands


def _distinct(cands: Tensor, box: Tensor, k: int) -> Tensor:
    """The first k of cands (N, 7), in order, each outside the box of every one kept before it."""
    kept: list[int] = []
    for i in range(len(cands)):
        if len(kept) >= k:
            break
        if not kept or bool(_outside(cands[kept][:, _ANGLES], cands[i, _ANGLES], box).all()):
            kept.append(i)
    return cands[kept]


def consensus_pass(meshes: list[Mesh], poses: list[Tensor], scores: list[float], views: list[tuple],
                   cfg: CameraSearchConfig, ctx: R.RenderContext, scorer: Scorer, batch: int = 1, *,
                   done: int = 0, on_round=None) -> list[float]:
    """``CameraSearchConfig.consensus_rounds`` rounds: every frame's ``orientation_candidates`` (from the poses as
    the round began), centred on the frame, scored by the search's objective; the best ``consensus_top`` distinct
    ones that score within ``warm_fallback_ratio`` of the frame's pose are refined with the warm frames' steps
    (``batch`` poses a ``refine_poses`` call, as warm frames are refined), and the frame takes the best refined
    one if it scores better than its pose by ``turn_margin``, the warm swarm's margin for a turn: every candidate
    lies outside what the frame's own search explored, and within that margin the scores tie (a symmetric shape
    with its mirror image, a fox with itself a few degrees off), where the chain's pose keeps its continuity.

    poses (7,) and scores are updated in place; views[t] = (config, search view, refinement view, edge topology) of
    frame t. Returns the seconds spent per frame. done: rounds an interrupted search already finished, skipped;
    on_round: optional callable(rounds done, seconds per frame so far), called after each round."""
    T = len(meshes)
    secs = [0.0] * T
    box = search_box(cfg)
    for r in range(done, cfg.consensus_rounds):
        t0 = time.perf_counter()
        P = torch.stack(poses)
        picks, owner, frames = [], [], []
        for t in range(T):
            cfg_t, frame_s, _, topo = views[t]
            c = orientation_candidates(P, t, cfg)
            if not len(c):
                continue
            for _ in range(cfg.center_steps):
                c = center_poses(meshes[t], c, frame_s, cfg_t, ctx, topo)
            s = score_poses(meshes[t], c, frame_s, cfg_t, ctx, scorer, topo)
            order = torch.argsort(s)
            order = order[s[order] <= cfg.warm_fallback_ratio * scores[t]]
            keep = _distinct(c[order], box.to(c), cfg.consensus_top)
            if len(keep):
                picks.append(keep)
                frames.append(t)
                owner += [t] * len(keep)
        if owner:
            starts = torch.cat(picks)
            refined = torch.cat([
                refine_poses([meshes[t] for t in owner[i:i + batch]], starts[i:i + batch],
                             [views[t][2] for t in owner[i:i + batch]], views[0][0], ctx, cfg.warm_refine_iters,
                             [views[t][3] for t in owner[i:i + batch]], scorer)
                for i in range(0, len(owner), batch)])
            for t, cand in zip(frames, refined.split([len(k) for k in picks])):
                cfg_t, frame_s, _, topo = views[t]
                s = score_poses(meshes[t], cand, frame_s, cfg_t, ctx, scorer, topo)
                j = int(torch.argmin(s))
                if cfg.turn_margin * float(s[j]) < scores[t]:
                    poses[t], scores[t] = cand[j], float(s[j])
        share = (time.perf_counter() - t0) / T
        for t in range(T):
            secs[t] += share
        if on_round:
            on_round(r + 1, secs)
    return secs
