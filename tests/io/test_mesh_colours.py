"""load_mesh reads vertex colours (and positions) from files written by trimesh, by hand with pygltflib, and by
v2m4's own exporters, in every encoding glTF allows for COLOR_0.

Expected colours: glTF stores COLOR_0 and baseColorFactor linear (glTF 2.0, Sec. 3.7.2.1, 3.9.2) and
``Mesh.vertex_colors`` are sRGB, so a hand-built file's stored values go through the sRGB curve (written here, not
imported). trimesh writes sRGB bytes unconverted into COLOR_0, PLY and OBJ; those come back as written.
"""

import numpy as np
import pygltflib
import pytest
import torch

from v2m4 import Mesh
from v2m4.errors import V2M4Error
from v2m4.io.mesh import load_mesh, save_mesh

FLOAT, UBYTE, USHORT, UINT = 5126, 5121, 5123, 5125
TOL = 1 / 255


def srgb(c):
    c = np.asarray(c, np.float64)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.maximum(c, 1e-8) ** (1 / 2.4) - 0.055)


def octahedron():
    v = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], np.float32) * 0.5
    f = np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])
    return v, f


def colours(n, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, 4))


class Glb:
    """A GLB assembled by hand with pygltflib: one binary buffer, views 4-byte aligned."""

    def __init__(self, generator="hand-built"):
        self.g = pygltflib.GLTF2(asset=pygltflib.Asset(version="2.0", generator=generator))
        self.blob = bytearray()

    def view(self, data: bytes, stride=None) -> int:
        self.blob += b"\0" * (-len(self.blob) % 4)
        self.g.bufferViews.append(pygltflib.BufferView(buffer=0, byteOffset=len(self.blob), byteLength=len(data),
                                                       byteStride=stride))
        self.blob += data
        return len(self.g.bufferViews) - 1

    def accessor(self, count, ctype, kind, *, view=None, offset=0, normalized=False, sparse=None) -> int:
        self.g.accessors.append(pygltflib.Accessor(bufferView=view, byteOffset=offset, componentType=ctype,
                                                   count=count, type=kind, normalized=normalized, sparse=sparse))
        return len(self.g.accessors) - 1

    def array(self, a: np.ndarray, ctype, kind, *, normalized=False, stride=None) -> int:
        """An accessor over a ``(count, width)`` array; rows padded to ``stride`` bytes when given."""
        a = np.ascontiguousarray(a)
        rows = a.reshape(len(a), -1).view(np.uint8)
        if stride:
            rows = np.concatenate([rows, np.zeros((len(a), stride - rows.shape[1]), np.uint8)], 1)
        return self.accessor(len(a), ctype, kind, view=self.view(rows.tobytes(), stride), normalized=normalized)

    def primitive(self, v, f=None, *, color=None, material=None, mode=4) -> pygltflib.Primitive:
        attrs = pygltflib.Attributes(POSITION=self.array(v.astype(np.float32), FLOAT, "VEC3"), COLOR_0=color)
        idx = None if f is None else self.array(f.reshape(-1).astype(np.uint32), UINT, "SCALAR")
        return pygltflib.Primitive(attributes=attrs, indices=idx, material=material, mode=mode)

    def material(self, factor=None) -> int:
        pbr = pygltflib.PbrMetallicRoughness(baseColorFactor=factor or [1.0, 1.0, 1.0, 1.0], metallicFactor=0.0)
        self.g.materials.append(pygltflib.Material(pbrMetallicRoughness=pbr))
        return len(self.g.materials) - 1

    def save(self, path, meshes, nodes=None):
        """meshes: lists of primitives; nodes: pygltflib.Node list (default one node per mesh), all roots."""
        self.g.meshes = [pygltflib.Mesh(primitives=p) for p in meshes]
        self.g.nodes = nodes or [pygltflib.Node(mesh=i) for i in range(len(meshes))]
        children = {c for n in self.g.nodes for c in n.children}
        self.g.scenes = [pygltflib.Scene(nodes=[i for i in range(len(self.g.nodes)) if i not in children])]
        self.g.scene = 0
        self.g.buffers = [pygltflib.Buffer(byteLength=len(self.blob))]
        self.g.set_binary_blob(bytes(self.blob))
        self.g.save_binary(str(path))
        return path


