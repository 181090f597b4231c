"""The artifacts the stages hand each other (architecture.md, floor 1).

Plain dataclasses over torch tensors. Shapes are batch first and use the same letters everywhere:
T frames, K keyframes, V vertices, F faces, H x W pixels. Every artifact can ``save(path)`` and ``load(path)``
(one ``.npz`` file), so a run resumes and each stage can be tested alone.

World convention (stated once, here and in camera.py): glTF's, +Y up, right-handed, metres or whatever unit the
source uses. Colours are display (sRGB-encoded) values in [0, 1]; nothing in the pipeline works in linear light.
UV convention: glTF's, (0, 0) is the top-left texel of the texture image and v grows downward.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .errors import V2M4Error


def _to_numpy(value):
    if isinstance(value, Tensor):
        return value.detach().cpu().numpy()
    return value


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes through a temporary file and a rename (a crash never leaves a half-written file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_save_npz(path: str | os.PathLike, **arrays) -> None:
    """Write an ``.npz`` through a temporary file and a rename, so a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp.npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez(tmp, **{k: _to_numpy(v) for k, v in arrays.items() if v is not None})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise V2M4Error(f"{path} does not exist; expected a file saved by v2m4")
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _tensor(array, dtype) -> Tensor | None:
    if array is None:
        return None
    return torch.as_tensor(np.asarray(array)).to(dtype)


