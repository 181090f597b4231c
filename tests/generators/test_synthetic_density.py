"""Mesh density: ``simplify_mesh`` (a generated mesh at a working resolution, appearance carried) and the synthetic
generator's face count, which leaves its default output as it was."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import DEMO_DIR
from v2m4 import Mesh
from v2m4.data.bench import load_item, vertex_colors
from v2m4.generators.base import simplify_mesh
from v2m4.generators.synthetic import SyntheticConfig, SyntheticGenerator


@pytest.fixture(scope="module")
def item():
    return load_item("demo", bench_dir=DEMO_DIR, frames=[0, 6, 12])


def sphere(subdivisions=3):
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=subdivisions)
    return np.asarray(m.vertices), np.asarray(m.faces)


def test_default_output_is_what_it_was(item):
    # recorded from the generator before it took plain arrays (git HEAD of v2m4/generators/synthetic.py, seed 0,
    # demo frames 0, 6, 12): vertex count, face count, sum of vertices, sum of colours. Both constructors, the
    # item and the arrays, give them.
    before = [(1319, 2634, [2.161803, -52.721749, 89.343883], [799.520694, 744.594448, 464.568937]),
              (1250, 2496, [2.047307, -22.346574, 66.768401], [907.330421, 660.116405, 221.820351]),
              (1782, 3560, [-16.020058, -48.835314, 75.470403], [1390.980187, 1176.711876, 470.955702])]
    by_item = SyntheticGenerator(item, seed=0)
    by_arrays = SyntheticGenerator(item.gt_vertices, item.faces, vertex_colors(item), seed=0,
                                   frame_indices=item.frame_indices)
    for t, (nv, nf, vsum, csum) in enumerate(before):
        m = by_item.generate(None, t)
        assert m.vertices.shape[0] == nv and m.faces.shape[0] == nf
        torch.testing.assert_close(m.vertices.double().sum(0), torch.tensor(vsum, dtype=torch.float64), atol=1e-3,
                                   rtol=0)
        torch.testing.assert_close(m.vertex_colors.double().sum(0), torch.tensor(csum, dtype=torch.float64),
                                   atol=1e-3, rtol=0)
        if t == 2:
            other = by_arrays.generate(None, t)
            for name in ("vertices", "faces", "vertex_colors"):
                assert torch.equal(getattr(m, name), getattr(other, name))


def test_dense_generated_meshes(item):
    # the demo's ground truth has 576 faces: 30k means subdividing three times (36,864 faces) before decimating
    g = SyntheticGenerator(item, seed=0, config=SyntheticConfig(target_faces=30000, target_jitter=0.0))
    m = g.generate(None, 0)
    assert abs(m.faces.shape[0] - 30000) <= 3000
    assert m.vertex_colors is not None and m.vertex_colors.shape == m.vertices.shape
    # the same object: colours of the default-density mesh, close in the mean
    torch.testing.assert_close(m.vertex_colors.mean(0), SyntheticGenerator(item, seed=0).generate(None, 0)
                               .vertex_colors.mean(0), atol=0.05, rtol=0)


def test_any_object_with_the_arrays_and_no_colours(item):
    duck = SimpleNamespace(gt_vertices=item.gt_vertices, faces=item.faces, vertex_colors=None)
    m = SyntheticGenerator.from_item(duck, seed=0, config=SyntheticConfig(target_faces=500)).generate(None, 1)
    assert m.vertex_colors is None and 400 <= m.faces.shape[0] <= 600


def test_simplify_keeps_small_meshes_as_they_are():
    v, f = sphere(1)
    mesh = Mesh(torch.as_tensor(v, dtype=torch.float32), torch.as_tensor(f))
    assert simplify_mesh(mesh, 80) is mesh and simplify_mesh(mesh, 1000) is mesh


def test_simplify_carries_vertex_colours():
    # colour = (position + 1) / 2 on a unit sphere: a linear function, so the colour at any point of the original
    # surface is that point's; a new vertex lies within the chord sag of the sphere at 300 faces (~0.03)
    v, f = sphere(3)
    mesh = Mesh(torch.as_tensor(v, dtype=torch.float32), torch.as_tensor(f),
                vertex_colors=torch.as_tensor((v + 1) / 2, dtype=torch.float32))
    out = simplify_mesh(mesh, 300)
    assert out.faces.shape[0] <= 300 and out.vertex_colors.shape == out.vertices.shape
    assert (out.vertex_colors - (out.vertices + 1) / 2).abs().max() < 0.03
    lo, hi = out.vertices.min(0).values, out.vertices.max(0).values
    torch.testing.assert_close(hi - lo, torch.full((3,), 2.0), atol=0.1, rtol=0)


def cube_charts(v, f):
    """Split a unit sphere into 6 uv charts, one per dominant axis of each face's normal, laid out as 3 x 2 tiles:
    a vertex of chart (axis a, sign s) gets tile 2a + (s < 0) and, inside it, its two other coordinates mapped from
    [-1, 1] to [0.05, 0.95]. Returns the split vertices, faces and uv."""
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    axis = np.abs(n).argmax(1)
    tile = 2 * axis + (n[np.arange(len(f)), axis] < 0)
    key = f * 6 + tile[:, None]
    keys, inverse = np.unique(key.reshape(-1), return_inverse=True)
    vert, t = keys // 6, keys % 6
    a = t // 2
    others = np.stack([(a + 1) % 3, (a + 2) % 3], 1)
    local = 0.05 + 0.9 * (np.take_along_axis(v[vert], others, 1) + 1) / 2
    uv = (np.stack([t % 3, t // 3], 1) + local) / [3, 2]
    return v[vert], inverse.reshape(-1, 3), uv


def decode(uv):
    """Inverse of cube_charts' uv: (tile, the two other coordinates)."""
    cell = np.floor(uv * [3, 2]).astype(int)
    t = cell[:, 0] + 3 * cell[:, 1]
    local = uv * [3, 2] - cell
    return t, (local - 0.05) / 0.9 * 2 - 1


def test_simplify_carries_uv_and_splits_seams_again():
    v, f = sphere(4)
    sv, sf, uv = cube_charts(v, f)
    tex = torch.rand(4, 4, 3, generator=torch.Generator().manual_seed(0))
    mesh = Mesh(torch.as_tensor(sv, dtype=torch.float32), torch.as_tensor(sf),
                uv=torch.as_tensor(uv, dtype=torch.float32), texture=tex)
    out = simplify_mesh(mesh, 1000)
    assert out.faces.shape[0] <= 1000 and out.texture is tex
    assert len(np.unique(out.vertices.numpy(), axis=0)) < out.vertices.shape[0]  # seam vertices split again
    t, coords = decode(out.uv.double().numpy())
    a = t // 2
    p = out.vertices.double().numpy()
    want = np.take_along_axis(p / np.linalg.norm(p, axis=1, keepdims=True),
                              np.stack([(a + 1) % 3, (a + 2) % 3], 1), 1)
    err = np.abs(coords - want).max(1)
    # a corner's uv is its point's on its face's chart: the sphere's sag at 1000 faces (~0.005) for most; a new face
    # across a seam maps into one chart, so its corners past the seam get the seam's uv, off by up to one new edge
    # (~0.13)
    assert np.median(err) < 0.005 and np.quantile(err, 0.8) < 0.01 and err.max() < 0.2
