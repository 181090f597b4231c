"""Per-keyframe generation (Sec. 3) and the appearance refinement hook (Sec. 4.2).

Each keyframe's image goes through the generator once; a mesh that is empty, degenerate or non-finite (or a
generator error on one frame) drops that keyframe, which is then interpolated from its neighbours. Both loops
checkpoint every frame, so a resumed run continues with the next one.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from ..camera import Camera
from ..errors import V2M4Error
from ..types import Frames, Mesh, atomic_write_bytes


@dataclass(frozen=True)
class GenerationConfig:
    max_faces: int | None = 4000     # the working resolution: each generated mesh is simplified to at most this many
                                     # faces before the camera search; just above the 2.4k-3.6k faces every tuned
                                     # number of the camera search and registration was measured at (tuned: see
                                     # docs/calibration.md); None keeps the generator's own
    refine_appearance: bool = True   # Sec. 4.2: regenerate each keyframe with its appearance optimised against the
                                     # frame (generators with a ``refine`` hook)
    batch_size: int = 1              # keyframes per call for generators with ``generate_batch``; 1 calls
                                     # ``generate``. Measured with full-size models: one keyframe already fills an
                                     # H100/H200, so batching gains little (Hunyuan3D-2 1.13x at 4, TRELLIS
                                     # 0.91-0.98x); see bench/results/hunyuan_speed.md and trellis_batch.json


@dataclass(frozen=True)
class GenerationResult:
    """keyframes (K,) int64: the keyframes whose mesh is usable; meshes: one per keyframe, in the generator's
    canonical frame, at the working resolution; generated_faces: each one's face count as generated; warnings:
    one line per dropped keyframe."""

    keyframes: Tensor
    meshes: tuple[Mesh, ...]
    generated_faces: tuple[int, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def has_appearance(self) -> bool:
        """Whether any mesh came with vertex colours or a texture."""
        return any(m.vertex_colors is not None or m.texture is not None for m in self.meshes)


def checkpoint_name(index: int) -> str:
    """Where frame ``index``'s generated mesh is checkpointed."""
    return f"gen_{index:05d}.npz"


def mesh_problem(mesh: Mesh) -> str | None:
    """Why a generated mesh cannot be used, or None."""
    if mesh.faces.numel() == 0 or mesh.vertices.shape[0] < 3:
        return "it has no faces"
    if not bool(torch.isfinite(mesh.vertices).all()):
        return "it has non-finite vertices"
    if float((mesh.vertices.amax(0) - mesh.vertices.amin(0)).norm()) <= 0:
        return "it is degenerate (all vertices coincide)"
    return None


def _empty() -> Mesh:
    return Mesh(torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.int64))


def generate_keyframes(frames: Frames, keyframes: Tensor, generator, cfg: GenerationConfig = GenerationConfig(), *,
                       store=None, bar=None) -> GenerationResult:
    """One mesh per keyframe from ``generator.generate(rgba (H, W, 4), index)`` (or, with ``cfg.batch_size`` > 1,
    ``generator.generate_batch(rgbas, indices)`` where it has one), then simplified to the working resolution;
    ``store`` (a ``Checkpoints``) keeps each as generated, as ``gen_{index:05d}.npz``, as soon as its batch is
    done. Raises when no keyframe gives a usable mesh."""
    from ..generators.base import simplify_mesh

    meshes: dict[int, Mesh] = {}
    notes: list[str] = []
    todo = []
    for t in keyframes.tolist():
        name = checkpoint_name(t)
        if store is not None and store.has(name):
            meshes[t] = Mesh.load(store.path(name))
            if meshes[t].faces.numel() == 0:  # skipped by the run resumed: say so again, with its reason
                why = store.path(name).with_suffix(".why")
                notes.append(_skipped(t, why.read_text().strip() if why.is_file() else "an earlier run found it "
                                      "unusable"))
                warnings.warn(notes[-1])
            if bar is not None:
                bar.update(1)
        else:
            todo.append(t)
    batch = max(1, int(cfg.batch_size)) if getattr(generator, "generate_batch", None) is not None else 1
    for s in range(0, len(todo), batch):
        ts = todo[s:s + batch]
        for t, (m, why) in zip(ts, _generate(generator, frames, ts)):
            if why:
                notes.append(_skipped(t, why))
                warnings.warn(notes[-1])
                m = _empty()
            if store is not None:
                store.save(checkpoint_name(t), m)
                path = store.path(checkpoint_name(t))
                if why and path is not None:
                    atomic_write_bytes(path.with_suffix(".why"), (why + "\n").encode())
            meshes[t] = m
            if bar is not None:
                bar.update(1)
    kept = [t for t in keyframes.tolist() if meshes[t].faces.numel() > 0]
    if not kept:
        raise V2M4Error("the generator produced no usable mesh for any keyframe" + (f" ({notes[0]})" if notes else ""))
    work = tuple(meshes[t] if cfg.max_faces is None else simplify_mesh(meshes[t], cfg.max_faces) for t in kept)
    return GenerationResult(torch.tensor(kept), work, tuple(int(meshes[t].faces.shape[0]) for t in kept),
                            tuple(notes))


