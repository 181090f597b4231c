import numpy as np
import pytest
import torch
import trimesh

from v2m4.geometry import face_areas
from v2m4.stages.remesh import drop_small_components, remesh_isotropic
from v2m4.types import Mesh


def _sphere_and_specks():
    big = trimesh.creation.icosphere(subdivisions=2)
    V, F = [big.vertices], [big.faces]
    n = len(big.vertices)
    # a closed tetrahedron whose four corners sit on one point (what the remesher leaves of a part it cannot tile)
    V.append(np.full((4, 3), [1.5, 0.0, 0.0]) + np.array([[0, 0, 0], [1e-9, 0, 0], [0, 1e-9, 0], [0, 0, 1e-9]]))
    F.append(n + np.array([[0, 2, 1], [0, 1, 3], [1, 2, 3], [0, 3, 2]]))
    small = trimesh.creation.icosphere(subdivisions=1, radius=0.01)
    V.append(small.vertices + [0.0, 1.5, 0.0])
    F.append(n + 4 + small.faces)
    return np.concatenate(V), np.concatenate(F), big


def test_small_components_are_dropped_and_the_rest_kept_in_order():
    V, F, big = _sphere_and_specks()
    V2, F2 = drop_small_components(V, F, min_area=1e-2)
    assert np.array_equal(V2, big.vertices) and np.array_equal(F2, big.faces)
    V3, F3 = drop_small_components(V, F, min_area=1e-12)  # the small sphere is larger than this: kept
    assert len(F3) == len(F) - 4 and len(V3) == len(V) - 4
    V4, F4 = drop_small_components(V[:len(big.vertices)] * 1e-3, big.faces, min_area=1.0)  # never the whole mesh
    assert len(F4) == len(big.faces)


def test_remesh_leaves_no_speck_of_a_part_smaller_than_its_triangles():
    pytest.importorskip("gpytoolbox")
    V, F, _ = _sphere_and_specks()
    r = remesh_isotropic(Mesh(torch.tensor(V, dtype=torch.float32), torch.tensor(F)))
    tm = trimesh.Trimesh(r.vertices.numpy(), r.faces.numpy(), process=False)
    assert len(trimesh.graph.connected_components(tm.face_adjacency, nodes=np.arange(len(tm.faces)))) == 1
    assert float(face_areas(r.vertices.double(), r.faces).min()) > 1e-6
    assert float((r.vertices.norm(dim=-1) - 1).abs().max()) < 0.05
