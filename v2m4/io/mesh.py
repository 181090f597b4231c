"""Meshes from and to files (OBJ, PLY, GLB/glTF, OFF, STL) through trimesh."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import V2M4Error
from ..types import Mesh

MESH_SUFFIXES = {".obj", ".ply", ".glb", ".gltf", ".off", ".stl"}


def load_mesh(path: str | Path) -> Mesh:
    """One triangle mesh; a scene with several meshes is merged. Vertex colours or uv + texture are kept."""
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise V2M4Error(f"mesh file {path} does not exist")
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise V2M4Error(f"{path.name}: unsupported mesh format; use one of {', '.join(sorted(MESH_SUFFIXES))}")
    try:
        m = trimesh.load(path, force="mesh", process=False)
    except Exception as exc:  # trimesh raises many types on broken files
        raise V2M4Error(f"cannot read mesh {path.name}: {type(exc).__name__}") from None
    if not isinstance(m, trimesh.Trimesh) or len(m.faces) == 0:
        raise V2M4Error(f"mesh {path.name} has no triangles")
    v = torch.as_tensor(np.asarray(m.vertices), dtype=torch.float32)
    if not torch.isfinite(v).all():
        raise V2M4Error(f"mesh {path.name} has non-finite vertex positions")
    f = torch.as_tensor(np.asarray(m.faces), dtype=torch.int64)
    uv = tex = colors = None
    vis = m.visual
    if getattr(vis, "kind", None) == "texture" and getattr(vis, "uv", None) is not None:
        img = getattr(getattr(vis, "material", None), "baseColorTexture", None) or getattr(vis.material, "image", None)
        if img is not None:
            uv = torch.as_tensor(np.asarray(vis.uv), dtype=torch.float32)
            uv[:, 1] = 1 - uv[:, 1]  # trimesh keeps OpenGL-style v up; ours is glTF's v down
            tex = torch.as_tensor(np.asarray(img.convert("RGB")), dtype=torch.float32) / 255
    if tex is None and getattr(vis, "kind", None) == "vertex":
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
        visual = trimesh.visual.ColorVisuals(vertex_colors=(mesh.vertex_colors.detach().cpu().numpy().clip(0, 1) * 255).astype(np.uint8))
    else:
        visual = None
    path.parent.mkdir(parents=True, exist_ok=True)
    trimesh.Trimesh(v, f, visual=visual, process=False).export(path)
