"""The generator's own shape noise, measured on the clip: what the temporal smoothing may remove (ours).

A keyframe follows its generated mesh, and a generator draws new noise for every frame, so the registered keyframes
tremble by that noise. How much smoothing a clip takes is a question of noise against motion, and cross-validation
on the video cannot always tell the two apart (``smoothing``). The noise itself can be measured: the generator is
asked again for a few keyframes with other noise (another seed), and the two meshes of one frame differ by the
generator's noise alone. Half their mean squared distance along the surface normal is one sample's noise variance
along the normal, in the world's units once the second mesh is aligned to the first by a similarity and both are
moved by the keyframe's found pose. Along the surface the noise moves features too, which the keyframe's fit
follows; taking the noise as the same in every direction makes the vertices' noise variance three times that
(``NoiseEstimate.vertex_variance``), which the discrepancy principle in ``smoothing.noise_weight`` uses.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from ...geometry import face_normals
from ...metrics.geometry import align_similarity, apply, sample_surface_faces
from ...types import Mesh, atomic_write_bytes

# another seed for the second sample: far from seed + index of any clip's frame, which generators draw from
_SEED_OFFSET = 1_000_003
# samples the coarse alignment (multi-start ICP) runs on; the point-to-plane refinement takes every sample
_COARSE = 500


@dataclass(frozen=True)
class NoiseEstimate:
    """frames: the keyframes generated twice; variance: one sample's noise variance along the normal (world
    units squared, mean over those frames); per_frame: each frame's."""

    frames: tuple[int, ...] = ()
    variance: float = 0.0
    per_frame: tuple[float, ...] = ()

    @property
    def vertex_variance(self) -> float:
        """A vertex's noise variance, the normal's taken for each of three directions (module docstring)."""
        return 3.0 * self.variance

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_bytes(path, json.dumps({"frames": list(self.frames), "variance": self.variance,
                                             "per_frame": list(self.per_frame)}).encode())

    @staticmethod
    def load(path: str | os.PathLike) -> "NoiseEstimate":
        d = json.loads(open(path).read())
        return NoiseEstimate(tuple(d["frames"]), float(d["variance"]), tuple(d["per_frame"]))


def reseeded(generator):
    """A shallow copy of ``generator`` that draws other noise (its ``seed`` moved), or None for a generator without
    a seed (a folder of meshes: the same mesh again, no noise to measure)."""
    if not isinstance(getattr(generator, "seed", None), int):
        return None
    other = copy.copy(generator)
    other.seed = generator.seed + _SEED_OFFSET
    return other


def _samples(mesh: Mesh, n: int, g: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n points uniformly on mesh's surface and the unit normal of the face each lies on (float64 arrays)."""
    pts, face = sample_surface_faces(mesh.vertices, mesh.faces, n, generator=g)
    normals = face_normals(mesh.vertices.detach().cpu().double(), mesh.faces.long().cpu())
    return pts.numpy(), normals[face].numpy()


def surface_noise(a: Mesh, b: Mesh, *, points: int = 2000, generator: torch.Generator) -> float:
    """Half the mean squared distance along the normal between two meshes of one shape (b already aligned to a),
    both ways: each sample of one surface against the plane of its nearest sample on the other (point-to-plane
    stays unbiased where the samples' spacing exceeds the noise, unlike point-to-point)."""
    pa, na = _samples(a, points, generator)
    pb, nb = _samples(b, points, generator)
    _, ia = cKDTree(pb).query(pa)
    _, ib = cKDTree(pa).query(pb)
    d = np.concatenate([((pa - pb[ia]) * nb[ia]).sum(-1), ((pb - pa[ib]) * na[ib]).sum(-1)])
    return float((d ** 2).mean() / 2)


def _point_to_plane(src: np.ndarray, dst: np.ndarray, normals: np.ndarray, iters: int = 15) -> np.ndarray:
    """(4, 4) similarity taking points src onto the surface sampled by dst (with its normals), refined from the
    identity by point-to-plane steps (linearised: a small rotation, scale and translation per step). A
    point-to-point fit between two sets of random samples stops at their spacing; against the tangent planes it
    goes on to the surfaces' own agreement, so what remains between them is the noise and not the alignment."""
    T = np.eye(4)
    tree = cKDTree(dst)
    for _ in range(iters):
        p = src @ T[:3, :3].T + T[:3, 3]
        _, j = tree.query(p)
        n, q = normals[j], dst[j]
        # r + J [w, ds, t] = 0 with r = (p - q).n, d(p.n)/dw = (p x n), /ds = p.n (about the origin), /dt = n
        A = np.concatenate([np.cross(p, n), (p * n).sum(-1, keepdims=True), n], 1)
        x, *_ = np.linalg.lstsq(A, -((p - q) * n).sum(-1), rcond=None)
        w, ds, t = x[:3], x[3], x[4:]
        theta = float(np.linalg.norm(w))
        K = np.array([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]])
        R = np.eye(3) + (np.sin(theta) / theta * K + (1 - np.cos(theta)) / theta ** 2 * K @ K if theta > 0 else 0)
        step = np.eye(4)
        step[:3, :3], step[:3, 3] = (1 + ds) * R, t
        T = step @ T
        if theta < 1e-7 and abs(ds) < 1e-7 and np.linalg.norm(t) < 1e-9:
            break
    return T


