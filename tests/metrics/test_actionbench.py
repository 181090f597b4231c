"""ActionBench's geometry metrics: zero-ish on the ground truth itself whatever its pose and scale, and each metric
sees what it is meant to see (shape, drift, motion)."""

import torch
import trimesh

from v2m4.metrics.actionbench import actionbench_scores, chamfer, fit_alignment, apply_alignment, motion_error

KW = dict(align_points=120, pred_points=3000, gt_points=3000, chamfer_queries=1500, iters=80)


def _clip(T=2):
    body = trimesh.creation.box((2.0, 0.6, 0.4))
    head = trimesh.creation.box((0.5, 0.5, 0.5))
    head.apply_translation((1.1, 0.4, 0.0))
    m = trimesh.util.concatenate([body, head])
    m = m.subdivide().subdivide()
    v = torch.tensor(m.vertices, dtype=torch.float32)
    f = torch.tensor(m.faces, dtype=torch.int64)
    # a tail that swings over time: motion that a static output cannot follow
    seq = []
    for t in range(T):
        w = v.clone()
        tail = w[:, 0] < -0.5
        w[tail, 1] += 0.8 * t * (-0.5 - w[tail, 0])
        seq.append(w)
    return torch.stack(seq), f


def test_alignment_recovers_a_turned_scaled_copy():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(120, 3, generator=g, dtype=torch.float64) * torch.tensor([2.0, 0.6, 0.3], dtype=torch.float64) - 0.5
    R = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64)
    q = 1.2 * p @ R + torch.tensor([0.2, -0.1, 0.3], dtype=torch.float64)
    tr = fit_alignment(p, q, iters=120)
    assert chamfer(apply_alignment(p, tr), q, queries=120, seed=0) < 0.05


def test_ground_truth_scores_near_zero_in_any_pose_and_unit():
    seq, f = _clip()
    Rq = torch.tensor([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]])
    out = [v @ Rq.T * 3.0 + 7.0 for v in seq]
    s = actionbench_scores(out, [f] * 2, seq, f, **KW)
    assert set(s) == {"cd_3d", "cd_4d", "cd_m"}
    # the floor is two independent samplings of one surface at 3,000 points (about 0.06 here; a distance of 0.02
    # per point each way in a [-1, 1] box)
    assert s["cd_3d"] < 0.09 and s["cd_4d"] < 0.09 and s["cd_m"] < 0.09


def test_drift_shows_in_cd_4d_and_cd_m_not_in_cd_3d():
    seq, f = _clip()
    drifted = [seq[0], seq[1] + torch.tensor([0.0, 0.4, 0.0])]
    s = actionbench_scores(drifted, [f] * 2, seq, f, **KW)
    good = actionbench_scores(list(seq), [f] * 2, seq, f, **KW)
    assert s["cd_4d"] > good["cd_4d"] + 0.05 and s["cd_m"] > good["cd_m"] + 0.1  # one frame of two 0.3 off
    assert s["cd_3d"] < good["cd_3d"] + 0.02  # each frame aligned on its own: the shape is right


def test_motion_error_needs_fixed_topology_and_measures_trajectories():
    seq, f = _clip()
    other = [seq[0], seq[1][:-3]]
    faces = [f, f[(f < len(seq[1]) - 3).all(1)]]
    assert "cd_m" not in actionbench_scores(other, faces, seq, f, **{**KW, "iters": 5})
    a = torch.zeros(4, 5, 3, dtype=torch.float64)
    b = a.clone()
    b[1:, :, 0] = 1.0  # every point 1 away at 3 of 4 frames: 0.75 per direction
    assert abs(motion_error(a, b) - 1.5) < 1e-9
