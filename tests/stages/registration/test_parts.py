"""Loose pieces placed on their targets' pieces before the whole-clip fit (``parts``)."""

import math

import numpy as np
import torch
import trimesh

from v2m4.geometry import chamfer
from v2m4.stages.registration.parts import pieces, place_pieces
from v2m4.types import Mesh


def _box(extents, centre) -> trimesh.Trimesh:
    return trimesh.creation.box(extents=extents).subdivide().apply_translation(centre)


def _figure(arm_turn: float) -> tuple[Mesh, list[slice]]:
    """A body, an eye near its top, a left arm hanging and a right arm turned by arm_turn about its shoulder (the
    z axis through (0.55, 0.3, 0)); the arms are L-shaped-free boxes of unequal sides, the eye a small cube.
    Returns the mesh and each piece's vertex rows (body, eye, left arm, right arm)."""
    body = _box((0.8, 1.2, 0.5), (0, 0, 0))
    eye = _box((0.12, 0.12, 0.12), (0.2, 0.45, 0.3))
    left = _box((0.15, 0.7, 0.25), (-0.55, -0.05, 0))
    right = _box((0.15, 0.7, 0.25), (0.55, -0.05, 0))
    c, s = math.cos(arm_turn), math.sin(arm_turn)
    turn = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    shoulder = np.array([0.55, 0.3, 0.0])
    right.vertices[:] = (right.vertices - shoulder) @ turn.T + shoulder
    parts = [body, eye, left, right]
    rows, start = [], 0
    for p in parts:
        rows.append(slice(start, start + len(p.vertices)))
        start += len(p.vertices)
    whole = trimesh.util.concatenate(parts)
    return Mesh(torch.tensor(whole.vertices, dtype=torch.float32), torch.tensor(whole.faces)), rows


def test_pieces_are_the_connected_components_largest_first():
    m, rows = _figure(0.0)
    found = pieces(m.faces.numpy(), m.vertices.shape[0])
    assert [len(p) for p in found] == sorted((r.stop - r.start for r in rows), reverse=True)
    assert sorted(np.concatenate(found).tolist()) == list(range(m.vertices.shape[0]))


def test_a_raised_arm_is_placed_on_its_target_and_the_other_pieces_stay():
    rest, rows = _figure(0.0)
    raised, _ = _figure(math.radians(150))
    x = torch.stack([rest.vertices, rest.vertices])  # both keyframes start at the rest pose (one similarity)
    out, moved = place_pieces(x, rest.faces, [rest, raised])
    assert moved == [0, 1]
    torch.testing.assert_close(out[0], x[0])  # keyframe 0 already fits: nothing moves
    for r in rows[:3]:  # body, eye and the other arm stay where they fit
        torch.testing.assert_close(out[1, r], x[1, r])
    arm = rows[3]
    before = float(chamfer(x[1, arm][None], raised.vertices[arm][None]))
    after = float(chamfer(out[1, arm][None], raised.vertices[arm][None]))
    assert after < 1e-3 < before
    # the arm moved rigidly: its edge lengths are the rest's
    e = rest.faces[:, :2]
    in_arm = (e[:, 0] >= arm.start) & (e[:, 0] < arm.stop)
    d0 = (x[1][e[in_arm, 0]] - x[1][e[in_arm, 1]]).norm(dim=-1)
    d1 = (out[1][e[in_arm, 0]] - out[1][e[in_arm, 1]]).norm(dim=-1)
    torch.testing.assert_close(d1, d0, atol=1e-5, rtol=0)


def test_one_piece_and_unmatched_targets_leave_the_positions_alone():
    body = _box((0.8, 1.2, 0.5), (0, 0, 0))
    one = Mesh(torch.tensor(body.vertices, dtype=torch.float32), torch.tensor(body.faces))
    x = one.vertices[None]
    out, moved = place_pieces(x, one.faces, [one])
    assert moved == [0] and out is x
    rest, _ = _figure(0.0)
    raised, _ = _figure(math.radians(150))
    fused = Mesh(raised.vertices, raised.faces[: body.faces.shape[0]])  # the target's body alone: no piece to go to
    out, moved = place_pieces(rest.vertices[None], rest.faces, [fused])
    assert moved == [0]
    torch.testing.assert_close(out, rest.vertices[None])
