"""The synthetic generator reproduces a learned generator's failure modes, and records what it removed."""

import pytest
import torch

from conftest import DEMO_DIR
from v2m4.data.bench import load_item, vertex_colors
from v2m4.errors import V2M4Error
from v2m4.generators.mesh_folder import MeshFolderGenerator
from v2m4.generators.synthetic import SyntheticConfig, SyntheticGenerator
from v2m4.io.mesh import save_mesh
from v2m4.metrics.geometry import apply, chamfer_l2, sample_surface


@pytest.fixture(scope="module")
def item():
    return load_item("demo", bench_dir=DEMO_DIR, frames=[0, 6, 12, 18])


def test_exact_transform_without_remesh_or_noise(item):
    g = SyntheticGenerator(item, seed=3, config=SyntheticConfig(remesh=False, noise_amplitude=0, color_jitter=0))
    for t in range(4):
        m = g.generate(None, t)
        back = apply(torch.linalg.inv(g.removed_transform(t)), m.vertices)
        gt = item.gt_vertices[t]
        diag = (gt.max(0).values - gt.min(0).values).norm()
        assert (back - gt).norm(dim=-1).max() / diag < 1e-4
        # canonical placement: centred, largest side 1
        lo, hi = m.vertices.min(0).values, m.vertices.max(0).values
        torch.testing.assert_close((hi - lo).max(), torch.tensor(1.0), atol=1e-5, rtol=0)
        torch.testing.assert_close((hi + lo) / 2, torch.zeros(3), atol=1e-5, rtol=0)


def test_remeshing_changes_topology_and_stays_close(item):
    g = SyntheticGenerator(item, seed=0)
    meshes = [g.generate(None, t) for t in range(4)]
    counts = {(m.vertices.shape[0], m.faces.shape[0]) for m in meshes}
    assert len(counts) == 4  # every frame has its own vertex and face count
    gen = torch.Generator().manual_seed(0)
    for t, m in enumerate(meshes):
        gt_canon = apply(g.removed_transform(t), item.gt_vertices[t])
        a = sample_surface(m.vertices, m.faces, 3000, generator=gen)
        b = sample_surface(gt_canon, item.faces, 3000, generator=gen)
        # remeshing at ~3000 faces of a unit-size object plus 1% noise: well under 1% of the size squared
        assert chamfer_l2(a, b) < 1e-3


def test_appearance_comes_from_the_materials(item):
    g = SyntheticGenerator(item, seed=0, config=SyntheticConfig(color_jitter=0))
    m = g.generate(None, 0)
    torch.testing.assert_close(m.vertex_colors.mean(0), vertex_colors(item).mean(0), atol=0.08, rtol=0)


def test_colourless_meshes_have_the_coloured_geometry(item):
    a = SyntheticGenerator(item, seed=1).generate(None, 2)
    b = SyntheticGenerator(item, seed=1, config=SyntheticConfig(colours=False)).generate(None, 2)
    assert a.vertex_colors is not None and b.vertex_colors is None and b.texture is None
    assert torch.equal(a.vertices, b.vertices) and torch.equal(a.faces, b.faces)


def test_deterministic_per_seed_and_frame(item):
    a = SyntheticGenerator(item, seed=1).generate(None, 2)
    b = SyntheticGenerator(item, seed=1).generate(None, 2)
    assert torch.equal(a.vertices, b.vertices) and torch.equal(a.faces, b.faces)


def test_same_source_frame_same_mesh_whatever_the_selection(item):
    # a bench method on selected frames and `v2m4 run` on all of them must see the same generated meshes
    everyone = load_item("demo", bench_dir=DEMO_DIR)
    a = SyntheticGenerator(item, seed=0).generate(None, 2)  # source frame 12
    b = SyntheticGenerator(everyone, seed=0).generate(None, 12)
    assert torch.equal(a.vertices, b.vertices) and torch.equal(a.faces, b.faces)
    assert torch.equal(a.vertex_colors, b.vertex_colors)
    c = SyntheticGenerator(everyone, seed=0).generate(None, 2)
    assert not torch.equal(c.vertices[:10], b.vertices[:10]) or c.vertices.shape != b.vertices.shape


def test_mesh_folder_generator(tmp_path, item):
    g = SyntheticGenerator(item, seed=0)
    for t in range(4):
        save_mesh(g.generate(None, t), tmp_path / f"frame_{t}.ply")
    folder = MeshFolderGenerator(tmp_path, 4)
    m = folder.generate(None, 2)
    assert m.faces.shape == g.generate(None, 2).faces.shape
    with pytest.raises(V2M4Error, match="has 4 meshes but the video has 5 frames"):
        MeshFolderGenerator(tmp_path, 5)


def test_bench_generator_noise_setting_reaches_the_meshes(item):
    from v2m4.bench import BenchSettings, synthetic_generator

    def error(noise):
        g = synthetic_generator(item, BenchSettings(generator_noise=noise))
        m = g.generate(None, 1)
        gen = torch.Generator().manual_seed(0)
        gt = apply(g.removed_transform(1), item.gt_vertices[1])
        return chamfer_l2(sample_surface(m.vertices, m.faces, 3000, generator=gen),
                          sample_surface(gt, item.faces, 3000, generator=gen))

    assert synthetic_generator(item, BenchSettings()).cfg.noise_amplitude == SyntheticConfig().noise_amplitude
    assert error(0.05) > 4 * error(0.0)
