"""Benchmark methods: each turns (frames, per-frame generated meshes) into per-frame meshes plus a video camera.

A method is a function ``run(frames, generated, *, config, ctx, generator) -> MethodOutput`` registered in
``v2m4.bench.METHODS``; ``config`` is the ``PipelineConfig`` whose stages it runs. ``frames`` are the selected input frames (T), ``generated`` the generator's mesh for
each of them (canonical frame). The bench scores the output with the weight-free metrics; a method knows nothing
about ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from ...camera import Camera
from ...types import Mesh


@dataclass
class MethodOutput:
    """meshes: one per input frame, in the method's world frame. camera: one view, the method's estimate of the
    fixed video camera at the frames' resolution; rendering meshes[t] through it should reproduce frame t.
    world_from_canonical (T, 4, 4) optional: the similarity each generated mesh was moved by (re-pose), for
    pose-error scoring. extras: method-specific numbers for the table (snake_case). stage_seconds: wall time
    per stage. light (9,) optional: the video's light taken out of the meshes' texture (``stages.lighting``),
    under which the input-view columns see them."""

    meshes: list[Mesh]
    camera: Camera
    world_from_canonical: Tensor | None = None
    extras: dict[str, float] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    light: Tensor | None = None
