"""Skinning decomposition (experimental): a known rigid articulation is recovered; the skinned GLB is valid."""

import math

import numpy as np
import pytest
import torch
import trimesh

from v2m4.export.gltf import write_skinned_glb
from v2m4.export.skinning import _quaternions, decompose, skin_vertices, to_gltf
from v2m4.export.validate import validate_glb, validator_available
from v2m4.types import Mesh


def rot_x(a):
    c, s = math.cos(a), math.sin(a)
    return torch.tensor([[1.0, 0, 0], [0, c, -s], [0, s, c]], dtype=torch.float64)


def two_bone_cylinder(T=12):
    """A cylinder whose upper half turns rigidly about the x axis through the origin while the lower half slides."""
    tm = trimesh.creation.cylinder(radius=0.2, height=2.0, sections=16)
    tm = tm.subdivide()
    rest = torch.tensor(tm.vertices, dtype=torch.float64)
    upper = rest[:, 2] > 0
    frames = []
    for t in range(T):
        v = rest.clone()
        v[upper] = rest[upper] @ rot_x(0.8 * math.sin(t / 3)).T
        v[~upper] = rest[~upper] + torch.tensor([0.05 * t, 0, 0], dtype=torch.float64)
        frames.append(v)
    return tm, rest, torch.stack(frames)


def test_rigid_articulation_is_recovered():
    _, rest, frames = two_bone_cylinder()
    sk = decompose(rest, frames, n_bones=2, iters=5)
    assert sk.max_err < 1e-3, sk.max_err
    assert torch.allclose(sk.weights.sum(1), torch.ones(len(rest), dtype=sk.weights.dtype))
    assert int((sk.weights > 0).sum(1).max()) <= 4 and float(sk.weights.min()) >= 0
    Rm = sk.rotations
    eye = torch.eye(3, dtype=Rm.dtype).expand_as(Rm)
    assert torch.allclose(Rm.transpose(-1, -2) @ Rm, eye, atol=1e-9)
    assert torch.allclose(torch.det(Rm), torch.ones_like(torch.det(Rm)), atol=1e-9)


def test_quaternions_round_trip():
    _, rest, frames = two_bone_cylinder()
    sk = decompose(rest, frames, n_bones=2, iters=3)
    q = _quaternions(sk.rotations)
    x, y, z, w = q.unbind(-1)
    R = torch.stack([torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
                     torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
                     torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1)], -2)
    assert torch.allclose(R, sk.rotations, atol=1e-6)


@pytest.mark.skipif(validator_available() is not None, reason=f"{validator_available()}")
def test_skinned_glb_is_validator_clean(tmp_path):
    tm, rest, frames = two_bone_cylinder()
    sk = decompose(rest, frames, n_bones=3, iters=3)
    mesh = Mesh(rest.float(), torch.tensor(tm.faces), vertex_colors=torch.full((len(rest), 3), 0.6))
    write_skinned_glb(tmp_path / "s.glb", mesh, to_gltf(sk), np.arange(len(frames)) / 24.0)
    r = validate_glb(tmp_path / "s.glb")
    assert (r["errors"], r["warnings"]) == (0, 0), r["messages"]
