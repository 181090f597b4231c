"""Weight-free metrics give exact values on constructed cases."""

import math

import torch
import trimesh

from v2m4.metrics import geometry as G
from v2m4.metrics import image as I


def _sphere_points(n=2000, seed=0):
    m = trimesh.creation.icosphere(subdivisions=3)
    v, f = torch.tensor(m.vertices, dtype=torch.float32), torch.tensor(m.faces)
    return v, f, G.sample_surface(v, f, n, generator=torch.Generator().manual_seed(seed))


def test_identical_point_sets_chamfer_zero_fscore_one():
    _, _, p = _sphere_points()
    assert G.chamfer_l2(p, p) == 0
    assert G.fscore(p, p, 0.01) == 1


def test_shifted_point_set_known_chamfer_and_fscore():
    # a single point each, 0.3 apart: chamfer = 0.09 + 0.09; within 0.2 fails, within 0.5 passes
    a, b = torch.tensor([[0.0, 0, 0]]), torch.tensor([[0.3, 0, 0]])
    assert math.isclose(G.chamfer_l2(a, b), 0.18, rel_tol=1e-6)
    assert G.fscore(a, b, 0.2) == 0 and G.fscore(a, b, 0.5) == 1


def test_umeyama_recovers_similarity():
    g = torch.Generator().manual_seed(1)
    src = torch.randn(100, 3, generator=g)
    q = torch.nn.functional.normalize(torch.randn(4, generator=g), dim=0)
    w, x, y, z = q
    R = torch.tensor([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                      [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                      [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    dst = 2.5 * src @ R.T + torch.tensor([1.0, -2.0, 0.5])
    T = G.umeyama(src, dst)
    torch.testing.assert_close(G.apply(T, src), dst, atol=1e-4, rtol=0)


def test_align_similarity_without_correspondences():
    v, f, p = _sphere_points()
    # an asymmetric shape: stretch the sphere, then rotate a quarter turn, scale and move it
    v2 = v * torch.tensor([1.0, 0.5, 0.3]) + torch.tensor([0.3, 0.0, 0.0]) * (v[:, 1:2] > 0)
    src = G.sample_surface(v2, f, 2000, generator=torch.Generator().manual_seed(2))
    R = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    dst_mesh = (v2 @ R.T) * 3 + torch.tensor([5.0, 1.0, -2.0])
    dst = G.sample_surface(dst_mesh, f, 2000, generator=torch.Generator().manual_seed(3))
    T = G.align_similarity(src, dst)
    # the floor is sampling noise: two independent samples of the same target surface
    floor = G.chamfer_l2(G.sample_surface(dst_mesh, f, 2000, generator=torch.Generator().manual_seed(4)), dst)
    assert G.chamfer_l2(G.apply(T, src), dst) < 1.5 * floor
    torch.testing.assert_close(T[:3, :3], 3 * R, atol=0.1, rtol=0)  # within ~2 degrees


def test_mask_iou_of_shifted_square():
    # a 10x10 square shifted by 2 pixels: intersection 80, union 120
    a = torch.zeros(1, 32, 32)
    b = torch.zeros(1, 32, 32)
    a[0, 5:15, 5:15] = 1
    b[0, 5:15, 7:17] = 1
    assert math.isclose(float(I.mask_iou(a, b)[0]), 80 / 120, rel_tol=1e-6)


def test_masked_psnr_of_known_noise():
    # a constant error of 0.1 inside the mask: MSE 0.01 -> 20 dB; errors outside the mask do not count
    t = torch.full((1, 8, 8, 3), 0.5)
    p = t.clone()
    m = torch.zeros(1, 8, 8)
    m[0, :4] = 1
    p[0, :4] += 0.1
    p[0, 4:] = 0
    assert math.isclose(float(I.masked_psnr(p, t, m)[0]), 20.0, rel_tol=1e-4)


def test_ssim_identical_is_one_and_drops_with_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 32, 32, 3, generator=g)
    torch.testing.assert_close(I.ssim(x, x), torch.ones(2))
    assert (I.ssim(x, (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)) < 0.9).all()


def test_sequence_scores_of_ground_truth_against_itself():
    v, f, _ = _sphere_points()
    v = v * torch.tensor([1.0, 0.6, 0.4])
    seq = torch.stack([v + torch.tensor([0.1 * t, 0, 0]) for t in range(4)])
    s = G.sequence_geometry_scores(list(seq), [f] * 4, seq, f, n_points=3000)
    # independent surface samples of the same shape: F-score@2% is ~0.98, not 1, from sampling alone
    assert s["fscore2_once"] > 0.97 and s["fscore2_per_frame"] > 0.97
    assert s["topology_constant"] == 1
    assert s["jitter"] < 1e-5  # constant velocity: zero acceleration
