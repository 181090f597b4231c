"""The pipeline's configuration: one frozen dataclass per stage, composed by ``PipelineConfig``.

Presets are constructors: ``PipelineConfig.fast()`` (a CPU in minutes) and ``PipelineConfig.paper()`` (the paper's
numbers, for a GPU). Every number is written once, in its stage's config, with where it comes from.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from .errors import V2M4Error
from .stages.camera import CameraSearchConfig
from .stages.generate import GenerationConfig
from .stages.keyframes import KeyframeConfig
from .stages.registration import RegistrationConfig
from .stages.registration.joint import JointConfig
from .stages.texture import TextureConfig


@dataclass(frozen=True)
class LearnedConfig:
    """The learned parts of the camera search (Sec. 4.1), each optional with a weight-free fallback."""

    scorer: str = "auto"          # "auto" (DreamSim when its weights are here, else the weight-free scorer),
                                  # "dreamsim", "lpips" or "silhouette-colour"
    weights: str | None = None    # folder of the scorer's weights (default: its standard cache)
    stereo: str = "auto"          # Alg. 1's stereo prior: "auto" (DUSt3R when importable), "off", or the path of a
                                  # DUSt3R checkout


@dataclass(frozen=True)
class OutputConfig:
    """What ``write_outputs`` writes beside the GLB."""

    preview: bool = True
    preview_resolution: int = 256
    preview_normals: bool = False
    glb_mode: str = "targets"                  # "targets" (one morph target per keyframe) or "pca" (compact)
    extra_exports: tuple[str, ...] = ()        # any of "obj", "ply" (a file per frame), "usd"
    rig_bones: int | None = None               # also a skinned GLB with this many bones (linear-blend skinning
                                               # fitted to the vertex animation); -1 (export.rig.AUTO_BONES): as
                                               # many as its error target needs; None: none


PRESETS = ("fast", "paper")
# switches a preset name may carry after a dash (``paper-back``): the camera search's ablations
PRESET_SWITCHES = {"cold": {"warm_start": False}, "back": {"backward_pass": True}, "noback": {"backward_pass": False}}


@dataclass(frozen=True)
class PipelineConfig:
    keyframes: KeyframeConfig = KeyframeConfig()
    generation: GenerationConfig = GenerationConfig()
    learned: LearnedConfig = LearnedConfig()
    camera: CameraSearchConfig = field(default_factory=CameraSearchConfig.fast)
    registration: RegistrationConfig = field(default_factory=RegistrationConfig.fast)
    joint: JointConfig | None = field(default_factory=JointConfig.fast)  # Sec. 4.3's losses, our schedule: every
                                               # input frame fitted at once, keyframe meshes and the video together.
                                               # None: keyframe pairs in a chain (``registration``, the paper's
                                               # schedule), kept as the bench's baseline (``register_seq``)
    texture: TextureConfig | None = field(default_factory=TextureConfig.fast)  # None: no texture stage (Sec. 4.4);
                                               # the rest mesh keeps the first keyframe's generated colours
    output: OutputConfig = OutputConfig()
    resolution: int = 256                      # frames are downscaled to fit this working size
    device: str = "cpu"
    backend: str = "torch"                     # "torch" or "nvdiffrast"
    seed: int = 0                              # each stage draws from its own seed derived from this one

    @staticmethod
    def fast(**overrides) -> "PipelineConfig":
        """A CPU in minutes: fewer samples, steps and views than the paper, 256 px frames."""
        return replace(PipelineConfig(), **overrides)

    @staticmethod
    def paper(**overrides) -> "PipelineConfig":
        """The paper's numbers (Appendix A), 512 px frames: meant for a GPU."""
        return replace(PipelineConfig(camera=CameraSearchConfig.paper(), registration=RegistrationConfig.paper(),
                                      joint=JointConfig.paper(), texture=TextureConfig.paper(), resolution=512),
                       **overrides)

    @staticmethod
    def preset(name: str, **overrides) -> "PipelineConfig":
        """``fast`` or ``paper``, optionally followed by camera-search switches: ``-cold`` (every frame searched
        globally), ``-back`` / ``-noback`` (the backward pass on / off)."""
        base, *switches = name.split("-")
        if base not in PRESETS:
            raise V2M4Error(f"unknown preset {name!r}; choose {' or '.join(PRESETS)}")
        cfg = PipelineConfig.fast() if base == "fast" else PipelineConfig.paper()
        camera = cfg.camera
        for s in switches:
            if s not in PRESET_SWITCHES:
                raise V2M4Error(f"unknown preset switch -{s} in {name!r}; known: "
                                + ", ".join(f"-{k}" for k in PRESET_SWITCHES))
            camera = replace(camera, **PRESET_SWITCHES[s])
        return replace(cfg, camera=camera, **overrides)

    def with_joint_registration(self) -> "PipelineConfig":
        """The same preset registering the whole clip at once (``JointConfig`` of the matching preset)."""
        paper = self.registration.local_iters == RegistrationConfig.paper().local_iters
        return replace(self, joint=JointConfig.paper() if paper else JointConfig.fast())

    def with_pairwise_registration(self) -> "PipelineConfig":
        """The same preset registering keyframe pairs in a chain (the paper's schedule; the bench's baseline)."""
        return replace(self, joint=None)

    def with_overrides(self, overrides: dict) -> "PipelineConfig":
        """A copy with nested fields replaced: ``{"camera": {"n_particles": 8}, "seed": 1}``; unknown names raise."""
        return _override(self, overrides, "config")

    @staticmethod
    def from_file(path: str | Path, base: "PipelineConfig") -> "PipelineConfig":
        """``base`` with the overrides of a JSON file (the shape of ``with_overrides``)."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise V2M4Error(f"cannot read config {path}: {exc}") from None
        if not isinstance(data, dict):
            raise V2M4Error(f"config {path} must hold a JSON object of field overrides")
        return base.with_overrides(data)


def _override(obj, overrides: dict, where: str):
    names = {f.name: f for f in fields(obj)}
    kw = {}
    for key, value in overrides.items():
        if key not in names:
            raise V2M4Error(f"{where}: unknown field {key!r}; known: {', '.join(names)}")
        cur = getattr(obj, key)
        if cur is None and isinstance(value, dict):
            raise V2M4Error(f"{where}.{key} is off in this config; switch it on first, then override its fields")
        if dataclasses.is_dataclass(cur) and isinstance(value, dict):
            kw[key] = _override(cur, value, f"{where}.{key}")
        elif isinstance(cur, tuple) and isinstance(value, list):
            kw[key] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        else:
            kw[key] = value
    return replace(obj, **kw)
