"""Animated GLB writer (Sec. 4.5), plain struct packing, no Blender.

Layout: one node, one mesh, one primitive (the rest mesh: POSITION, NORMAL, TEXCOORD_0 + the texture as PBR base
colour, or COLOR_0), one morph target per keyframe and one animation channel on the node's ``weights``.

Why targets hold ABSOLUTE offsets from the rest pose and the weights cross-fade: with target j = key_j - rest, the
weights (1 - u) on j and u on j + 1 give rest + (1 - u)(key_j - rest) + u(key_{j+1} - rest), exactly the linear
interpolation of the two keyframes, with at most two non-zero weights at any time. The official code switches
targets on cumulatively (t targets active at frame t); engines guarantee 8 (three.js blends 8 at most), which is
where long animations collapse. glTF's LINEAR sampler interpolates the weights between samples, so sampling only at
the keyframe times already yields the cross-fade everywhere in between: K samples of K weights.

Compact mode (``mode="pca"``): the offsets of every frame from the rest pose projected on their first K principal
components (K the smallest whose worst vertex error stays within ``pca_tol`` x the bounding-box diagonal), sampled
at every frame. Many weights are non-zero then, which engines blend fine for small K; it trades that for size.
"""

from __future__ import annotations

import io
import json
import os
import struct
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..errors import V2M4Error
from ..types import Animation

ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
FLOAT, UNSIGNED_INT, UNSIGNED_SHORT = 5126, 5125, 5123


class _Buffers:
    """Binary chunk, buffer views and accessors, each view 4-byte aligned (the spec's rule for float data)."""

    def __init__(self):
        self.blob = bytearray()
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def view(self, data: bytes, target: int | None = None) -> int:
        while len(self.blob) % 4:
            self.blob.append(0)
        v = {"buffer": 0, "byteOffset": len(self.blob), "byteLength": len(data)}
        if target is not None:
            v["target"] = target
        self.blob += data
        self.views.append(v)
        return len(self.views) - 1

    def accessor(self, array: np.ndarray, kind: str, *, target: int | None = ARRAY_BUFFER, minmax: bool = False) -> int:
        comp = {np.dtype(np.uint32): UNSIGNED_INT, np.dtype(np.uint16): UNSIGNED_SHORT}.get(array.dtype, FLOAT)
        a = np.ascontiguousarray(array, dtype={UNSIGNED_INT: np.uint32, UNSIGNED_SHORT: np.uint16, FLOAT: np.float32}[comp])
        acc = {"bufferView": self.view(a.tobytes(), target), "componentType": comp,
               "count": int(a.shape[0]), "type": kind}
        if minmax:
            flat = a.reshape(a.shape[0], -1)
            acc["min"] = [float(x) for x in flat.min(0)]
            acc["max"] = [float(x) for x in flat.max(0)]
        self.accessors.append(acc)
        return len(self.accessors) - 1


def _normals(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals; vertices on no face get +Y (the validator requires unit length).
    Copies of one point (the mesh is split at its uv seams) share the normal of every face around it, so an
    engine's lighting shows no seam where the texture has one."""
    t = v[f]
    fn = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])
    _, weld = np.unique(v, axis=0, return_inverse=True)
    weld = weld.reshape(-1)
    idx = weld[f.astype(np.int64)]
    n = np.stack([sum(np.bincount(idx[:, k], weights=fn[:, c], minlength=len(v)) for k in range(3))
                  for c in range(3)], -1)[weld]
    length = np.linalg.norm(n, axis=-1, keepdims=True)
    out = np.where(length > 1e-20, n / np.maximum(length, 1e-30), np.array([0.0, 1.0, 0.0]))
    return out.astype(np.float32)


