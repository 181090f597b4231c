"""The keyframes' temporal smoothing and its weight chosen by the video (``registration.smoothing``)."""

import math

import numpy as np
import pytest
import torch
import trimesh

from v2m4 import render as R
from v2m4.camera import Camera, orbit_camera
from v2m4.stages.registration.smoothing import (TemporalChoice, choose_weight, noise_weight, pick_weight,
                                                smooth_from_keyframes, smooth_keyframes)
from v2m4.types import Mesh

CTX = R.context("torch", "cpu")
T = 13
KEY = torch.tensor([0, 3, 6, 9, 12])
WEIGHTS = (0.0, 0.01, 0.1, 1.0, 10.0, 100.0)


def dense(y: torch.Tensor, key: torch.Tensor, lam: float) -> torch.Tensor:
    """The same minimiser by a dense solve of the normal equations."""
    n = y.shape[0]
    D = np.diff(np.eye(n), n=2, axis=0)
    W = np.diag(np.isin(np.arange(n), key.numpy()).astype(float))
    s = float(key[-1] - key[0]) / (len(key) - 1)
    A = W + max(lam, 1e-8) * s ** 4 * D.T @ D
    return torch.from_numpy(np.linalg.solve(A, W @ y.reshape(n, -1).numpy())).reshape(y.shape)


