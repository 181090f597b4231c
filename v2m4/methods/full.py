"""The texture stage as the pipeline runs it (Sec. 4.4) and the export checks of the bench's ``full`` method.

The bench's ``full`` method is the whole pipeline (``v2m4.pipeline.reconstruct`` through ``v2m4 run``'s own
function, see ``v2m4.bench.PIPELINE_METHODS``), so its figures are the ones a user's run reports."""

from __future__ import annotations

from dataclasses import replace

import torch

from .. import render as R
from ..camera import Camera
from ..stages.texture import (TextureConfig, appearance_renders, apply_colour_transfer, bake_texture,
                              colour_transfer, random_views, uv_atlas)
from ..types import Frames, Mesh


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
    cams = Camera(camera.K.expand(K, 3, 3), camera.cam_from_world.expand(K, 4, 4), camera.resolution)
    generated_ref = appearance_renders(reposed, cams, ctx)
    multi = random_views(reposed[0], cfg.multi_views, cfg.render_res, generator, fov_deg=cfg.fov_deg)
    targets = appearance_renders([reposed[0]], multi, ctx)
    if cfg.video_supervision:
        ref = frames.rgba.to(rest.vertices.device)
        # the generated appearance mapped into the video's colours where both see the object (texture.py)
        targets = apply_colour_transfer(targets, colour_transfer(generated_ref[:1], ref[:1].to(generated_ref)))
    else:
        ref = generated_ref
    return bake_texture(atlas, vmap, key_vertices, camera, ref, multi, targets, cfg, ctx)


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