def encode(c, ctype, width):
    """(stored values as the file decodes them, raw array for the buffer, byteStride or None)."""
    c = c[:, :width]
    if ctype == FLOAT:
        raw = c.astype(np.float32)
        return raw.astype(np.float64), raw, None
    top = np.iinfo(np.uint8 if ctype == UBYTE else np.uint16).max
    raw = np.round(c * top).astype(np.uint8 if ctype == UBYTE else np.uint16)
    size = raw.itemsize * width
    # vertex attribute elements start on 4-byte boundaries (glTF 2.0, Sec. 3.6.2.4): VEC3 of bytes pads to 4, of
    # shorts to 8
    return raw / top, raw, (size + 3) // 4 * 4 if size % 4 else None


@pytest.mark.parametrize("material", [False, True], ids=["no-material", "material"])
@pytest.mark.parametrize("ctype,width", [(FLOAT, 3), (FLOAT, 4), (UBYTE, 3), (UBYTE, 4), (USHORT, 3), (USHORT, 4)],
                         ids=["float3", "float4", "ubyte3", "ubyte4", "ushort3", "ushort4"])
def test_hand_built_glb_color_0_in_every_encoding(tmp_path, ctype, width, material):
    v, f = octahedron()
    stored, raw, stride = encode(colours(len(v)), ctype, width)
    b = Glb()
    col = b.array(raw, ctype, f"VEC{width}", normalized=ctype != FLOAT, stride=stride)
    prim = b.primitive(v, f, color=col, material=b.material() if material else None)
    m = load_mesh(b.save(tmp_path / "m.glb", [[prim]]))
    torch.testing.assert_close(m.vertices, torch.as_tensor(v))
    assert torch.equal(m.faces, torch.as_tensor(f))
    assert np.abs(m.vertex_colors.numpy() - srgb(stored[:, :3])).max() <= TOL


