"""glTF 2.0 / GLB meshes read from their accessors, vertex colours included.

trimesh turns a primitive with ``COLOR_0`` and a plain material into texture visuals without uv and drops the
colours; generators write exactly such files. This reader decodes what the spec allows: any accessor component type
(normalised or not, strided, sparse, or without a buffer view), indexed or not, triangle lists, strips and fans,
every primitive of every mesh reachable from the scene with its node transforms applied.

Colour spaces: the spec says ``COLOR_0`` and ``baseColorFactor`` are linear; ``Mesh.vertex_colors`` are sRGB (what
the frames show, what ``export.gltf`` converts back to linear), so they are converted. trimesh's exporter, which
most generators use, writes sRGB bytes into ``COLOR_0`` unconverted; files it wrote are read as they are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import V2M4Error
from ..types import Mesh

_DTYPES = {5120: np.dtype("i1"), 5121: np.dtype("u1"), 5122: np.dtype("<i2"), 5123: np.dtype("<u2"),
           5125: np.dtype("<u4"), 5126: np.dtype("<f4")}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}
_COMPRESSION = ("KHR_draco_mesh_compression", "EXT_meshopt_compression")
TRIANGLES, TRIANGLE_STRIP, TRIANGLE_FAN = 4, 5, 6


def open_gltf(path: Path):
    """The parsed file (pygltflib.GLTF2); a broken or compressed file raises V2M4Error."""
    import pygltflib

    try:
        gltf = pygltflib.GLTF2().load(str(path))
    except Exception as exc:  # pygltflib raises many types on broken files
        raise V2M4Error(f"cannot read mesh {path.name}: {type(exc).__name__}") from None
    if gltf is None:
        raise V2M4Error(f"cannot read mesh {path.name}: not a glTF file")
    for ext in _COMPRESSION:  # merely used, not required: the file holds uncompressed data too
        if ext in (gltf.extensionsRequired or []):
            raise V2M4Error(f"mesh {path.name} uses {ext}, which v2m4 does not decode; export it again without "
                            f"mesh compression")
    return gltf


def has_texture(gltf) -> bool:
    """Whether a primitive has a base colour texture and uv (read through trimesh, which packs textures)."""
    for mesh in gltf.meshes or []:
        for prim in mesh.primitives or []:
            pbr = _pbr(gltf, prim)
            if pbr is not None and pbr.baseColorTexture is not None and prim.attributes.TEXCOORD_0 is not None:
                return True
    return False


def gltf_mesh(gltf, path: Path) -> Mesh:
    """Every triangle primitive of the scene, node transforms applied, merged into one Mesh with vertex colours
    (COLOR_0 x baseColorFactor, in sRGB) when any primitive has COLOR_0 or a base colour that is not white."""
    reader = _Reader(gltf, path)
    raw = "trimesh" in (getattr(gltf.asset, "generator", None) or "").lower()
    verts, faces, colors = [], [], []
    n = 0
    coloured = False
    for mesh_index, world in _instances(gltf):
        for prim in gltf.meshes[mesh_index].primitives or []:
            if (prim.mode if prim.mode is not None else TRIANGLES) not in (TRIANGLES, TRIANGLE_STRIP, TRIANGLE_FAN):
                continue  # points and lines carry no surface
            if prim.attributes.POSITION is None:
                raise V2M4Error(f"mesh {path.name} has a primitive without POSITION")
            v = reader.accessor(prim.attributes.POSITION)[:, :3]
            idx = reader.accessor(prim.indices)[:, 0].astype(np.int64) if prim.indices is not None else \
                np.arange(len(v), dtype=np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= len(v)):
                raise V2M4Error(f"mesh {path.name} has indices up to {int(idx.max())} but {len(v)} vertices")
            f = _triangles(idx, prim.mode if prim.mode is not None else TRIANGLES)
            if np.linalg.det(world[:3, :3]) < 0:  # a mirroring node flips the winding (glTF 2.0, Sec. 3.7.4)
                f = f[:, [0, 2, 1]]
            pbr = _pbr(gltf, prim)
            factor = np.asarray(pbr.baseColorFactor if pbr is not None and pbr.baseColorFactor else [1.0] * 4,
                                dtype=np.float64)[:3]
            c = np.ones((len(v), 3))
            if prim.attributes.COLOR_0 is not None:
                c = reader.accessor(prim.attributes.COLOR_0, normalise=True)[:, :3]
                coloured = True
            coloured |= bool((factor != 1).any())
            verts.append(v @ world[:3, :3].T + world[:3, 3])
            faces.append(f + n)
            colors.append(c * factor)
            n += len(v)
    if not verts:
        raise V2M4Error(f"mesh {path.name} has no triangles")
    col = np.clip(np.concatenate(colors), 0, 1)
    col = col if raw else _linear_to_srgb(col)
    return Mesh(torch.as_tensor(np.concatenate(verts), dtype=torch.float32),
                torch.as_tensor(np.concatenate(faces), dtype=torch.int64),
                vertex_colors=torch.as_tensor(col, dtype=torch.float32) if coloured else None)


class _Reader:
    """Accessor decoding with the file's buffers loaded once each."""

    def __init__(self, gltf, path: Path):
        self.gltf, self.path, self.buffers = gltf, path, {}

    def buffer(self, index: int) -> bytes:
        if index not in self.buffers:
            try:
                data = self.gltf.get_data_from_buffer_uri(self.gltf.buffers[index].uri)
            except Exception as exc:  # a missing .bin, a bad data uri
                raise V2M4Error(f"cannot read buffer {index} of mesh {self.path.name}: {type(exc).__name__}") \
                    from None
            if data is None:
                raise V2M4Error(f"cannot read buffer {index} of mesh {self.path.name}")
            self.buffers[index] = bytes(data)
        return self.buffers[index]

    def accessor(self, index: int, *, normalise: bool = False) -> np.ndarray:
        """Accessor ``index`` as (count, width) float64; integers scaled to [0, 1] ([-1, 1] signed) when the
        accessor is normalised, or when ``normalise`` (COLOR_0 may only hold normalised integers)."""
        try:
            acc = self.gltf.accessors[index]
            dtype, width = _DTYPES[acc.componentType], _WIDTH[acc.type]
        except (IndexError, KeyError, TypeError):
            raise V2M4Error(f"mesh {self.path.name} has a bad accessor {index}") from None
        out = self._strided(acc.bufferView, acc.byteOffset or 0, dtype, width, acc.count, index) \
            if acc.bufferView is not None else np.zeros((acc.count, width), dtype)
        if acc.sparse is not None:
            s = acc.sparse
            rows = self._strided(s.indices.bufferView, s.indices.byteOffset or 0, _DTYPES[s.indices.componentType],
                                 1, s.count, index)[:, 0].astype(np.int64)
            if rows.size and rows.max() >= acc.count:
                raise V2M4Error(f"mesh {self.path.name}: sparse accessor {index} replaces rows past its count")
            out = out.copy()
            out[rows] = self._strided(s.values.bufferView, s.values.byteOffset or 0, dtype, width, s.count, index)
        out = out.astype(np.float64)
        if dtype.kind in "iu" and (acc.normalized or normalise):
            out = np.maximum(out / np.iinfo(dtype).max, -1.0)
        return out

    def _strided(self, view_index: int, offset: int, dtype: np.dtype, width: int, count: int, index: int):
        view = self.gltf.bufferViews[view_index]
        data = self.buffer(view.buffer)
        start = (view.byteOffset or 0) + offset
        stride = view.byteStride or dtype.itemsize * width
        end = start + (stride * (count - 1) + dtype.itemsize * width if count else 0)
        if end > min(len(data), (view.byteOffset or 0) + view.byteLength):
            raise V2M4Error(f"mesh {self.path.name}: accessor {index} reads past the end of its buffer view")
        return np.ndarray((count, width), dtype, buffer=data, offset=start, strides=(stride, dtype.itemsize))


