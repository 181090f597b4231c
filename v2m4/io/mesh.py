"""Meshes from and to files (OBJ, PLY, GLB/glTF, OFF, STL): glTF through ``gltf_read`` unless textured, the rest
through trimesh."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import V2M4Error
from ..types import Mesh

MESH_SUFFIXES = {".obj", ".ply", ".glb", ".gltf", ".off", ".stl"}


def load_mesh(path: str | Path) -> Mesh:
    """One triangle mesh; a scene with several meshes is merged (node transforms applied). Keeps uv + base colour
    texture, else vertex colours (sRGB): glTF COLOR_0 in any encoding (``io.gltf_read``), PLY/OBJ/OFF colours.
    A mesh with neither has ``vertex_colors=None``."""
    path = Path(path)
    if not path.is_file():
        raise V2M4Error(f"mesh file {path} does not exist")
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise V2M4Error(f"{path.name}: unsupported mesh format; use one of {', '.join(sorted(MESH_SUFFIXES))}")
    mesh = None
    if path.suffix.lower() in {".glb", ".gltf"}:
        from .gltf_read import gltf_mesh, has_texture, open_gltf

        gltf = open_gltf(path)
        if not has_texture(gltf):  # trimesh drops COLOR_0 beside a material; textures it reads (and packs) well
            mesh = gltf_mesh(gltf, path)
    if mesh is None:
        mesh = _trimesh_mesh(path)
    if mesh.faces.shape[0] == 0:
        raise V2M4Error(f"mesh {path.name} has no triangles")
    if not torch.isfinite(mesh.vertices).all():
        raise V2M4Error(f"mesh {path.name} has non-finite vertex positions")
    return mesh


def _trimesh_mesh(path: Path) -> Mesh:
    import trimesh

    try:
        m = trimesh.load(path, force="mesh", process=False)
    except Exception as exc:  # trimesh raises many types on broken files
        raise V2M4Error(f"cannot read mesh {path.name}: {type(exc).__name__}") from None
    if not isinstance(m, trimesh.Trimesh) or len(m.faces) == 0:
        raise V2M4Error(f"mesh {path.name} has no triangles")
    v = torch.as_tensor(np.asarray(m.vertices), dtype=torch.float32)
    f = torch.as_tensor(np.asarray(m.faces), dtype=torch.int64)
    uv = tex = colors = None
    vis = m.visual
    if getattr(vis, "kind", None) == "texture" and getattr(vis, "uv", None) is not None:
        img = getattr(getattr(vis, "material", None), "baseColorTexture", None) or getattr(vis.material, "image", None)
        if img is not None:
            uv = torch.as_tensor(np.asarray(vis.uv), dtype=torch.float32)
            uv[:, 1] = 1 - uv[:, 1]  # trimesh keeps OpenGL-style v up; ours is glTF's v down
            tex = torch.as_tensor(np.array(img.convert("RGB")), dtype=torch.float32) / 255
    if tex is None and getattr(vis, "kind", None) in ("vertex", "face"):
        # face colours (PLY, OFF) become vertex colours by trimesh's averaging over each vertex's faces
        colors = torch.as_tensor(np.asarray(vis.vertex_colors)[:, :3], dtype=torch.float32) / 255
    return Mesh(v, f, uv=uv, texture=tex, vertex_colors=colors)


def save_mesh(mesh: Mesh, path: str | Path) -> None:
    """Write a mesh; the format follows the suffix. Texture + uv go to OBJ/GLB, vertex colours to PLY/GLB."""
    import trimesh
    from PIL import Image

    path = Path(path)
    if path.suffix.lower() not in MESH_SUFFIXES - {".gltf"}:
        raise V2M4Error(f"{path.name}: unsupported mesh format for writing")
    v = mesh.vertices.detach().cpu().numpy()
    f = mesh.faces.detach().cpu().numpy()
    if mesh.texture is not None:
        uv = mesh.uv.detach().cpu().numpy().copy()
        uv[:, 1] = 1 - uv[:, 1]
        img = Image.fromarray((mesh.texture.detach().cpu().numpy().clip(0, 1) * 255).astype(np.uint8))
        visual = trimesh.visual.TextureVisuals(uv=uv, image=img)
    elif mesh.vertex_colors is not None:
        rgb = mesh.vertex_colors.detach().cpu().numpy().clip(0, 1)
        visual = trimesh.visual.ColorVisuals(vertex_colors=(rgb * 255 + 0.5).astype(np.uint8))  # rounded
    else:
        visual = None
    path.parent.mkdir(parents=True, exist_ok=True)
    trimesh.Trimesh(v, f, visual=visual, process=False).export(path)