@pytest.mark.parametrize("n,key", [(3, [0, 1, 2]), (4, [0, 3]), (13, [0, 3, 6, 9, 12]), (11, [1, 4, 8])])
def test_banded_solve_is_the_dense_solve(n, key):
    y = torch.randn(n, 5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    for lam in (0.0, 0.3, 30.0):
        got = smooth_from_keyframes(y, torch.tensor(key), lam)
        assert torch.allclose(got, dense(y, torch.tensor(key), lam), atol=1e-9), lam


def test_weight_zero_interpolates_and_lines_pass_unchanged():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(T, 4, 3, dtype=torch.float64, generator=g)
    assert torch.allclose(smooth_from_keyframes(y, KEY, 0.0)[KEY], y[KEY], atol=1e-4)
    assert torch.equal(smooth_keyframes(y, KEY, 0.0), y)
    # a trajectory linear in time has no second difference: no weight moves it
    a = torch.randn(1, 4, 3, dtype=torch.float64, generator=g)
    b = torch.randn(1, 4, 3, dtype=torch.float64, generator=g)
    line = a + torch.arange(T, dtype=torch.float64)[:, None, None] * b
    for lam in (0.1, 100.0):
        assert torch.allclose(smooth_keyframes(line, KEY, lam), line, atol=1e-8)
    # a large weight puts the keyframes on a line in time; the in-betweens keep their offsets from the interpolant
    s = smooth_keyframes(y, KEY, 1e4)
    second = s[KEY][2:] - 2 * s[KEY][1:-1] + s[KEY][:-2]
    assert float(second.abs().max()) < 1e-2 * float((y[KEY][2:] - 2 * y[KEY][1:-1] + y[KEY][:-2]).abs().max())
    moved = s - y
    assert torch.allclose(moved, smooth_from_keyframes(y, KEY, 1e4) - smooth_from_keyframes(y, KEY, 0.0))


def test_frames_outside_the_keyframes_keep_the_end_keyframes_change():
    """Keyframes 2, 5, 8 of 11 frames: the frames before and after them move as their end keyframe did, not by a
    change extrapolated in time."""
    y = torch.randn(11, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    key = torch.tensor([2, 5, 8])
    out = smooth_keyframes(y, key, 10.0)
    change = out - y
    assert torch.allclose(change[:2], change[2].expand(2, -1, -1))
    assert torch.allclose(change[9:], change[8].expand(2, -1, -1))
    assert float(change[key].abs().max()) > 0.01  # the keyframes did move
    assert torch.equal(smooth_keyframes(y, key, 10.0, between=True)[:2], out[:2])


def box() -> Mesh:
    tm = trimesh.creation.box(extents=(0.4, 0.5, 1.2)).subdivide().subdivide()
    return Mesh(torch.tensor(tm.vertices, dtype=torch.float32), torch.tensor(tm.faces, dtype=torch.int64))


def camera() -> Camera:
    """On +X looking at the origin: it sees the y-z plane."""
    return orbit_camera(torch.tensor([math.pi / 2]), torch.zeros(1), torch.tensor([3.0]), torch.zeros(1, 3),
                        fov_deg=40, resolution=(64, 64))


def masks_of(m: Mesh, x: torch.Tensor, cam: Camera) -> torch.Tensor:
    n = x.shape[0]
    cams = Camera(cam.K.expand(n, 3, 3), cam.cam_from_world.expand(n, 4, 4), cam.resolution)
    with torch.no_grad():
        return R.render(CTX, m, cams, channels=("mask",), vertices=x)["mask"]


def between_linear(values: torch.Tensor) -> torch.Tensor:
    """Every frame from the keyframes' values, linear in between (where a fit starts its in-betweens)."""
    out = values.clone()
    for a, b in zip(KEY[:-1].tolist(), KEY[1:].tolist()):
        for t in range(a + 1, b):
            w = (t - a) / (b - a)
            out[t] = values[a] * (1 - w) + values[b] * w
    return out


def jitter(x: torch.Tensor) -> float:
    k = x[KEY]
    return float((k[2:] - 2 * k[1:-1] + k[:-2]).norm(dim=-1).mean())


def still_clip(m: Mesh, exact_between: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(truth, fit): a still box, its keyframes each carrying their own smooth shape noise (a generator's: up to
    about 0.05 of the 1.2-long box, 1.5 px here), the frames between them linear between the noisy keyframes (where
    a fit starts them) or, with ``exact_between``, exact (what a perfect fit to the video would give)."""
    truth = m.vertices[None].expand(T, -1, -1)
    g = torch.Generator().manual_seed(1)
    noisy = truth.clone()
    for k in KEY.tolist():
        noisy[k] = truth[k] + torch.sin(truth[k] * 3) @ (0.05 * torch.randn(3, 3, generator=g))
    if exact_between:
        fit = truth.clone()
        fit[KEY] = noisy[KEY]
        return truth, fit
    return truth, between_linear(noisy)


def test_a_still_clip_is_smoothed_at_every_frame():
    """The video chooses a weight, the keyframes' jitter and error fall, and the in-betweens, which the smoothed
    trajectory predicts better than their own (noisy) start, take it (measured: weight 100, in-between IoU 0.81
    unsmoothed, 0.95 at 100; jitter 0.23 -> 0.0002, keyframe error 0.082 -> 0.040)."""
    m, cam = box(), camera()
    truth, y = still_clip(m, exact_between=False)
    choice = choose_weight(y, KEY, masks_of(m, truth, cam), cam, m, CTX, WEIGHTS)
    assert choice.weight > 0 and len(choice.scores) == len(WEIGHTS) and choice.between, choice
    out = smooth_keyframes(y, KEY, choice.weight, between=choice.between)
    assert jitter(out) < 0.5 * jitter(y), (jitter(out), jitter(y))
    assert float((out[KEY] - truth[KEY]).norm(dim=-1).mean()) < float((y[KEY] - truth[KEY]).norm(dim=-1).mean())
    every = out[2:] - 2 * out[1:-1] + out[:-2]  # smooth at every frame, not only keyframe to keyframe
    assert float(every.norm(dim=-1).mean()) < 0.1 * float((y[2:] - 2 * y[1:-1] + y[:-2]).norm(dim=-1).mean())


def test_in_betweens_that_fit_the_video_better_keep_their_fit():
    """The same noisy keyframes with exact in-betweens: the keyframes are smoothed, but the smoothed trajectory
    does not predict the in-betweens as well as they already fit, so they keep their fit (moved by what the
    smoothing changed there)."""
    m, cam = box(), camera()
    truth, y = still_clip(m, exact_between=True)
    choice = choose_weight(y, KEY, masks_of(m, truth, cam), cam, m, CTX, WEIGHTS)
    assert choice.weight > 0 and not choice.between and choice.fitted > max(choice.scores), choice
    out = smooth_keyframes(y, KEY, choice.weight, between=choice.between)
    assert torch.allclose(out, smooth_keyframes(y, KEY, choice.weight))
    assert jitter(out) < 0.5 * jitter(y)


def test_a_moving_clip_is_left_as_fitted():
    """The box swept around a circle in the camera's view (a quarter turn between keyframes), every frame exact:
    any smoothing cuts the circle's corners between keyframes, which the in-betweens' masks show, so the video
    chooses no smoothing and the fit is returned as it is (measured: in-between IoU 0.87 unsmoothed, 0.36 at
    weight 100)."""
    m, cam = box(), camera()
    t = torch.arange(T, dtype=torch.float32)
    centre = torch.stack([torch.zeros(T), 0.3 * torch.cos(math.pi * t / 6), 0.3 * torch.sin(math.pi * t / 6)], -1)
    truth = m.vertices[None] + centre[:, None]
    choice = choose_weight(truth, KEY, masks_of(m, truth, cam), cam, m, CTX, WEIGHTS)
    assert choice.weight == 0.0 and not choice.between, choice
    assert choice.scores[0] > choice.scores[-1] + 0.05, choice
    assert torch.equal(smooth_keyframes(truth, KEY, choice.weight, between=choice.between), truth)


def test_nothing_to_test_means_no_smoothing():
    m, cam = box(), camera()
    x = m.vertices[None].expand(3, -1, -1).clone()
    masks = masks_of(m, x, cam)
    assert choose_weight(x, torch.tensor([0, 1, 2]), masks, cam, m, CTX, WEIGHTS) == TemporalChoice()  # no in-between
    assert choose_weight(x, torch.tensor([0, 2]), masks, cam, m, CTX, WEIGHTS) == TemporalChoice()  # two keyframes


def test_the_smoothest_weight_the_video_allows_is_picked():
    assert pick_weight((0.0, 0.1, 1.0, 10.0), (0.80, 0.81, 0.80, 0.79)) == 1.0  # ties with none count as allowed
    assert pick_weight((0.0, 0.1, 1.0), (0.80, 0.79, 0.81)) == 1.0  # the largest allowed, not the first
    assert pick_weight((0.0, 0.1, 1.0), (0.80, 0.70, 0.60)) == 0.0
    assert pick_weight((0.1, 1.0), (0.70, 0.60)) == 0.1  # no 0 in the grid: the first weight is the reference


def test_the_noise_allows_a_still_clip_straight_lines_and_a_moving_one_nothing():
    """The discrepancy principle (``noise_weight``): keyframes that differ by their noise alone may be smoothed to
    the largest weight; keyframes that move far more than their noise may not be smoothed at all; and a noise
    given on top of the video's rule raises a weight the video alone left at 0."""
    m, cam = box(), camera()
    truth, y = still_clip(m, exact_between=False)
    var = float(((y[KEY] - truth[KEY]) ** 2).sum(-1).mean())  # the keyframes' own noise variance per vertex
    assert noise_weight(y, KEY, WEIGHTS, var) == 100.0
    assert noise_weight(y, KEY, WEIGHTS, 0.01 * var) < 100.0  # less noise than the data moves: less smoothing
    t = torch.arange(T, dtype=torch.float32)
    centre = torch.stack([torch.zeros(T), 0.3 * torch.cos(math.pi * t / 6), 0.3 * torch.sin(math.pi * t / 6)], -1)
    moving = m.vertices[None] + centre[:, None]
    assert noise_weight(moving, KEY, WEIGHTS, 1e-4) == 0.0  # 0.01 of noise against 0.3 of motion
    choice = choose_weight(moving, KEY, masks_of(m, moving, cam), cam, m, CTX, WEIGHTS, vertex_variance=1e-4)
    assert choice.weight == 0.0 and choice.noise_weight == 0.0
    video = choose_weight(y, KEY, masks_of(m, truth, cam), cam, m, CTX, (0.0, 0.01))
    both = choose_weight(y, KEY, masks_of(m, truth, cam), cam, m, CTX, (0.0, 0.01), vertex_variance=var)
    assert both.noise_weight == 0.01 and both.weight == max(video.weight, 0.01)
    # every frame a keyframe: nothing to test against, the noise's rule alone
    x = y[KEY]
    alone = choose_weight(x, torch.arange(len(KEY)), masks_of(m, truth[KEY], cam), cam, m, CTX, WEIGHTS,
                          vertex_variance=var)
    assert alone.weight == alone.noise_weight > 0 and alone.scores == ()
