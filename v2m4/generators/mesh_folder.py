"""Generator over a folder of per-frame meshes made by any tool (one file per frame, natural sort order)."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from ..camera import DEFAULT_FOV_DEG
from ..errors import V2M4Error
from ..io.mesh import MESH_SUFFIXES, load_mesh
from ..io.naming import natural_key
from ..types import Mesh
from .base import canonicalise


class MeshFolderGenerator:
    """``generate(image, t)`` returns the t-th mesh of the folder, canonicalised unless ``canonical=False``."""

    name = "meshes"
    fov_deg = DEFAULT_FOV_DEG  # unknown for meshes made elsewhere; TRELLIS's, the most common source

    def __init__(self, folder: str | Path, n_frames: int, *, canonical: bool = True):
        folder = Path(folder)
        if not folder.is_dir():
            raise V2M4Error(f"mesh folder {folder} does not exist")
        self.files = sorted((p for p in folder.iterdir() if p.suffix.lower() in MESH_SUFFIXES),
                            key=lambda p: natural_key(p.name))
        if not self.files:
            raise V2M4Error(f"mesh folder {folder} has no meshes ({', '.join(sorted(MESH_SUFFIXES))})")
        if len(self.files) != n_frames:
            raise V2M4Error(f"mesh folder {folder} has {len(self.files)} meshes but the video has {n_frames} "
                            f"frames; give one mesh per frame")
        self.canonical = canonical

    def generate(self, image: Tensor | None, index: int) -> Mesh:
        mesh = load_mesh(self.files[index])
        return canonicalise(mesh) if self.canonical else mesh
