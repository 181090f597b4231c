"""The whole-clip fit's saved progress: a digest of its inputs and an atomic save (``joint.register_clip``'s
``state``)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import Tensor

from ...types import Mesh


def digest(meshes: list[Mesh], *tensors: Tensor) -> str:
    """A digest of the fit's inputs (bytes, shapes and types), so a state saved for other inputs of the same size
    (a camera stage re-run under another config, say) is not continued."""
    h = hashlib.sha256()
    for t in [x for m in meshes for x in (m.vertices, m.faces)] + list(tensors):
        t = t.detach().contiguous().cpu()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def save_state(path: Path, value: dict) -> None:
    """Atomically (a run killed while writing leaves the previous state): written beside, then renamed."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(value, tmp)
    os.replace(tmp, path)
