"""USD export (optional extra ``usd-core``): one ``UsdGeomMesh`` whose points are time-sampled at every output
frame, with the uv set and the texture through a ``UsdPreviewSurface``, for Omniverse, Houdini and Blender's USD
importer. Time codes are frames at the clip's fps (``timeCodesPerSecond``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import V2M4Error
from ..types import Animation


def write_usd(path: str | os.PathLike, anim: Animation, *, fps: float | None = None) -> dict:
    """Write ``anim`` to ``path`` (.usda text or .usd/.usdc binary), atomically. Returns stats."""
    try:
        from pxr import Gf, Sdf, Usd, UsdGeom, UsdShade, Vt
    except ImportError:
        raise V2M4Error("USD export needs usd-core: pip install usd-core") from None
    path = Path(path)
    if path.suffix not in (".usd", ".usda", ".usdc"):
        raise V2M4Error(f"USD path must end in .usd, .usda or .usdc, not {path.suffix!r}")
    times = anim.times.detach().cpu().double().numpy()
    if fps is None:
        fps = float(1 / np.median(np.diff(times))) if len(times) > 1 else 24.0
    tmp = path.with_name(path.stem + ".part" + path.suffix)
    stage = Usd.Stage.CreateNew(str(tmp))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)  # our world, like glTF's, is +Y up
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    stage.SetTimeCodesPerSecond(fps)
    stage.SetFramesPerSecond(fps)
    frames = np.rint((times - times[0]) * fps).astype(int)
    stage.SetStartTimeCode(int(frames[0]))
    stage.SetEndTimeCode(int(frames[-1]))
    root = UsdGeom.Xform.Define(stage, "/v2m4")
    stage.SetDefaultPrim(root.GetPrim())
    geom = UsdGeom.Mesh.Define(stage, "/v2m4/mesh")
    mesh = anim.mesh
    faces = mesh.faces.detach().cpu().numpy().astype(np.int32)
    geom.CreateFaceVertexCountsAttr(Vt.IntArray([3] * len(faces)))
    geom.CreateFaceVertexIndicesAttr(Vt.IntArray(faces.reshape(-1).tolist()))
    geom.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
    # USD's default winding is right-handed (counter-clockwise front faces), as ours
    pts = geom.CreatePointsAttr()
    verts = anim.vertices.detach().cpu().float().numpy()
    lo, hi = verts.reshape(-1, 3).min(0), verts.reshape(-1, 3).max(0)
    for f, v in zip(frames.tolist(), verts):
        pts.Set(Vt.Vec3fArray.FromNumpy(np.ascontiguousarray(v)), Usd.TimeCode(f))
    geom.CreateExtentAttr(Vt.Vec3fArray([Gf.Vec3f(*map(float, lo)), Gf.Vec3f(*map(float, hi))]))
    if mesh.uv is not None:
        uv = mesh.uv.detach().cpu().float().numpy().copy()
        uv[:, 1] = 1 - uv[:, 1]  # USD's st runs upward
        pv = UsdGeom.PrimvarsAPI(geom).CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray,
                                                      UsdGeom.Tokens.vertex)
        pv.Set(Vt.Vec2fArray.FromNumpy(uv))
    elif mesh.vertex_colors is not None:
        geom.CreateDisplayColorPrimvar(UsdGeom.Tokens.vertex).Set(
            Vt.Vec3fArray.FromNumpy(mesh.vertex_colors.detach().cpu().float().numpy()))
    if mesh.texture is not None and mesh.uv is not None:
        from ..types import atomic_write_bytes
        from .gltf import _png
        tex_name = path.stem + "_texture.png"
        atomic_write_bytes(path.with_name(tex_name), _png(mesh.texture.detach().cpu().numpy()))
        mat = UsdShade.Material.Define(stage, "/v2m4/material")
        shader = UsdShade.Shader.Define(stage, "/v2m4/material/surface")
        shader.CreateIdAttr("UsdPreviewSurface")
        shader.CreateInput("roughness", Sdf.ValueTypeNames.Float).Set(1.0)
        reader = UsdShade.Shader.Define(stage, "/v2m4/material/st")
        reader.CreateIdAttr("UsdPrimvarReader_float2")
        reader.CreateInput("varname", Sdf.ValueTypeNames.Token).Set("st")
        sampler = UsdShade.Shader.Define(stage, "/v2m4/material/texture")
        sampler.CreateIdAttr("UsdUVTexture")
        sampler.CreateInput("file", Sdf.ValueTypeNames.Asset).Set(tex_name)
        sampler.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(reader.ConnectableAPI(), "result")
        sampler.CreateOutput("rgb", Sdf.ValueTypeNames.Float3)
        shader.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).ConnectToSource(
            sampler.ConnectableAPI(), "rgb")
        mat.CreateSurfaceOutput().ConnectToSource(shader.ConnectableAPI(), "surface")
        UsdShade.MaterialBindingAPI.Apply(geom.GetPrim()).Bind(mat)
    stage.GetRootLayer().Save()
    del stage
    os.replace(tmp, path)
    return {"bytes": path.stat().st_size, "time_samples": len(frames), "fps": fps}