def _png(texture: np.ndarray) -> bytes:
    from PIL import Image

    img = Image.fromarray((np.clip(texture, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 0, 1)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def crossfade_weights(n_targets: int) -> np.ndarray:
    """(K, K) weights sampled at the K keyframe times: the identity (keyframe j shows target j alone)."""
    return np.eye(n_targets, dtype=np.float32)


def pca_targets(offsets: np.ndarray, tol: float, diag: float) -> tuple[np.ndarray, np.ndarray, float]:
    """offsets (T, V, 3) -> targets (K, V, 3), weights (T, K), worst vertex error (fraction of diag).

    K is the smallest number of principal components whose reconstruction keeps every vertex of every frame within
    tol x diag. Computed through the T x T Gram matrix, so the cost is T^2 V, not a V-sized SVD.
    """
    T = offsets.shape[0]
    D = torch.from_numpy(offsets.reshape(T, -1)).double()
    evals, evecs = torch.linalg.eigh(D @ D.T)
    order = torch.argsort(evals, descending=True)
    evals, evecs = evals[order].clamp_min(0), evecs[:, order]
    rank = int((evals > evals[0] * 1e-14).sum()) if T and float(evals[0]) > 0 else 0

    def fit(k):
        U = evecs[:, :k]  # (T, k) orthonormal: weights; targets = U^T D
        B = U.T @ D
        err = (U @ B - D).reshape(T, -1, 3).norm(dim=-1).max() / max(diag, 1e-30) if k else \
            D.reshape(T, -1, 3).norm(dim=-1).max() / max(diag, 1e-30)
        return U, B, float(err)

    lo, hi = 0, max(rank, 0)
    while lo < hi:  # the error falls with k: the smallest k within tol by bisection
        mid = (lo + hi) // 2
        if fit(mid)[2] <= tol:
            hi = mid
        else:
            lo = mid + 1
    U, B, err = fit(max(lo, 1) if rank else 0)
    V = offsets.shape[1]
    return B.reshape(-1, V, 3).float().numpy(), U.float().numpy(), err


def _check(anim: Animation) -> None:
    v = anim.vertices
    if not bool(torch.isfinite(v).all()) or not bool(torch.isfinite(anim.mesh.vertices).all()):
        raise V2M4Error("animation has non-finite vertex positions; nothing written")
    if anim.mesh.faces.numel() == 0:
        raise V2M4Error("animation mesh has no faces; nothing written")
    k = anim.keyframes
    if k.numel() == 0 or int(k.min()) < 0 or int(k.max()) >= len(anim) or bool((k[1:] <= k[:-1]).any()):
        raise V2M4Error(f"keyframes must be strictly increasing indices into the {len(anim)} frames")
    if bool((anim.times[1:] <= anim.times[:-1]).any()):
        raise V2M4Error("animation times must increase strictly (glTF samplers require it)")


def mesh_attributes(b: "_Buffers", gltf: dict, mesh, rest: np.ndarray, faces: np.ndarray, name: str) -> dict:
    """A primitive's POSITION and NORMAL of ``rest`` (V, 3), and the mesh's appearance: its texture (TEXCOORD_0, the
    PNG image, a clamped linear sampler) or its vertex colours (COLOR_0, linear), with the one material
    (``gltf["materials"][0]``: unlit-looking, rough, double-sided) that every primitive we write uses."""
    attrs = {"POSITION": b.accessor(rest, "VEC3", minmax=True), "NORMAL": b.accessor(_normals(rest, faces), "VEC3")}
    material = {"name": f"{name}_material", "pbrMetallicRoughness": {"metallicFactor": 0.0, "roughnessFactor": 1.0},
                "doubleSided": True}
    if mesh.uv is not None and mesh.texture is not None:
        attrs["TEXCOORD_0"] = b.accessor(mesh.uv.detach().cpu().numpy(), "VEC2")
        gltf["images"] = [{"name": f"{name}_basecolor", "mimeType": "image/png",
                           "bufferView": b.view(_png(mesh.texture.detach().cpu().numpy()))}]
        gltf["samplers"] = [{"magFilter": 9729, "minFilter": 9729, "wrapS": 33071, "wrapT": 33071}]
        gltf["textures"] = [{"sampler": 0, "source": 0}]
        material["pbrMetallicRoughness"]["baseColorTexture"] = {"index": 0}
    elif mesh.vertex_colors is not None:
        attrs["COLOR_0"] = b.accessor(_srgb_to_linear(mesh.vertex_colors.detach().cpu().numpy()), "VEC3")
    gltf["materials"] = [material]
    return attrs


def joint_animation(b: "_Buffers", times: np.ndarray, translations: np.ndarray, rotations: np.ndarray, first: int,
                    name: str) -> dict:
    """One glTF animation moving joint nodes first, first + 1, ...: translations (T, B, 3) and rotations (T, B, 4)
    (x, y, z, w) sampled at times (T,) seconds, linearly interpolated."""
    t_acc = b.accessor(times, "SCALAR", target=None, minmax=True)
    samplers, channels = [], []
    for j in range(translations.shape[1]):
        for path, data, kind in (("translation", translations[:, j], "VEC3"), ("rotation", rotations[:, j], "VEC4")):
            samplers.append({"input": t_acc, "output": b.accessor(data, kind, target=None), "interpolation": "LINEAR"})
            channels.append({"sampler": len(samplers) - 1, "target": {"node": first + j, "path": path}})
    return {"name": name, "samplers": samplers, "channels": channels}


def write_glb(path: str | os.PathLike, anim: Animation, *, mode: str = "targets", pca_tol: float = 1e-3,
              name: str = "v2m4") -> dict:
    """Write ``anim`` as a GLB (atomically: a temp file renamed into place). Returns stats: bytes, targets,
    mode, and for PCA the worst vertex error as a fraction of the bounding-box diagonal.

    mode "targets": one morph target per keyframe (anim.keyframes); frames between keyframes play as the linear
    interpolation of their two keyframes. mode "pca": a compact basis sampled at every frame.
    """
    if mode not in ("targets", "pca"):
        raise V2M4Error(f"unknown GLB mode {mode!r}; choose targets or pca")
    _check(anim)
    mesh = anim.mesh
    rest = mesh.vertices.detach().cpu().double().numpy()
    faces = mesh.faces.detach().cpu().numpy().astype(np.uint32)
    frames = anim.vertices.detach().cpu().double().numpy()
    times = anim.times.detach().cpu().double().numpy()
    times = times - times[0]
    diag = float(np.linalg.norm(frames.max((0, 1)) - frames.min((0, 1))))
    stats: dict = {"mode": mode}

    if mode == "targets":
        key = anim.keyframes.cpu().numpy()
        offsets = frames[key] - rest[None]
        weights = crossfade_weights(len(key))
        sample_times = times[key]
        normal_offsets = np.stack([_normals(frames[k], faces) for k in key]) - _normals(rest, faces)[None]
        target_names = [f"frame_{int(k):04d}" for k in key]
    else:
        offsets, weights, err = pca_targets(frames - rest[None], pca_tol, diag)
        sample_times = times
        # normals follow the same weights: their targets are the least-squares fit to every frame's normals
        n_all = np.stack([_normals(f, faces) for f in frames]) - _normals(rest, faces)[None]
        sol = np.linalg.lstsq(weights.astype(np.float64), n_all.reshape(len(frames), -1), rcond=None)[0]
        normal_offsets = sol.reshape(len(offsets), -1, 3) if len(offsets) else np.zeros((0,) + rest.shape)
        target_names = [f"pc_{k:03d}" for k in range(len(offsets))]
        stats["pca_max_err"] = err
    stats["targets"] = len(offsets)

    b = _Buffers()
    gltf: dict = {"asset": {"version": "2.0", "generator": "v2m4"}, "scene": 0,
                  "scenes": [{"name": name, "nodes": [0]}]}
    attrs = mesh_attributes(b, gltf, mesh, rest, faces, name)
    targets = [{"POSITION": b.accessor(o, "VEC3", minmax=True), "NORMAL": b.accessor(n, "VEC3")}
               for o, n in zip(offsets, normal_offsets)]
    prim = {"attributes": attrs, "indices": b.accessor(faces.reshape(-1), "SCALAR", target=ELEMENT_ARRAY_BUFFER,
                                                       minmax=False), "material": 0, "mode": 4}
    mesh_obj: dict = {"name": name, "primitives": [prim]}
    if targets:
        prim["targets"] = targets
        mesh_obj["weights"] = [0.0] * len(targets)
        mesh_obj["extras"] = {"targetNames": target_names}
    gltf["meshes"] = [mesh_obj]
    gltf["nodes"] = [{"name": name, "mesh": 0}]
    if targets and len(sample_times) > 1:
        t_acc = b.accessor(sample_times.astype(np.float32), "SCALAR", target=None, minmax=True)
        w_acc = b.accessor(weights.reshape(-1).astype(np.float32), "SCALAR", target=None)
        gltf["animations"] = [{"name": f"{name}_animation",
                               "samplers": [{"input": t_acc, "output": w_acc, "interpolation": "LINEAR"}],
                               "channels": [{"sampler": 0, "target": {"node": 0, "path": "weights"}}]}]
    stats["bytes"] = _write(path, gltf, b)
    return stats


def _write(path, gltf: dict, b: _Buffers) -> int:
    gltf["accessors"] = b.accessors
    gltf["bufferViews"] = b.views
    while len(b.blob) % 4:
        b.blob.append(0)
    gltf["buffers"] = [{"byteLength": len(b.blob)}]
    js = json.dumps(gltf, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    total = 12 + 8 + len(js) + 8 + len(b.blob)
    data = b"".join([struct.pack("<III", 0x46546C67, 2, total), struct.pack("<II", len(js), 0x4E4F534A), js,
                     struct.pack("<II", len(b.blob), 0x004E4942), bytes(b.blob)])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; an exported asset is for sharing
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return len(data)


def write_skinned_glb(path: str | os.PathLike, mesh, skin: dict, times, *, name: str = "v2m4") -> dict:
    """Experimental skinned GLB: ``skin`` from ``v2m4.export.skinning.to_gltf`` (identity inverse bind matrices,
    joints at the origin in the bind pose, so each joint's animated TRS is its bone transform), one joint node per
    bone under one armature node, translation + rotation channels sampled at ``times`` (T,) seconds."""
    rest = mesh.vertices.detach().cpu().double().numpy()
    faces = mesh.faces.detach().cpu().numpy().astype(np.uint32)
    times = np.asarray(times, dtype=np.float64)
    if len(times) > 1 and bool((np.diff(times) <= 0).any()):
        raise V2M4Error("animation times must increase strictly (glTF samplers require it)")
    times = (times - times[0]).astype(np.float32)
    B = skin["translations"].shape[1]
    b = _Buffers()
    gltf: dict = {"asset": {"version": "2.0", "generator": "v2m4"}, "scene": 0}
    attrs = mesh_attributes(b, gltf, mesh, rest, faces, name)
    attrs["JOINTS_0"] = b.accessor(skin["joints"].astype(np.uint16), "VEC4")
    attrs["WEIGHTS_0"] = b.accessor(skin["weights"].astype(np.float32), "VEC4")
    prim = {"attributes": attrs, "indices": b.accessor(faces.reshape(-1), "SCALAR", target=ELEMENT_ARRAY_BUFFER),
            "material": 0, "mode": 4}
    tr, rot = skin["translations"], skin["rotations"]
    joints = [{"name": f"bone_{j:02d}", "translation": [float(x) for x in tr[0, j]],
               "rotation": [float(x) for x in rot[0, j]]} for j in range(B)]
    gltf["nodes"] = [{"name": name, "mesh": 0, "skin": 0}, {"name": f"{name}_armature",
                                                            "children": list(range(2, 2 + B))}] + joints
    gltf["scenes"] = [{"name": name, "nodes": [0, 1]}]
    ibm = np.tile(np.eye(4, dtype=np.float32).reshape(1, 16), (B, 1))
    gltf["skins"] = [{"name": f"{name}_skin", "joints": list(range(2, 2 + B)), "skeleton": 1,
                      "inverseBindMatrices": b.accessor(ibm, "MAT4", target=None)}]
    gltf["meshes"] = [{"name": name, "primitives": [prim]}]
    if len(times) > 1:
        gltf["animations"] = [joint_animation(b, times, tr, rot, 2, f"{name}_skinned")]
    gltf["buffers"] = []
    return {"bytes": _write(path, gltf, b), "bones": B}