@dataclass(frozen=True)
class Mesh:
    """A triangle mesh with optional appearance.

    vertices (V, 3) float32; faces (F, 3) int64, counter-clockwise seen from outside;
    uv (V, 2) float32 in glTF convention; texture (Ht, Wt, 3) float32 in [0, 1];
    vertex_colors (V, 3) float32 in [0, 1]. A mesh carries either a texture with uv, vertex colours, or neither.
    """

    vertices: Tensor
    faces: Tensor
    uv: Tensor | None = None
    texture: Tensor | None = None
    vertex_colors: Tensor | None = None

    def __post_init__(self):
        v, f = self.vertices, self.faces
        if v.ndim != 2 or v.shape[-1] != 3:
            raise V2M4Error(f"mesh vertices must have shape (V, 3), got {tuple(v.shape)}")
        if f.ndim != 2 or f.shape[-1] != 3:
            raise V2M4Error(f"mesh faces must have shape (F, 3), got {tuple(f.shape)}")
        for name in ("uv", "vertex_colors"):
            a = getattr(self, name)
            if a is not None and a.shape[0] != v.shape[0]:
                raise V2M4Error(f"mesh {name} has {a.shape[0]} rows but the mesh has {v.shape[0]} vertices")
        if self.texture is not None and self.uv is None:
            raise V2M4Error("a mesh with a texture needs uv coordinates")

    @property
    def device(self) -> torch.device:
        return self.vertices.device

    def to(self, device) -> "Mesh":
        return Mesh(**{f.name: (getattr(self, f.name).to(device) if getattr(self, f.name) is not None else None)
                       for f in fields(self)})

    def with_vertices(self, vertices: Tensor) -> "Mesh":
        """The same mesh (topology, uv, texture, colours) with new vertex positions (V, 3)."""
        return replace(self, vertices=vertices)

    def bbox_diagonal(self) -> float:
        v = self.vertices.detach()
        return float((v.max(0).values - v.min(0).values).norm())

    def save(self, path: str | os.PathLike) -> None:
        atomic_save_npz(path, vertices=self.vertices, faces=self.faces, uv=self.uv, texture=self.texture,
                        vertex_colors=self.vertex_colors)

    @staticmethod
    def load(path: str | os.PathLike) -> "Mesh":
        return Mesh.from_arrays(load_npz(path))

    @staticmethod
    def from_arrays(d: dict, prefix: str = "") -> "Mesh":
        g = lambda k: d.get(prefix + k)  # noqa: E731
        return Mesh(vertices=_tensor(g("vertices"), torch.float32), faces=_tensor(g("faces"), torch.int64),
                    uv=_tensor(g("uv"), torch.float32), texture=_tensor(g("texture"), torch.float32),
                    vertex_colors=_tensor(g("vertex_colors"), torch.float32))

    def arrays(self, prefix: str = "") -> dict:
        return {prefix + f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Frames:
    """A clip of RGBA frames from one fixed camera.

    rgba (T, H, W, 4) float32 in [0, 1], straight (not premultiplied) alpha; alpha is the object mask.
    fps: frames per second of the source. source: where the frames came from (for reports).
    timestamps (T,) seconds from the source's first frame, for frames picked out of a clip at uneven steps (the
    benchmark's evenly spread keyframes); None: consecutive frames at ``fps``.
    """

    rgba: Tensor
    fps: float
    source: str = ""
    timestamps: Tensor | None = None

    def __post_init__(self):
        if self.rgba.ndim != 4 or self.rgba.shape[-1] != 4:
            raise V2M4Error(f"frames must have shape (T, H, W, 4), got {tuple(self.rgba.shape)}")
        if not self.fps > 0:
            raise V2M4Error(f"frames need a positive fps, got {self.fps}")
        if self.timestamps is not None and tuple(self.timestamps.shape) != (len(self),):
            raise V2M4Error(f"frames have {len(self)} images but timestamps of shape {tuple(self.timestamps.shape)}")

    def __len__(self) -> int:
        return self.rgba.shape[0]

    @property
    def rgb(self) -> Tensor:
        """(T, H, W, 3)"""
        return self.rgba[..., :3]

    @property
    def mask(self) -> Tensor:
        """(T, H, W) alpha in [0, 1]"""
        return self.rgba[..., 3]

    @property
    def resolution(self) -> tuple[int, int]:
        """(H, W)"""
        return int(self.rgba.shape[1]), int(self.rgba.shape[2])

    @property
    def times(self) -> Tensor:
        """(T,) seconds from the first frame."""
        t = self._seconds()
        return (t - t[0]).float() if len(t) else t.float()

    def _seconds(self) -> Tensor:
        """(T,) float64 seconds from the source's first frame."""
        if self.timestamps is not None:
            return self.timestamps
        return torch.arange(len(self), dtype=torch.float64) / self.fps

    def select(self, index) -> "Frames":
        """The frames at ``index``, each keeping its time."""
        return Frames(rgba=self.rgba[index], fps=self.fps, source=self.source, timestamps=self._seconds()[index])

    def save(self, path: str | os.PathLike) -> None:
        # uint8 keeps a checkpoint of a 48-frame 512^2 clip at 50 MB instead of 200 MB; frames come from 8-bit files
        rgba8 = (self.rgba.clamp(0, 1) * 255).round().to(torch.uint8)
        extra = {} if self.timestamps is None else {"timestamps": self.timestamps.double().cpu().numpy()}
        atomic_save_npz(path, rgba8=rgba8, fps=np.float64(self.fps), source=np.str_(self.source), **extra)

    @staticmethod
    def load(path: str | os.PathLike) -> "Frames":
        d = load_npz(path)
        ts = torch.as_tensor(d["timestamps"]) if "timestamps" in d else None
        return Frames(rgba=torch.as_tensor(d["rgba8"]).float() / 255, fps=float(d["fps"]), source=str(d["source"]),
                      timestamps=ts)


@dataclass(frozen=True)
class Sequence:
    """One mesh over time; topology never changes (Sec. 4.3).

    rest: the rest mesh (first keyframe), its faces shared by every keyframe.
    vertices (K, V, 3) keyframe positions in the world frame. times (K,) seconds from the first frame.
    """

    rest: Mesh
    vertices: Tensor
    times: Tensor

    def __post_init__(self):
        k, v = self.vertices.shape[0], self.rest.vertices.shape[0]
        if self.vertices.ndim != 3 or self.vertices.shape[1:] != (v, 3):
            raise V2M4Error(f"sequence vertices must have shape (K, {v}, 3), got {tuple(self.vertices.shape)}")
        if self.times.shape != (k,):
            raise V2M4Error(f"sequence times must have shape ({k},), got {tuple(self.times.shape)}")

    def __len__(self) -> int:
        return self.vertices.shape[0]

    def mesh(self, k: int) -> Mesh:
        """Keyframe k as a Mesh with the rest mesh's topology and appearance."""
        return self.rest.with_vertices(self.vertices[k])

    def save(self, path: str | os.PathLike) -> None:
        atomic_save_npz(path, **self.rest.arrays("rest_"), seq_vertices=self.vertices, times=self.times)

    @staticmethod
    def load(path: str | os.PathLike) -> "Sequence":
        d = load_npz(path)
        return Sequence(rest=Mesh.from_arrays(d, "rest_"), vertices=_tensor(d["seq_vertices"], torch.float32),
                        times=_tensor(d["times"], torch.float32))


@dataclass(frozen=True)
class Animation:
    """The product: one textured mesh and its vertex positions at every output frame (Sec. 4.5).

    mesh: rest mesh with uv + texture (or vertex colours). vertices (T, V, 3) per output frame.
    times (T,) seconds. keyframes (K,) int64 indices into T of the reconstructed (not interpolated) frames.
    """

    mesh: Mesh
    vertices: Tensor
    times: Tensor
    keyframes: Tensor

    def __post_init__(self):
        t, v = self.vertices.shape[0], self.mesh.vertices.shape[0]
        if self.vertices.ndim != 3 or self.vertices.shape[1:] != (v, 3):
            raise V2M4Error(f"animation vertices must have shape (T, {v}, 3), got {tuple(self.vertices.shape)}")
        if self.times.shape != (t,):
            raise V2M4Error(f"animation times must have shape ({t},), got {tuple(self.times.shape)}")

    def __len__(self) -> int:
        return self.vertices.shape[0]

    def frame(self, t: int) -> Mesh:
        return self.mesh.with_vertices(self.vertices[t])

    def save(self, path: str | os.PathLike) -> None:
        atomic_save_npz(path, **self.mesh.arrays("mesh_"), anim_vertices=self.vertices, times=self.times,
                        keyframes=self.keyframes)

    @staticmethod
    def load(path: str | os.PathLike) -> "Animation":
        d = load_npz(path)
        return Animation(mesh=Mesh.from_arrays(d, "mesh_"), vertices=_tensor(d["anim_vertices"], torch.float32),
                         times=_tensor(d["times"], torch.float32), keyframes=_tensor(d["keyframes"], torch.int64))
