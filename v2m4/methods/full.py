"""Bench method ``full``: camera search and re-pose (Sec. 4.1), registration (Sec. 4.3) and one shared texture
(Sec. 4.4). ``run_generated_ref`` is the paper's texture supervision alone (every reference view from the
generated appearance), for the comparison that sets ``TextureConfig.video_supervision``'s default."""

from __future__ import annotations

import time
import warnings
from dataclasses import replace

import torch

from .. import render as R
from ..camera import Camera
from ..stages.texture import (TextureConfig, appearance_renders, bake_texture, random_views, ring_views,
                              unreached_fraction, uv_atlas)
from ..errors import V2M4Error
from ..types import Frames, Mesh
from . import MethodOutput
from . import register as register_method


def texture_config(preset: str) -> TextureConfig:
    base = preset.split("-")[0]
    if base == "tiny":  # smoke tests of the whole pipeline
        return replace(TextureConfig.fast(), size=64, iters=5, multi_views=8, render_res=48)
    return TextureConfig.paper() if base == "paper" else TextureConfig.fast()


def texture_stage(frames: Frames, reposed: list[Mesh], rest: Mesh, key_vertices: torch.Tensor, camera: Camera,
                  cfg: TextureConfig, ctx: R.RenderContext, generator: torch.Generator):
    """Atlas + bake. reposed: each keyframe's generated mesh in the world (its colours are the paper's targets);
    rest: the registered rest mesh; key_vertices (K, V, 3); camera: the video camera (1 view)."""
    atlas, vmap = uv_atlas(rest, size=cfg.size, padding=cfg.padding)
    K = key_vertices.shape[0]
    if cfg.video_supervision:
        ref = frames.rgba.to(rest.vertices.device)
    else:
        cams = Camera(camera.K.expand(K, 3, 3), camera.cam_from_world.expand(K, 4, 4), camera.resolution)
        ref = appearance_renders(reposed, cams, ctx)
    multi = random_views(reposed[0], cfg.multi_views, cfg.render_res, generator, fov_deg=cfg.fov_deg)
    targets = appearance_renders([reposed[0]], multi, ctx)
    return bake_texture(atlas, vmap, key_vertices, camera, ref, multi, targets, cfg, ctx)


def run(frames: Frames, generated: list[Mesh], *, preset: str = "fast", ctx: R.RenderContext,
        generator: torch.Generator | None = None, video_supervision: bool | None = None) -> MethodOutput:
    g = generator or torch.Generator().manual_seed(0)
    cam, res, reg_secs = register_method.stages(frames, generated, preset=preset, ctx=ctx, generator=g)
    cfg = texture_config(preset)
    if video_supervision is not None:
        cfg = replace(cfg, video_supervision=video_supervision)
    seq = res.sequence
    t0 = time.perf_counter()
    tex = texture_stage(frames, cam.meshes, seq.rest, seq.vertices, cam.camera, cfg, ctx, g)
    secs = time.perf_counter() - t0
    textured = tex.mesh
    meshes = [textured.with_vertices(seq.vertices[k].to(textured.vertices)[tex.vmap]) for k in range(len(seq))]
    extras = register_method.registration_extras(cam, res)
    extras["unreached_frac"] = unreached_fraction(textured, tex.unreached, ring_views(textured, 8, 256), ctx)
    extras["texture_size"] = float(cfg.size)
    try:
        extras.update(export_checks(textured, [m.vertices for m in meshes], frames))
    except (ImportError, V2M4Error) as exc:  # the reconstruction's figures stand without the export's
        warnings.warn(f"export checks skipped: {exc}")
    extras["video_supervision"] = float(cfg.video_supervision)
    return MethodOutput(meshes=meshes, camera=cam.camera, world_from_canonical=cam.world_from_canonical,
                        extras=extras, stage_seconds={**cam.stage_seconds, "register": reg_secs, "texture": secs})


def export_checks(mesh: Mesh, vertices: list[torch.Tensor], frames: Frames) -> dict[str, float]:
    """Write the output as a GLB (one target per frame, and the PCA mode), validate both with the Khronos validator
    when it is installed, and read them back with the independent reader: the export columns of the bench."""
    import tempfile

    import numpy as np

    from ..export.gltf import write_glb
    from ..export.readback import GlbAnimation
    from ..export.validate import validate_glb, validator_available
    from ..types import Animation

    v = torch.stack([x.detach().cpu() for x in vertices])
    anim = Animation(mesh.to("cpu"), v, frames.times.float().cpu(), torch.arange(len(v)))
    out: dict[str, float] = {}
    diag = float((v.amax((0, 1)) - v.amin((0, 1))).norm())
    with tempfile.TemporaryDirectory() as tmp:
        for mode, key in (("targets", "glb_bytes"), ("pca", "glb_bytes_pca")):
            path = f"{tmp}/{mode}.glb"
            stats = write_glb(path, anim, mode=mode)
            out[key] = float(stats["bytes"])
            if validator_available() is None:
                r = validate_glb(path)
                out[f"validator_errors{'_pca' if mode == 'pca' else ''}"] = float(r["errors"])
                out[f"validator_warnings{'_pca' if mode == 'pca' else ''}"] = float(r["warnings"])
            if mode == "targets":
                g = GlbAnimation(path)
                err = max(float(np.abs(g.positions(float(anim.times[k])) - v[k].double().numpy()).max())
                          for k in range(len(v)))
                out["roundtrip_err"] = err / diag
            else:
                out["pca_targets"] = float(stats["targets"])
    return out


def run_generated_ref(frames, generated, *, preset="fast", ctx, generator=None) -> MethodOutput:
    return run(frames, generated, preset=preset, ctx=ctx, generator=generator, video_supervision=False)