def _skipped(t: int, why: str) -> str:
    return f"frame {t}: generated mesh skipped ({why}); it is interpolated from its neighbours"


def _generate(generator, frames: Frames, ts: list[int]) -> list[tuple[Mesh | None, str | None]]:
    """(mesh, why it cannot be used or None) for each of the frames ``ts``: one ``generate_batch`` call for several,
    ``generate`` for one; a generator error (a broken mesh file or the like) costs its frame only, so a batch that
    fails is generated again frame by frame."""
    if len(ts) > 1:
        try:
            got = list(generator.generate_batch([frames.rgba[t] for t in ts], ts))
        except V2M4Error:
            got = None
        if got is not None and len(got) == len(ts):
            return [(m, mesh_problem(m)) for m in got]
        return [r for t in ts for r in _generate(generator, frames, [t])]
    try:
        m = generator.generate(frames.rgba[ts[0]], ts[0])
        return [(m, mesh_problem(m))]
    except V2M4Error as exc:
        return [(None, str(exc))]


@dataclass(frozen=True)
class RefinementResult:
    """meshes: each keyframe's mesh after Sec. 4.2 (the generated one where refinement was off, unavailable or
    rejected); status: "refined", "off" or why it was skipped; warnings: rejected refinements."""

    meshes: tuple[Mesh, ...]
    status: str
    warnings: tuple[str, ...] = ()


def refine_keyframes(generator, meshes: list[Mesh], kframes: Frames, keyframes: Tensor, cameras: Camera,
                     cfg: GenerationConfig, *, store=None, log=None) -> RefinementResult:
    """Sec. 4.2 between the camera search and the re-pose: each keyframe regenerated (same seed, same voxels, so
    the found camera still holds) with its appearance optimised against the frame, through the generator's
    optional ``refine(rgba, index, camera) -> Mesh`` hook; checkpointed per frame as ``refined_{index:05d}.npz``.
    With a ``log``, a bar of keyframes that moves within each keyframe too when the hook takes
    ``progress=callable(step, steps)`` (TRELLIS's: a keyframe's refinement is its whole sampling run)."""
    if not cfg.refine_appearance:
        return RefinementResult(tuple(meshes), "off")
    refine = getattr(generator, "refine", None)
    name = getattr(generator, "name", type(generator).__name__)
    if refine is None:
        if log is not None:
            log.event(stage="appearance", message=f"appearance refinement (Sec. 4.2) skipped: the {name} generator "
                      "has no hook for it (TRELLIS has)")
        return RefinementResult(tuple(meshes), f"skipped: the {name} generator has no hook")
    steps = "progress" in inspect.signature(refine).parameters
    out, notes = list(meshes), []
    with log.bar(len(meshes), "appearance", unit="keyframe") if log is not None else contextlib.nullcontext() as bar:
        for k, t in enumerate(keyframes.tolist()):
            fname = f"refined_{t:05d}.npz"
            dev = meshes[k].vertices.device
            if store is not None and store.path(fname) is not None and store.path(fname).is_file():
                out[k] = Mesh.load(store.path(fname)).to(dev)
            else:
                kw = {"progress": lambda i, n, k=k: bar.to(k + (i + 1) / n)} if steps and bar is not None else {}
                m = refine(kframes.rgba[k], t, cameras[k], **kw)
                why = mesh_problem(m)
                if why:
                    notes.append(f"frame {t}: refined mesh rejected ({why}); the generated one is kept")
                    warnings.warn(notes[-1])
                else:
                    out[k] = m.to(dev)
                    if store is not None:
                        store.save(fname, out[k])
            if bar is not None:
                bar.to(k + 1)
    return RefinementResult(tuple(out), "refined", tuple(notes))
