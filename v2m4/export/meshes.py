"""Per-frame mesh files (Sec. 4.5 "other exports"): one OBJ or PLY per output frame, same vertices and faces in
every file, for tools that take a mesh sequence (Alembic importers, Houdini, MeshLab). The texture goes beside
them once (``texture.png``); OBJ files reference it through one shared ``material.mtl``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import V2M4Error
from ..types import Animation, atomic_write_bytes
from .gltf import _png


def write_mesh_folder(folder: str | os.PathLike, anim: Animation, *, fmt: str = "obj") -> list[Path]:
    """Write every frame of ``anim`` as ``frame_00000.<fmt>`` in ``folder``. Returns the written paths."""
    import trimesh

    if fmt not in ("obj", "ply"):
        raise V2M4Error(f"unknown mesh format {fmt!r}; choose obj or ply")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    mesh = anim.mesh
    faces = mesh.faces.detach().cpu().numpy()
    uv = mesh.uv.detach().cpu().numpy() if mesh.uv is not None else None
    colours = mesh.vertex_colors.detach().cpu().numpy() if mesh.vertex_colors is not None else None
    if mesh.texture is not None:
        atomic_write_bytes(out / "texture.png", _png(mesh.texture.detach().cpu().numpy()))
        if fmt == "obj":
            atomic_write_bytes(out / "material.mtl", b"newmtl v2m4\nKd 1 1 1\nmap_Kd texture.png\n")
    paths = []
    digits = max(5, len(str(len(anim) - 1)))
    for t in range(len(anim)):
        v = anim.vertices[t].detach().cpu().numpy().astype(np.float64)
        p = out / f"frame_{t:0{digits}d}.{fmt}"
        if fmt == "obj":
            lines = ["mtllib material.mtl", "usemtl v2m4"] if mesh.texture is not None else []
            lines += [f"v {x:.7g} {y:.7g} {z:.7g}" for x, y, z in v]
            if uv is not None:
                # OBJ's v runs upward; our uv (glTF) runs downward
                lines += [f"vt {a:.7g} {1 - b:.7g}" for a, b in uv]
                lines += [f"f {a}/{a} {b}/{b} {c}/{c}" for a, b, c in faces + 1]
            else:
                lines += [f"f {a} {b} {c}" for a, b, c in faces + 1]
            atomic_write_bytes(p, ("\n".join(lines) + "\n").encode())
        else:
            tm = trimesh.Trimesh(v, faces, process=False,
                                 vertex_colors=None if colours is None else (colours * 255).round().astype(np.uint8))
            atomic_write_bytes(p, tm.export(file_type="ply"))
        paths.append(p)
    return paths