def generator_noise(first: list[Mesh], second: list[Mesh], world_from_canonical: Tensor, *, points: int = 2000,
                    generator: torch.Generator) -> tuple[float, ...]:
    """Each frame's noise variance along the normal (``surface_noise``, world units squared): first[k] and
    second[k] two samples of one frame in the generator's canonical frame, second aligned to first by a similarity,
    both then moved by world_from_canonical[k] (4, 4), the frame's found pose."""
    out = []
    for a, b, M in zip(first, second, world_from_canonical):
        pa, na = _samples(a, points, generator)
        pb, _ = _samples(b, points, generator)
        coarse = align_similarity(torch.as_tensor(pb[:_COARSE]).float(), torch.as_tensor(pa[:_COARSE]).float(),
                                  generator=generator).double().numpy()
        T = torch.as_tensor(_point_to_plane(pb @ coarse[:3, :3].T + coarse[:3, 3], pa, na) @ coarse).float()
        M = M.detach().cpu().float()
        aw = Mesh(apply(M, a.vertices.detach().cpu().float()), a.faces.cpu())
        bw = Mesh(apply(M @ T, b.vertices.detach().cpu().float()), b.faces.cpu())
        out.append(surface_noise(aw, bw, points=points, generator=generator))
    return tuple(out)


def spread_frames(n_keys: int, samples: int) -> list[int]:
    """Positions among n_keys keyframes of ``samples`` evenly spread ones (the first and the last among them)."""
    if samples <= 0 or n_keys == 0:
        return []
    return sorted({int(round(x)) for x in np.linspace(0, n_keys - 1, min(samples, n_keys))})


def measure_noise(generator, rgba: Tensor, key_index: Tensor, meshes: list[Mesh], world_from_canonical: Tensor, *,
                  samples: int, max_faces: int | None, rng: torch.Generator) -> NoiseEstimate:
    """The generator's noise on this clip: ``samples`` keyframes (evenly spread) generated again with other noise
    (``reseeded``) from their frames rgba (T, H, W, 4), brought to the working resolution (max_faces) as the
    keyframe meshes were, and compared with meshes (K, canonical frame, the ones registration fits) at their found
    poses world_from_canonical (K, 4, 4). No estimate (no frames) for a generator without a seed, or where a second
    sample is unusable."""
    from ...generators.base import simplify_mesh
    from ..generate import mesh_problem

    other = reseeded(generator)
    picked = spread_frames(len(meshes), samples) if other is not None else []
    kept, second = [], []
    for k in picked:
        t = int(key_index[k])
        m = other.generate(rgba[t], t)
        if mesh_problem(m) is None:
            kept.append(k)
            second.append(m if max_faces is None else simplify_mesh(m, max_faces))
    if not kept:
        return NoiseEstimate()
    per = generator_noise([meshes[k] for k in kept], second, world_from_canonical[kept], generator=rng)
    return NoiseEstimate(tuple(int(key_index[k]) for k in kept), float(np.mean(per)), per)
