"""The generator's noise measured on the clip (``registration.noise``)."""

import math

import pytest
import torch
import trimesh

from v2m4.generators.synthetic import SyntheticConfig, SyntheticGenerator
from v2m4.stages.registration.noise import (NoiseEstimate, generator_noise, measure_noise, reseeded, spread_frames,
                                            surface_noise)
from v2m4.types import Mesh


def sphere(radius: float = 0.5, subdivisions: int = 4) -> Mesh:
    tm = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return Mesh(torch.tensor(tm.vertices, dtype=torch.float32), torch.tensor(tm.faces, dtype=torch.int64))


def g() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_surface_noise_is_half_the_squared_normal_distance():
    """Two spheres 0.01 apart along every normal (their facets parallel), sampled at random: the point-to-plane
    distance finds the 0.01 (0.01^2 / 2 per sample), where the samples' own spacing (about 0.02) swamps
    point-to-point."""
    a, b = sphere(0.5), sphere(0.51)
    assert surface_noise(a, b, generator=g()) == pytest.approx(0.01 ** 2 / 2, rel=0.1)
    # the same surface: what is left is the samples' curvature against their neighbours' planes (under 1% here)
    assert surface_noise(a, a, generator=g()) < 0.01 * 0.01 ** 2 / 2


def test_a_pose_scales_the_noise_and_a_similarity_between_samples_is_not_noise():
    """generator_noise aligns the second sample to the first: a second sample turned, moved and scaled is the same
    shape (no noise); both moved by a found pose of scale 2 quadruple the variance."""
    a = sphere()
    wobble = a.with_vertices(a.vertices * (1 + 0.02 * torch.sin(6 * a.vertices[:, :1])))
    c, s = math.cos(0.4), math.sin(0.4)
    M = torch.tensor([[c, 0, s, 0.1], [0, 1, 0, -0.2], [-s, 0, c, 0.05], [0, 0, 0, 1.0]])
    turned = wobble.with_vertices(1.3 * wobble.vertices @ M[:3, :3].T + M[:3, 3])
    pose = torch.eye(4)
    base = generator_noise([a], [wobble], pose[None], generator=g())[0]
    assert generator_noise([wobble], [turned], pose[None], generator=g())[0] < 0.1 * base
    pose2 = torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0]))
    assert base > 5e-6 and generator_noise([a], [wobble], pose2[None], generator=g())[0] == pytest.approx(4 * base,
                                                                                                         rel=0.2)


def gt_clip(T: int = 5):
    m = sphere(0.5, 3)
    return m.vertices[None].expand(T, -1, -1).clone(), m.faces


def test_the_noise_of_a_synthetic_generator_grows_with_its_amplitude():
    """measure_noise draws first, middle and last keyframes again with another seed; a generator with twice the
    shape noise measures about four times the variance (its decimation adds a little to both)."""
    v, f = gt_clip()
    key = torch.tensor([0, 2, 4])
    rgba = torch.zeros(5, 8, 8, 4)
    est = {}
    for amp in (0.01, 0.02):
        gen = SyntheticGenerator(v, f, seed=0, config=SyntheticConfig(noise_amplitude=amp, colours=False))
        first = [gen.generate(rgba[t], t) for t in key.tolist()]
        est[amp] = measure_noise(gen, rgba, key, first, torch.eye(4).expand(3, 4, 4), samples=3, max_faces=None,
                                 rng=g())
        assert est[amp].frames == (0, 2, 4) and len(est[amp].per_frame) == 3
    assert 2.5 < est[0.02].variance / est[0.01].variance < 5.0, est
    assert est[0.01].vertex_variance == 3 * est[0.01].variance


def test_a_generator_without_a_seed_is_not_measured(tmp_path):
    class Folder:  # the same mesh again for any call: nothing to measure
        name, fov_deg = "folder", 40.0

        def generate(self, image, index):
            return sphere()

    assert reseeded(Folder()) is None
    est = measure_noise(Folder(), torch.zeros(3, 8, 8, 4), torch.tensor([0, 1, 2]), [sphere()] * 3,
                        torch.eye(4).expand(3, 4, 4), samples=3, max_faces=None, rng=g())
    assert est == NoiseEstimate()
    gen = SyntheticGenerator(*gt_clip(), seed=4)
    other = reseeded(gen)
    assert other.seed != gen.seed and gen.seed == 4  # the original keeps its seed
    est.save(tmp_path / "n.json")
    assert NoiseEstimate.load(tmp_path / "n.json") == est


def test_spread_frames():
    assert spread_frames(12, 3) == [0, 6, 11] and spread_frames(2, 3) == [0, 1] and spread_frames(5, 0) == []
