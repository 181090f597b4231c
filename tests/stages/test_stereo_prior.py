"""Stereo-prior math (Sec. 4.1, Fig. 3, Appendix A) with synthetic point maps: Chamfer similarity alignment with
the flip trial, the camera from 3D-2D reprojection, and the two composed."""

import math

import pytest
import torch

from conftest import DEMO_DIR
from v2m4 import render as R
from v2m4.data.bench import load_item
from v2m4.generators.synthetic import SyntheticConfig, SyntheticGenerator
from v2m4.stages import camera as CS
from v2m4.stages.stereo_prior import StereoPriorConfig, align_point_clouds, pose_from_point_maps, solve_camera

CTX = R.context()


def _rotation(axis, angle):
    axis = torch.nn.functional.normalize(torch.tensor(axis, dtype=torch.float32), dim=0)
    K = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return torch.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


@pytest.mark.parametrize("flip", [False, True])
def test_point_cloud_alignment_recovers_similarity(flip):
    g = torch.Generator().manual_seed(1)
    # an asymmetric blob: an ellipsoid with a bump on one side
    x = torch.randn(3000, 3, generator=g) * torch.tensor([1.0, 0.6, 0.3])
    x = x + torch.tensor([0.8, 0.0, 0.0]) * (x[:, 1:2] > 0.3)
    R_ = _rotation([0.2, 0.3, 1.0], 0.6)
    if flip:  # start the search upside down: the minimum the flip trial exists for
        R_ = R_ @ torch.diag(torch.tensor([1.0, -1.0, -1.0]))
    y = 2.0 * x @ R_.T + torch.tensor([1.0, -0.5, 3.0])
    cfg = StereoPriorConfig(subsample=0.3, max_points=600, align_iters=600, flip_at=300, lr=0.02)
    T, _ = align_point_clouds(x, y, cfg, generator=g)
    # the recovered similarity maps every point onto its own image (correspondences were never given)
    err = (x @ T[:3, :3].T + T[:3, 3] - y).norm(dim=-1)
    assert float(err.mean()) < 0.05 * float(y.std(0).norm())
    torch.testing.assert_close(torch.det(T[:3, :3]) ** (1 / 3), torch.tensor(2.0), atol=0.05, rtol=0)


def test_solve_camera_recovers_known_camera():
    cfg = CS.CameraSearchConfig.fast()
    true = torch.tensor([0.6, 0.3, 2.5, 0.1, -0.05, 0.0, 0.0])
    pts = torch.rand(200, 3, generator=torch.Generator().manual_seed(2)) - 0.5
    uv, _ = CS.pose_cameras(true[None], cfg, (64, 64)).project(pts)
    init = true + torch.tensor([0.15, -0.1, 0.3, 0.05, 0.05, -0.05, 0.0])
    got = solve_camera(pts, uv[0], init, cfg, (64, 64), StereoPriorConfig(solve_iters=400, lr=0.02))
    uv2, _ = CS.pose_cameras(got[None], cfg, (64, 64)).project(pts)
    assert float((uv2 - uv).norm(dim=-1).mean()) < 0.3  # pixels
    torch.testing.assert_close(got[:2], true[:2], atol=0.03, rtol=0)  # yaw, pitch in radians


def test_pose_from_synthetic_point_maps():
    # an oracle point-map model, DUSt3R-like: the true canonical points of the frame and of three renders, in the
    # frame's camera with OpenCV axes (y down, z forward), scaled by 0.4, plus noise; the frame's pose must come back
    item = load_item("demo", bench_dir=DEMO_DIR, frames=[0], resolution=(48, 48))
    mesh = SyntheticGenerator(item, seed=0, config=SyntheticConfig(target_faces=1200)).generate(None, 0)
    cfg = CS.CameraSearchConfig.fast()
    true = torch.tensor([2.4, 0.35, 2.2, 0.05, 0.0, -0.05, 0.0])
    renders = torch.tensor([[1.9, 0.2, 2.0, 0, 0, 0, 0], [2.9, 0.5, 2.4, 0, 0, 0, 0], [2.5, -0.1, 2.2, 0, 0, 0, 0.0]])
    cams = CS.pose_cameras(torch.cat([true[None], renders]), cfg, (48, 48))
    out = R.render(CTX, mesh, cams, channels=("points", "mask"))
    pts, mask = out["points"], out["mask"] > 0.5
    g = torch.Generator().manual_seed(3)
    opencv = torch.diag(torch.tensor([1.0, -1.0, -1.0]))
    E = cams.cam_from_world[0]
    pred = 0.4 * (pts @ E[:3, :3].T + E[:3, 3]) @ opencv + 0.004 * torch.randn(pts.shape, generator=g)
    scfg = StereoPriorConfig(subsample=0.5, max_points=800, align_iters=500, flip_at=250, solve_iters=300, lr=0.02)
    init = renders[0]  # the best sampled pose, 0.5 rad of yaw away
    starts = cams.world_from_cam[1:, :3, :3] @ opencv  # as StereoPrior.estimate_pose guesses them
    got = pose_from_point_maps(pred[0], pred[1:], pts[1:], mask[1:], mask[0], init, cfg, None, scfg, generator=g,
                               init_rotations=starts)
    R_true = CS.pose_cameras(true[None], cfg, (48, 48)).cam_from_world[0, :3, :3]
    R_got = CS.pose_cameras(got[None], cfg, (48, 48)).cam_from_world[0, :3, :3]
    angle = math.degrees(math.acos(min(1.0, (float(torch.trace(R_got @ R_true.T)) - 1) / 2)))
    assert angle < 4
