"""A stand-in for a native 3D generator (TRELLIS) built from a ground-truth animated mesh, for tests and benchmarks.

It reproduces the failure modes the paper lists (Sec. 1, 4.1, 4.3, Fig. 2), each with a knob and a seed:
- **independent re-meshing every frame**: the ground truth is subdivided (carrying its colours) to at least three
  times the target face count, welded, and decimated by quadric edge collapse (fast-simplification) to the target
  (``target_faces``, the density of the generated meshes) jittered per frame, so vertex count and connectivity
  change from frame to frame;
- **canonical placement**: the object's per-frame rigid motion in the video is removed. Its rotation R_t is the
  Kabsch fit of frame t's ground-truth vertices to frame 0's (the topology of the ground truth is constant);
  canonical = s_t * F_t * R_t^T (x - c_t), centred on the bounding box and scaled into [-0.5, 0.5]^3, so the
  canonical orientation is the object's frame-0 orientation in glTF world axes (+Y up, as generators output);
  F_t is, with probability ``flip_prob``, a wrong quarter or half turn about +Y;
- **low-frequency geometric noise**: a smooth random displacement field (a few random sinusoids);
- **colour perturbation**: per-frame brightness and per-channel offsets.
The similarity removed at frame t, ``removed_transform(t)`` (canonical_from_world), is recorded for scoring and
never handed to the pipeline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from ..camera import DEFAULT_FOV_DEG
from ..errors import V2M4Error
from ..types import Mesh


@dataclass(frozen=True)
class SyntheticConfig:
    remesh: bool = True
    target_faces: int = 3000          # faces of each generated mesh, above or below the ground truth's (a TRELLIS
                                      # mesh has 1e4-1e5 faces; fewer keep the CPU stages fast)
    target_jitter: float = 0.2        # relative jitter of the target face count per frame
    flip_prob: float = 0.1            # chance of a wrong 90/180/270 degree turn about +Y per frame
    noise_amplitude: float = 0.01     # displacement amplitude, in canonical units (the object spans 1)
    noise_frequency: float = 1.5      # cycles per canonical unit of the displacement field
    color_jitter: float = 0.05        # std of the per-frame brightness factor and per-channel offsets
    colours: bool = True              # False: meshes without colour, as a shape-only generator gives (Hunyuan3D-2's
                                      # shape stage); the geometry is the coloured run's, draw for draw


def _item_colors(item):
    """(V, 3) colours of a duck-typed item: its ``vertex_colors``, else (a bench item) its materials baked."""
    colors = getattr(item, "vertex_colors", None)
    if colors is not None and not callable(colors):
        return colors
    if hasattr(item, "materials"):
        from ..data.bench import vertex_colors  # bench items carry uv + materials, not colours

        return vertex_colors(item)
    return None


def _kabsch(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Rotation R minimising |R (src - mean) - (dst - mean)|."""
    a = src - src.mean(0)
    b = dst - dst.mean(0)
    U, _, Vt = np.linalg.svd(b.T @ a)
    D = np.diag([1, 1, np.sign(np.linalg.det(U @ Vt))])
    return U @ D @ Vt


def _rot_y(quarters: int) -> np.ndarray:
    a = quarters * math.pi / 2
    c, s = round(math.cos(a)), round(math.sin(a))
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=np.float64)