def _structure(tmp_path, case):
    """A hand-built GLB of the named structure -> (path, expected vertices (V, 3), faces (F, 3), sRGB colours)."""
    v, f = octahedron()
    c = colours(len(v))[:, :3]
    b = Glb()
    if case == "interleaved":  # POSITION and COLOR_0 in one view, 16-byte rows: xyz float32, rgba uint8
        q = np.round(c * 255).astype(np.uint8)
        rows = np.concatenate([v.view(np.uint8).reshape(len(v), 12), q, np.full((len(v), 1), 255, np.uint8)], 1)
        view = b.view(rows.tobytes(), stride=16)
        attrs = pygltflib.Attributes(POSITION=b.accessor(len(v), FLOAT, "VEC3", view=view),
                                     COLOR_0=b.accessor(len(v), UBYTE, "VEC4", view=view, offset=12, normalized=True))
        prim = pygltflib.Primitive(attributes=attrs, indices=b.array(f.reshape(-1).astype(np.uint32), UINT, "SCALAR"))
        return b.save(tmp_path / "m.glb", [[prim]]), v, f, srgb(q / 255)
    if case in ("u8-indices", "u16-indices"):
        dt, ct = (np.uint8, UBYTE) if case == "u8-indices" else (np.uint16, USHORT)
        prim = b.primitive(v, None, color=b.array(c.astype(np.float32), FLOAT, "VEC3"))
        prim.indices = b.array(f.reshape(-1).astype(dt), ct, "SCALAR")
        return b.save(tmp_path / "m.glb", [[prim]]), v, f, srgb(c)
    if case == "non-indexed":  # three vertices per triangle, no indices accessor
        vv, cc = v[f.reshape(-1)], c[f.reshape(-1)]
        prim = b.primitive(vv, None, color=b.array(cc.astype(np.float32), FLOAT, "VEC3"))
        return b.save(tmp_path / "m.glb", [[prim]]), vv, np.arange(len(vv)).reshape(-1, 3), srgb(cc)
    if case == "strip-and-fan":  # a quad as a strip and as a fan: (0 1 2), (1 3 2) and (1 2 0), (2 3 0)
        quad = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], np.float32)
        cq = c[:4]
        cols = [b.array(cq.astype(np.float32), FLOAT, "VEC3") for _ in range(2)]
        prims = [b.primitive(quad, None, color=cols[0], mode=5), b.primitive(quad, None, color=cols[1], mode=6)]
        faces = np.array([[0, 1, 2], [1, 3, 2], [5, 6, 4], [6, 7, 4]])
        return b.save(tmp_path / "m.glb", [prims]), np.concatenate([quad, quad]), faces, srgb(np.concatenate([cq, cq]))
    if case == "sparse":  # COLOR_0 with no buffer view (zeros) and two rows given by a sparse substitution
        rows = np.array([1, 4], np.uint16)
        values = c[rows].astype(np.float32)
        sparse = pygltflib.Sparse(count=2, indices=pygltflib.AccessorSparseIndices(
            bufferView=b.view(rows.tobytes()), componentType=USHORT), values=pygltflib.AccessorSparseValues(
            bufferView=b.view(values.tobytes())))
        prim = b.primitive(v, f, color=b.accessor(len(v), FLOAT, "VEC3", sparse=sparse))
        want = np.zeros_like(c)
        want[rows] = values
        return b.save(tmp_path / "m.glb", [[prim]]), v, f, srgb(want)
    if case == "nodes":
        # two meshes, each with its own material and primitive. Node 0: translate (1, 2, 3), a quarter turn about +Y
        # (quaternion (0, sin 45, 0, cos 45)), scale 2; its child node 1 (mesh 0) translates by (0, 0, 1) through a
        # column-major matrix. Node 2 (mesh 1): mirror x (scale -1, 1, 1), which reverses the winding.
        c2 = colours(len(v), seed=1)[:, :3]
        m0 = [b.primitive(v, f, color=b.array(c.astype(np.float32), FLOAT, "VEC3"), material=b.material())]
        m1 = [b.primitive(v, f, color=b.array(c2.astype(np.float32), FLOAT, "VEC3"), material=b.material())]
        s = np.sqrt(0.5)
        child = np.eye(4)
        child[2, 3] = 1.0
        nodes = [pygltflib.Node(translation=[1.0, 2.0, 3.0], rotation=[0.0, s, 0.0, s], scale=[2.0, 2.0, 2.0],
                                children=[1]),
                 pygltflib.Node(mesh=0, matrix=child.T.reshape(-1).tolist()),
                 pygltflib.Node(mesh=1, scale=[-1.0, 1.0, 1.0])]
        R = np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]], np.float64)  # x -> -z, z -> x: a quarter turn about +Y
        v0 = (2 * (v + [0, 0, 1])) @ R.T + [1, 2, 3]
        v1 = v * [-1, 1, 1]
        faces = np.concatenate([f, f[:, [0, 2, 1]] + len(v)])
        return b.save(tmp_path / "m.glb", [m0, m1], nodes), np.concatenate([v0, v1]), faces, \
            srgb(np.concatenate([c, c2]))
    if case == "gltf-external-bin":  # a .gltf with its buffer in a .bin beside it
        prim = b.primitive(v, f, color=b.array(c.astype(np.float32), FLOAT, "VEC3"))
        glb = b.save(tmp_path / "m.glb", [[prim]])
        g = pygltflib.GLTF2().load(str(glb))
        (tmp_path / "m.bin").write_bytes(g.binary_blob())
        g.buffers[0].uri = "m.bin"
        g.save_json(str(tmp_path / "m.gltf"))
        return tmp_path / "m.gltf", v, f, srgb(c)
    raise ValueError(case)


