"""A run folder's checkpoints: each stage's result saved under ``run_dir/checkpoints`` as it finishes, and loaded
instead of re-run when a run resumes. Every result type has ``save(path)`` and ``load(path)``; this module only
decides which."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Protocol, TypeVar

from .types import atomic_write_bytes


class Saveable(Protocol):
    def save(self, path: str | os.PathLike) -> None: ...


T = TypeVar("T", bound=Saveable)


class Checkpoints:
    """``folder`` None keeps nothing (a run without a run folder); ``resume`` loads what a previous run saved."""

    def __init__(self, folder: str | os.PathLike | None, *, resume: bool = False):
        self.folder = Path(folder) if folder is not None else None
        self.resume = resume
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path | None:
        return self.folder / name if self.folder is not None else None

    def has(self, name: str) -> bool:
        return self.resume and self.folder is not None and (self.folder / name).exists()

    def stage(self, name: str, load: Callable[[Path], T], run: Callable[[], T]) -> T:
        """The checkpoint ``name`` loaded with ``load`` when resuming and present, else ``run()`` saved there."""
        if self.has(name):
            return load(self.folder / name)
        result = run()
        self.save(name, result)
        return result

    def load(self, name: str, load: Callable[[Path], T]) -> T | None:
        """The checkpoint ``name`` loaded with ``load`` when resuming and present, else None (a stage that
        checkpoints as it goes, and continues from there)."""
        return load(self.folder / name) if self.has(name) else None

    def save(self, name: str, result: Saveable) -> None:
        if self.folder is not None:
            result.save(self.folder / name)


def write_json(path: str | os.PathLike, value, *, indent: int | None = None) -> None:
    """Atomically: a reader sees the old file or the whole new one."""
    atomic_write_bytes(path, json.dumps(jsonable(value), indent=indent).encode())


def jsonable(x):
    """Tensors to lists, NaN to null, tuples to lists, recursively."""
    import torch
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, float) and x != x:
        return None
    return x
