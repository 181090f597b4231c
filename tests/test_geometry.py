"""geometry.nearest_rotations against the SVD's answer, degenerate problems included."""

import torch

from v2m4.geometry import nearest_rotations


def _svd_optimum(S: torch.Tensor) -> torch.Tensor:
    """max over proper rotations of tr(R S): sigma1 + sigma2 + sign(det S) sigma3."""
    s = torch.linalg.svdvals(S)
    return s[..., 0] + s[..., 1] + torch.sign(torch.det(S)) * s[..., 2]


def _svd_rotation(S: torch.Tensor) -> torch.Tensor:
    U, _, Vh = torch.linalg.svd(S)
    d = torch.sign(torch.det(Vh.transpose(-1, -2) @ U.transpose(-1, -2)))
    D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    return Vh.transpose(-1, -2) @ D @ U.transpose(-1, -2)


def test_nearest_rotations_is_the_svd_rotation_where_it_is_unique():
    g = torch.Generator().manual_seed(0)
    S = torch.randn(2000, 3, 3, generator=g, dtype=torch.float64)
    S[:500] = -S[:500]  # reflections: det S < 0
    S[500:1000, :, 2] = 0  # planar one-rings: rank 2
    R = nearest_rotations(S)
    torch.testing.assert_close(R, _svd_rotation(S), atol=1e-9, rtol=0)


def test_nearest_rotations_are_proper_and_optimal_on_degenerate_problems():
    g = torch.Generator().manual_seed(1)
    Q = torch.linalg.qr(torch.randn(6, 3, 3, generator=g, dtype=torch.float64)).Q
    Q = Q * torch.sign(torch.det(Q))[:, None, None]  # proper rotations
    a = torch.randn(6, 3, 1, generator=g, dtype=torch.float64)
    S = torch.cat([
        torch.zeros(1, 3, 3, dtype=torch.float64),  # no one-ring at all
        a[:2] @ a[:2].transpose(1, 2),  # rank 1: every edge along one line
        Q.transpose(1, 2),  # S = R^T exactly: all singular values equal
        torch.diag(torch.tensor([2.0, 2.0, 1.0], dtype=torch.float64))[None],  # a repeated singular value
        -torch.eye(3, dtype=torch.float64)[None],  # a point reflection
    ])
    R = nearest_rotations(S)
    eye = torch.eye(3, dtype=torch.float64).expand_as(R)
    torch.testing.assert_close(R @ R.transpose(1, 2), eye, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.det(R), torch.ones(len(S), dtype=torch.float64), atol=1e-12, rtol=0)
    trace = (R * S.transpose(1, 2)).sum((1, 2))
    torch.testing.assert_close(trace, _svd_optimum(S), atol=1e-9, rtol=0)
    torch.testing.assert_close(R[3:9], Q, atol=1e-9, rtol=0)  # S = Q^T: the rotation is Q itself