@pytest.mark.parametrize("case", ["interleaved", "u8-indices", "u16-indices", "non-indexed", "strip-and-fan", "sparse",
                                  "nodes", "gltf-external-bin"])
def test_hand_built_glb_structures(tmp_path, case):
    path, v, f, want = _structure(tmp_path, case)
    m = load_mesh(path)
    torch.testing.assert_close(m.vertices, torch.as_tensor(v, dtype=torch.float32))
    assert torch.equal(m.faces, torch.as_tensor(f, dtype=torch.int64))
    assert np.abs(m.vertex_colors.numpy() - want).max() <= TOL


def test_base_color_factor_multiplies_color_0_and_colours_a_plain_primitive(tmp_path):
    # final base colour = COLOR_0 x baseColorFactor, both linear (glTF 2.0, Sec. 3.9.2); a primitive without COLOR_0
    # shows its factor
    v, f = octahedron()
    c = colours(len(v))[:, :3]
    b = Glb()
    factor = [0.5, 0.25, 1.0, 1.0]
    prims = [b.primitive(v, f, color=b.array(c.astype(np.float32), FLOAT, "VEC3"), material=b.material(factor)),
             b.primitive(v, f, material=b.material(factor))]
    m = load_mesh(b.save(tmp_path / "m.glb", [prims]))
    want = srgb(np.concatenate([c * factor[:3], np.tile(factor[:3], (len(v), 1))]))
    assert np.abs(m.vertex_colors.numpy() - want).max() <= TOL


@pytest.mark.parametrize("suffix", [".glb", ".ply", ".obj"])
def test_trimesh_exports_come_back_as_written(tmp_path, suffix):
    import trimesh

    v, f = octahedron()
    q = np.round(colours(len(v)) * 255).astype(np.uint8)
    trimesh.Trimesh(v, f, vertex_colors=q, process=False).export(tmp_path / f"m{suffix}")
    m = load_mesh(tmp_path / f"m{suffix}")
    torch.testing.assert_close(m.vertices, torch.as_tensor(v))
    assert np.abs(m.vertex_colors.numpy() - q[:, :3] / 255).max() <= TOL


@pytest.mark.parametrize("suffix", [".ply", ".obj"])
def test_hand_written_float_colours_in_ply_and_obj(tmp_path, suffix):
    v, f = octahedron()
    c = colours(len(v))[:, :3]
    rows = [" ".join(f"{x:.6f}" for x in (*p, *k)) for p, k in zip(v, c)]
    if suffix == ".ply":
        head = ["ply", "format ascii 1.0", f"element vertex {len(v)}", *(f"property float {n}" for n in
                "x y z red green blue".split()), f"element face {len(f)}", "property list uchar int vertex_indices",
                "end_header"]
        text = head + rows + [f"3 {a} {b} {c_}" for a, b, c_ in f]
    else:
        text = [f"v {r}" for r in rows] + [f"f {a + 1} {b + 1} {c_ + 1}" for a, b, c_ in f]
    (tmp_path / f"m{suffix}").write_text("\n".join(text) + "\n")
    m = load_mesh(tmp_path / f"m{suffix}")
    torch.testing.assert_close(m.vertices, torch.as_tensor(v))
    assert np.abs(m.vertex_colors.numpy() - c).max() <= TOL  # trimesh rounds to bytes: within half a step


@pytest.mark.parametrize("suffix", [".glb", ".ply", ".obj"])
def test_save_mesh_round_trip(tmp_path, suffix):
    v, f = octahedron()
    c = colours(len(v))[:, :3]
    save_mesh(Mesh(torch.as_tensor(v), torch.as_tensor(f), vertex_colors=torch.as_tensor(c, dtype=torch.float32)),
              tmp_path / f"m{suffix}")
    m = load_mesh(tmp_path / f"m{suffix}")
    torch.testing.assert_close(m.vertices, torch.as_tensor(v))
    assert np.abs(m.vertex_colors.numpy() - c).max() <= TOL


