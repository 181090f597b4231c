"""The generator interface (Sec. 3): one frame image in, one mesh in the generator's canonical frame out.

A generator returns meshes centred, inside [-0.5, 0.5]^3, +Y up, with vertex colours (or uv + texture). It may
lose the object's position and orientation in the video; the camera search (Sec. 4.1) recovers them.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

from ..types import Mesh


@runtime_checkable
class Generator(Protocol):
    name: str

    def generate(self, image: Tensor, index: int) -> Mesh:
        """image (H, W, 4) RGBA in [0, 1] (straight alpha), index: the frame's index -> Mesh (canonical frame)."""
        ...


def canonicalise(mesh: Mesh) -> Mesh:
    """Centre a mesh on its bounding box and scale its largest side to 1, as native 3D generators do."""
    v = mesh.vertices
    lo, hi = v.min(0).values, v.max(0).values
    s = 1.0 / float((hi - lo).max().clamp_min(1e-12))
    return mesh.with_vertices((v - (lo + hi) / 2) * s)