class SyntheticGenerator:
    """Per-frame generated meshes from a ground truth. ``generate(image, t)`` ignores the image.

    ``SyntheticGenerator(gt_vertices (T, V, 3), faces (F, 3), vertex_colors (V, 3) in [0, 1] or None, seed=...)``,
    or ``SyntheticGenerator(item, seed=...)`` with any object that has ``gt_vertices`` and ``faces`` (a bench item;
    see ``from_item``). ``frame_indices`` (T,): the source frame of each of the T frames, which keys the random draws
    (default 0..T-1).
    """

    name = "synthetic"
    fov_deg = DEFAULT_FOV_DEG  # it renders nothing; the TRELLIS value the camera search assumes

    def __init__(self, gt_vertices, faces=None, vertex_colors=None, *, seed: int = 0,
                 config: SyntheticConfig = SyntheticConfig(), frame_indices=None):
        self.item = None
        if faces is None and hasattr(gt_vertices, "gt_vertices"):  # SyntheticGenerator(item, ...)
            self.item = item = gt_vertices
            gt_vertices, faces, vertex_colors = item.gt_vertices, item.faces, _item_colors(item)
            frame_indices = getattr(item, "frame_indices", None) if frame_indices is None else frame_indices
        gt = torch.as_tensor(gt_vertices).double().numpy()
        if gt.ndim != 3 or gt.shape[-1] != 3 or faces is None:
            raise V2M4Error(f"the synthetic generator needs gt_vertices (T, V, 3) and faces (F, 3), got "
                            f"{tuple(gt.shape)} and {None if faces is None else tuple(np.shape(faces))}")
        self.gt_vertices = gt
        self.faces = torch.as_tensor(faces).numpy().astype(np.int64)
        self._colors = None if vertex_colors is None else torch.as_tensor(vertex_colors).numpy().astype(np.float64)
        self.frame_indices = list(range(gt.shape[0])) if frame_indices is None else [int(i) for i in frame_indices]
        self.seed = seed
        self.cfg = config
        self._transforms = []
        for t in range(gt.shape[0]):
            R = _kabsch(gt[t], gt[0])  # maps frame t's orientation back onto frame 0's
            rng = self._rng(t, "flip")
            q = int(rng.integers(1, 4)) if rng.random() < config.flip_prob else 0
            rot = _rot_y(q) @ R
            x = gt[t] @ rot.T
            lo, hi = x.min(0), x.max(0)
            s = 1.0 / max(float((hi - lo).max()), 1e-12)
            M = np.eye(4)
            M[:3, :3] = s * rot
            M[:3, 3] = -s * (lo + hi) / 2
            self._transforms.append(M)

    @classmethod
    def from_item(cls, item, *, seed: int = 0, config: SyntheticConfig = SyntheticConfig()) -> "SyntheticGenerator":
        """From any object with ``gt_vertices`` (T, V, 3), ``faces`` (F, 3), and ``vertex_colors`` (V, 3) or a bench
        item's materials; ``frame_indices`` when it has them."""
        return cls(item, seed=seed, config=config)

    def _rng(self, t: int, what: str) -> np.random.Generator:
        # keyed on the source frame (the item's frame_indices), not the position in the selection: a bench method
        # run on 8 selected frames and `v2m4 run` on all 25 (which generates those 8 keyframes) then see the same
        # meshes, so their tables compare
        return np.random.default_rng([self.seed, self.frame_indices[t], sum(map(ord, what))])

    def removed_transform(self, t: int) -> Tensor:
        """(4, 4) float32 similarity canonical_from_world applied to frame t (for scoring only)."""
        return torch.as_tensor(self._transforms[t], dtype=torch.float32)

    def generate(self, image: Tensor | None, t: int) -> Mesh:
        """The generated mesh of frame t in the canonical frame, with vertex colours (when the ground truth has
        them)."""
        if not 0 <= t < len(self._transforms):
            raise V2M4Error(f"frame {t} out of range: the synthetic generator has {len(self._transforms)} frames")
        cfg = self.cfg
        verts = self.gt_vertices[t]
        faces = self.faces
        colors = self._colors if self._colors is not None else np.zeros((verts.shape[0], 0))
        M = self._transforms[t]
        verts = verts @ M[:3, :3].T + M[:3, 3]
        if cfg.remesh:
            verts, faces, colors = self._remesh(verts, faces, colors, t)
        if cfg.noise_amplitude > 0:
            verts = verts + self.shape_noise(verts, t)
        if cfg.color_jitter > 0 and self._colors is not None:
            rng = self._rng(t, "color")
            colors = colors * (1 + cfg.color_jitter * rng.standard_normal()) + cfg.color_jitter * rng.standard_normal(3)
        return Mesh(torch.as_tensor(verts, dtype=torch.float32), torch.as_tensor(faces, dtype=torch.int64),
                    vertex_colors=None if self._colors is None or not cfg.colours else
                    torch.as_tensor(np.clip(colors, 0, 1), dtype=torch.float32))

    def _remesh(self, verts, faces, colors, t):
        import fast_simplification
        import trimesh

        rng = self._rng(t, "remesh")
        target = int(self.cfg.target_faces * (1 + self.cfg.target_jitter * rng.uniform(-1, 1)))
        # subdivide (carrying colours) until there is plenty to collapse, so the decimation decides the topology
        attrs = np.concatenate([verts, colors], 1)
        while faces.shape[0] < 3 * target:
            attrs, faces = trimesh.remesh.subdivide(attrs, faces)
        dense_v, dense_c = attrs[:, :3], attrs[:, 3:]
        # weld the ground truth's seam splits so the decimation sees one surface
        mesh = trimesh.Trimesh(dense_v, faces, process=False)
        mesh.merge_vertices(merge_tex=True, merge_norm=True)
        # a small per-frame random perturbation before decimation: a generator's vertices never land twice alike
        jitter = rng.normal(scale=1e-4, size=mesh.vertices.shape)
        v, f = fast_simplification.simplify(np.asarray(mesh.vertices) + jitter, np.asarray(mesh.faces),
                                            target_count=target)
        _, j = cKDTree(dense_v).query(v)
        return v, f.astype(np.int64), dense_c[j]

    def shape_noise(self, verts: np.ndarray, t: int) -> np.ndarray:
        """(V, 3) the low-frequency displacement ``generate`` adds to frame t's canonical vertices verts (V, 3), a
        smooth field of position drawn anew for each frame (for scoring: what the shape noise alone does to a
        sequence)."""
        rng = self._rng(t, "noise")
        k = 4
        w = rng.standard_normal((k, 3)) * 2 * math.pi * self.cfg.noise_frequency
        phase = rng.uniform(0, 2 * math.pi, k)
        amp = rng.standard_normal((k, 3)) / math.sqrt(k)
        return self.cfg.noise_amplitude * np.sin(verts @ w.T + phase) @ amp
