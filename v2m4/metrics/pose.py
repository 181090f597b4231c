"""Pose errors of a re-posing method against the transforms the synthetic generator removed (Sec. 4.1).

The method's world frame is its own (e.g. the first mesh's canonical frame), so errors are measured after one
global similarity between the ground-truth world and the method's world, fitted over the whole sequence: one view
cannot tell size from distance, and no frame is privileged.
"""

from __future__ import annotations

import statistics

import torch
from torch import Tensor


def _project_rotation(M: Tensor) -> Tensor:
    U, _, Vt = torch.linalg.svd(M)
    D = torch.ones(3, dtype=M.dtype)
    D[2] = torch.sign(torch.det(U @ Vt))
    return U @ torch.diag(D) @ Vt


def _angle_deg(R: Tensor) -> Tensor:
    c = ((R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
    return torch.rad2deg(torch.acos(c))


def pose_errors(world_from_canonical: Tensor, canonical_from_gt: Tensor, gt_vertices: Tensor) -> dict[str, float]:
    """world_from_canonical (T, 4, 4): what the method applied to each generated mesh; canonical_from_gt (T, 4, 4):
    what the generator removed; gt_vertices (T, V, 3) for the object's size and centre.

    A_t = world_from_canonical_t @ canonical_from_gt_t maps the ground-truth world into the method's world; it is
    constant for a perfect method. The one global similarity (R, s, tau) standing for all A_t: R the chordal mean
    of their rotations, s the median of their scales, tau the least-squares translation given R and s.
    Rotation error: angle between A_t's rotation and R. Translation error: the object's centre mapped by A_t
    against the centre mapped by (R, s, tau), as a fraction of the mapped bounding-box diagonal (s x diagonal).

    Why the scale comes from the A_t and not from the centres: fitting s to the centres alone is ill-posed when
    the object hardly moves (a walk in place), and a near-zero s then inflates the normalised error.
    """
    A = world_from_canonical.double() @ canonical_from_gt.double()
    lin = A[:, :3, :3]
    scale = torch.det(lin).abs() ** (1 / 3)
    Rt = lin / scale[:, None, None]
    Rm = _project_rotation(Rt.mean(0))
    rot_err = _angle_deg(Rt @ Rm.T)
    gt = gt_vertices.double()
    centre = (gt.max(1).values + gt.min(1).values) / 2  # (T, 3)
    mapped = (lin @ centre[..., None])[..., 0] + A[:, :3, 3]  # where the method puts the object's centre
    s = float(scale.median())
    rc = s * centre @ Rm.T
    tau = (mapped - rc).mean(0)
    diag = float((gt[0].max(0).values - gt[0].min(0).values).norm())
    trans_err = (mapped - (rc + tau)).norm(dim=-1) / (s * diag)
    q = sorted(rot_err.tolist())
    p95 = q[min(len(q) - 1, int(round(0.95 * (len(q) - 1))))]
    return {"rot_err_med_deg": statistics.median(q), "rot_err_p95_deg": p95,
            "trans_err_med": statistics.median(trans_err.tolist())}