def _animation(mesh):
    from v2m4.types import Animation

    return Animation(mesh, torch.stack([mesh.vertices, mesh.vertices * 1.1]), torch.tensor([0.0, 0.5]),
                     torch.tensor([0, 1]))


def test_own_glb_exporter_round_trip(tmp_path):
    # write_glb stores COLOR_0 linear as FLOAT; the rest pose comes back, morph targets aside
    from v2m4.export.gltf import write_glb

    v, f = octahedron()
    c = colours(len(v))[:, :3]
    write_glb(tmp_path / "a.glb", _animation(Mesh(torch.as_tensor(v), torch.as_tensor(f),
                                                  vertex_colors=torch.as_tensor(c, dtype=torch.float32))))
    m = load_mesh(tmp_path / "a.glb")
    torch.testing.assert_close(m.vertices, torch.as_tensor(v))
    assert torch.equal(m.faces, torch.as_tensor(f))
    assert np.abs(m.vertex_colors.numpy() - c).max() <= TOL


@pytest.mark.parametrize("writer", ["save_mesh", "write_glb"])
def test_textured_glb_keeps_uv_and_texture(tmp_path, writer):
    from v2m4.export.gltf import write_glb

    v, f = octahedron()
    rng = np.random.default_rng(2)
    uv = torch.as_tensor(rng.uniform(0.1, 0.9, (len(v), 2)), dtype=torch.float32)
    tex = torch.as_tensor(rng.integers(0, 256, (8, 8, 3)) / 255, dtype=torch.float32)
    mesh = Mesh(torch.as_tensor(v), torch.as_tensor(f), uv=uv, texture=tex)
    if writer == "save_mesh":
        save_mesh(mesh, tmp_path / "t.glb")
    else:
        write_glb(tmp_path / "t.glb", _animation(mesh))
    m = load_mesh(tmp_path / "t.glb")
    torch.testing.assert_close(m.vertices, mesh.vertices)
    torch.testing.assert_close(m.uv, uv, atol=1e-6, rtol=0)
    assert m.texture.shape == tex.shape and (m.texture - tex).abs().max() <= TOL
    assert m.vertex_colors is None


def test_mesh_without_appearance_has_no_colours(tmp_path):
    from v2m4.export.gltf import write_glb

    v, f = octahedron()
    write_glb(tmp_path / "plain.glb", _animation(Mesh(torch.as_tensor(v), torch.as_tensor(f))))
    b = Glb()
    b.save(tmp_path / "hand.glb", [[b.primitive(v, f, material=b.material())]])
    for name in ("plain.glb", "hand.glb"):
        m = load_mesh(tmp_path / name)
        assert m.vertex_colors is None and m.texture is None
        torch.testing.assert_close(m.vertices, torch.as_tensor(v))


@pytest.mark.parametrize("case,match", [
    ("garbage", "cannot read mesh"),
    ("indices", "indices up to 9 but 6 vertices"),
    ("short-view", "reads past the end of its buffer view"),
    ("draco", "KHR_draco_mesh_compression"),
    ("points", "has no triangles"),
])
def test_broken_gltf_gives_one_line(tmp_path, case, match):
    v, f = octahedron()
    b = Glb()
    if case == "garbage":
        path = tmp_path / "m.glb"
        path.write_bytes(b"glTF\x02\x00\x00\x00garbage")
    else:
        prim = b.primitive(v, f, mode=0 if case == "points" else 4)
        if case == "indices":
            prim.indices = b.array(np.array([0, 1, 9], np.uint32), UINT, "SCALAR")
        if case == "short-view":
            b.g.accessors[prim.attributes.POSITION].count = len(v) + 5
        if case == "draco":
            b.g.extensionsUsed = b.g.extensionsRequired = ["KHR_draco_mesh_compression"]
        path = b.save(tmp_path / "m.glb", [[prim]])
    with pytest.raises(V2M4Error, match=match) as e:
        load_mesh(path)
    assert "\n" not in str(e.value)