def _triangles(idx: np.ndarray, mode: int) -> np.ndarray:
    """(F, 3) corners of a triangle list, strip or fan (glTF 2.0, Sec. 3.7.2.1)."""
    if mode == TRIANGLES:
        return idx[: len(idx) // 3 * 3].reshape(-1, 3)
    i = np.arange(max(len(idx) - 2, 0))
    if mode == TRIANGLE_STRIP:  # every other triangle swaps two corners to keep one winding
        return np.stack([idx[i], idx[i + 1 + i % 2], idx[i + 2 - i % 2]], -1)
    return np.stack([idx[i + 1], idx[i + 2], np.full_like(i, idx[0] if len(idx) else 0)], -1)


def _pbr(gltf, prim):
    if prim.material is None or not 0 <= prim.material < len(gltf.materials or []):
        return None
    return gltf.materials[prim.material].pbrMetallicRoughness


def _instances(gltf):
    """(mesh index, world_from_mesh (4, 4)) for every node with a mesh in the default scene (every root node when
    the file has no scene, every mesh once when it has no nodes)."""
    nodes = gltf.nodes or []
    if not nodes:
        return [(i, np.eye(4)) for i in range(len(gltf.meshes or []))]
    if gltf.scenes:
        roots = gltf.scenes[gltf.scene if gltf.scene is not None and gltf.scene < len(gltf.scenes) else 0].nodes
    else:
        children = {c for n in nodes for c in (n.children or [])}
        roots = [i for i in range(len(nodes)) if i not in children]
    out, stack, seen = [], [(i, np.eye(4)) for i in reversed(roots or [])], set()  # depth first, in file order
    while stack:
        i, parent = stack.pop()
        if i in seen or not 0 <= i < len(nodes):  # a cycle or a dangling index in a malformed file
            continue
        seen.add(i)
        world = parent @ _local(nodes[i])
        if nodes[i].mesh is not None:
            out.append((nodes[i].mesh, world))
        stack.extend((c, world) for c in reversed(nodes[i].children or []))
    return out


def _local(node) -> np.ndarray:
    """parent_from_node (4, 4): the node's matrix, or T R S."""
    if node.matrix is not None:
        return np.asarray(node.matrix, dtype=np.float64).reshape(4, 4).T  # stored column-major
    x, y, z, w = node.rotation if node.rotation is not None else (0.0, 0.0, 0.0, 1.0)
    R = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                  [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                  [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    M = np.eye(4)
    M[:3, :3] = R * np.asarray(node.scale if node.scale is not None else (1.0, 1.0, 1.0))[None]
    M[:3, 3] = node.translation if node.translation is not None else (0.0, 0.0, 0.0)
    return M


def _linear_to_srgb(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.maximum(c, 1e-8) ** (1 / 2.4) - 0.055)
