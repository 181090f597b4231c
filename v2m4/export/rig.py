"""A rig from a vertex animation: the skinning decomposition (``v2m4.export.skinning``) with its bones joined into
a hierarchy, written as a skinned GLB an animator can pose (``v2m4 run --rig [N]``).

Hierarchy: two bones are *adjacent* when some vertex is weighted to both or (given the faces) a mesh edge joins
their regions. For every pair the *pivot* is the point the two bones' transforms move the most alike over the clip
(least squares over frames, pulled weakly towards the centre of their shared region), and its *residual* the RMS
distance, over the frames, between where the two bones take it: small for a real articulation. The tree is the
minimum spanning tree (Kruskal) over adjacent pairs by residual + centre distance (both in bounding-box diagonals);
non-adjacent pairs only join what adjacency leaves apart. The root is the bone whose centre (weighted mean of its
rest vertices) lies nearest the centre of the rest mesh's bounding box (not its vertex centroid, which a densely
meshed head pulls up to the neck); each other bone's joint sits at its pivot with its parent.

glTF contract (``write_rigged_glb``): joint b's bind pose is a translation to its joint position j_b (no rotation),
so its inverse bind matrix is the translation by -j_b; its global transform at frame t is G_tb = M_tb T(j_b), with
M_tb = (R_tb, t_tb) the bone transform of the decomposition, and its animated local TRS is G_t,parent^-1 G_tb. The
skinning matrix G_tb T(-j_b) is then M_tb exactly: the pose equals the flat decomposition's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .skinning import Skinning, _quaternions, decompose, skin_vertices

# Default --rig bone count (the CLI's --rig without N too). Measured on the bench's ground-truth sequences (12 frames,
# bench/results/rig_compare.md): at 16 every skeletal clip fits within 0.8% RMS of the diagonal but one's max error
# is 5.7%; 32 halves the error again and keeps every skeletal clip's max under 5%, at 1.5-2x the time and memory
# (V x B x T x 3 doubles per iteration). A shape that morphs without a skeleton fits no bone count well.
DEFAULT_BONES = 32      # the first bone count tried; ``AUTO_BONES`` grows it where the motion needs more
AUTO_BONES = -1         # "as many bones as the fit needs": DEFAULT_BONES, then BONE_STEP more at a time up to
BONE_STEP = 16          # MAX_BONES, until the rig's RMS error is at most TARGET_RMS of the bounding-box diagonal
MAX_BONES = 64          # and its largest error at most TARGET_MAX (measured: docs/calibration.md, "Rig")
TARGET_RMS = 0.01
TARGET_MAX = 0.05


@dataclass
class Rig:
    skinning: Skinning     # weights (V, B), bone transforms (T, B) in the rest frame
    rest: Tensor           # (V, 3) float64, the bind pose
    parents: list[int]     # parents[b]: b's parent bone, -1 for the single root
    joints: Tensor         # (B, 3) joint positions in the bind pose
    centres: Tensor        # (B, 3) weighted centres of each bone's rest vertices
    method: str = "ours"

    @property
    def root(self) -> int:
        return self.parents.index(-1)

    def order(self) -> list[int]:
        """Bones parents-first (breadth-first from the root)."""
        kids = children(self.parents)
        out = [self.root]
        for b in out:
            out += kids[b]
        return out


def children(parents: list[int]) -> list[list[int]]:
    kids: list[list[int]] = [[] for _ in parents]
    for b, p in enumerate(parents):
        if p >= 0:
            kids[p].append(b)
    return kids


def bone_centres(weights: Tensor, rest: Tensor) -> Tensor:
    """(B, 3) weighted mean of the rest vertices of each bone (the mesh centroid for a bone with no weight)."""
    ws = weights.sum(0)
    c = (weights.T @ rest) / ws.clamp_min(1e-12)[:, None]
    return torch.where(ws[:, None] > 1e-12, c, rest.mean(0, keepdim=True))


def pivots(sk: Skinning, rest: Tensor, reg: float = 1e-2) -> tuple[Tensor, Tensor]:
    """(B, B, 3) pivot of every bone pair and (B, B) its residual (in units of length; see module docstring)."""
    W = sk.weights
    S = W.T @ W                                                                # (B, B) shared weight
    shared = torch.einsum("va,vb,vi->abi", W, W, rest) / S.clamp_min(1e-12)[..., None]
    c = bone_centres(W, rest)
    mid = (c[:, None] + c[None]) / 2
    m = torch.where(S[..., None] > 1e-12, shared, mid)
    A = sk.rotations[:, :, None] - sk.rotations[:, None]                       # (T, B, B, 3, 3)
    bt = sk.translations[:, :, None] - sk.translations[:, None]                # (T, B, B, 3)
    T = A.shape[0]
    eye = torch.eye(3, dtype=A.dtype)
    M = torch.einsum("tabki,tabkj->abij", A, A) + reg * T * eye
    rhs = -torch.einsum("tabki,tabk->abi", A, bt) + reg * T * m
    p = torch.linalg.solve(M, rhs[..., None])[..., 0]
    res = (torch.einsum("tabij,abj->tabi", A, p) + bt).pow(2).sum(-1).mean(0).sqrt()
    return p, res


def adjacency(weights: Tensor, faces: Tensor | None = None) -> Tensor:
    """(B, B) bool: bones sharing a weighted vertex, or (with faces) whose dominant regions share a mesh edge."""
    nz = (weights > 1e-6).double()
    adj = (nz.T @ nz) > 0
    if faces is not None and faces.numel():
        dom = weights.argmax(1)
        f = faces.long().cpu()
        e = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
        a, b = dom[e[:, 0]], dom[e[:, 1]]
        adj[a, b] = True
        adj[b, a] = True
    adj.fill_diagonal_(False)
    return adj


def hierarchy(sk: Skinning, rest: Tensor, faces: Tensor | None = None) -> tuple[list[int], Tensor, Tensor]:
    """parents (B,) with one -1, joint positions (B, 3), centres (B, 3) (see module docstring)."""
    rest = rest.double()
    B = sk.weights.shape[1]
    c = bone_centres(sk.weights, rest)
    diag = float((rest.amax(0) - rest.amin(0)).norm()) or 1.0
    if B == 1:
        return [-1], c.clone(), c
    p, res = pivots(sk, rest)
    adj = adjacency(sk.weights, faces)
    cost = (res + torch.cdist(c, c)) / diag + 10.0 * (~adj).double()
    pairs = sorted((float(cost[a, b]), a, b) for a in range(B) for b in range(a + 1, B))
    comp = list(range(B))

    def find(x):
        while comp[x] != x:
            comp[x] = comp[comp[x]]
            x = comp[x]
        return x

    nbr: list[list[int]] = [[] for _ in range(B)]
    for _, a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            comp[ra] = rb
            nbr[a].append(b)
            nbr[b].append(a)
    root = int((c - (rest.amax(0) + rest.amin(0)) / 2).norm(dim=1).argmin())  # bounding-box centre
    parents = [-2] * B
    parents[root] = -1
    joints = c.clone()
    queue = [root]
    for a in queue:
        for b in nbr[a]:
            if parents[b] == -2:
                parents[b] = a
                joints[b] = p[a, b]
                queue.append(b)
    return parents, joints, c


def fit_rig(rest: Tensor, vertices: Tensor, *, n_bones: int = DEFAULT_BONES, faces: Tensor | None = None,
            method: str = "ours", seed: int = 0) -> Rig:
    """Decompose (T, V, 3) vertices over the (V, 3) rest pose into a rig. method: "ours" (``skinning.decompose``)
    or "dem-bones" (py-dem-bones, optional: ``pip install py-dem-bones``)."""
    t0 = time.perf_counter()
    rest64 = rest.detach().double().cpu()
    if method == "ours":
        sk = decompose(rest64, vertices.detach(), n_bones=n_bones, seed=seed)
    elif method == "dem-bones":
        sk = dem_bones_decompose(rest64, vertices.detach().double().cpu(), n_bones, faces)
    else:
        raise ValueError(f"unknown rig method {method!r}; choose ours or dem-bones")
    parents, joints, centres = hierarchy(sk, rest64, faces)
    sk.seconds = time.perf_counter() - t0
    return Rig(sk, rest64, parents, joints, centres, method)


def _nearest_rotation(M: Tensor) -> Tensor:
    U, _, Vh = torch.linalg.svd(M)
    d = torch.sign(torch.det(U @ Vh))
    D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    return U @ D @ Vh


def dem_bones_decompose(rest: Tensor, verts: Tensor, n_bones: int, faces: Tensor | None) -> Skinning:
    """The same contract as ``skinning.decompose`` through py-dem-bones' ``solve_skinning`` (rigid bones, <= 4
    influences, 30 iterations; it needs the faces). Its rotations are projected onto SO(3) (a TRS rig needs them
    rigid) and the error is measured after that."""
    from py_dem_bones import solve_skinning

    if faces is None:
        raise ValueError("dem-bones needs the mesh faces")
    r = solve_skinning(rest.numpy(), verts.numpy(), n_bones, faces=faces.long().cpu().numpy(), max_influences=4)
    m = torch.from_numpy(r.transforms)
    sk = Skinning(torch.from_numpy(r.weights.T).clamp_min(0), _nearest_rotation(m[..., :3, :3]), m[..., :3, 3].clone(),
                  0.0, 0.0, 0.0)
    sk.weights = sk.weights / sk.weights.sum(1, keepdim=True).clamp_min(1e-12)
    diag = float((verts.amax((0, 1)) - verts.amin((0, 1))).norm())
    e = (skin_vertices(sk, rest) - verts).norm(dim=-1)
    sk.rmse, sk.max_err = float(e.pow(2).mean().sqrt()) / diag, float(e.max()) / diag
    return sk


def local_transforms(rig: Rig) -> tuple[Tensor, Tensor]:
    """Per frame, each joint's rotation (T, B, 3, 3) and translation (T, B, 3) relative to its parent (the root's
    relative to the armature, i.e. global)."""
    R, t = rig.skinning.rotations, rig.skinning.translations
    g = torch.einsum("tbij,bj->tbi", R, rig.joints) + t                        # joint origins, global
    par = torch.tensor([max(p, 0) for p in rig.parents])
    Rp, gp = R[:, par], g[:, par]
    Rl = Rp.transpose(-1, -2) @ R
    tl = torch.einsum("tbji,tbj->tbi", Rp, g - gp)
    root = rig.root
    Rl[:, root], tl[:, root] = R[:, root], g[:, root]
    return Rl, tl


def rig_vertices(rig: Rig, Rl: Tensor | None = None, tl: Tensor | None = None) -> Tensor:
    """(T, V, 3) positions the rig gives, evaluated through the hierarchy: globals composed parent-first from the
    local transforms, skinning matrices G T(-j), linear blend."""
    if Rl is None or tl is None:
        Rl, tl = local_transforms(rig)
    Rg, g = torch.empty_like(Rl), torch.empty_like(tl)
    for b in rig.order():
        p = rig.parents[b]
        if p < 0:
            Rg[:, b], g[:, b] = Rl[:, b], tl[:, b]
        else:
            Rg[:, b] = Rg[:, p] @ Rl[:, b]
            g[:, b] = torch.einsum("tij,tj->ti", Rg[:, p], tl[:, b]) + g[:, p]
    trans = g - torch.einsum("tbij,bj->tbi", Rg, rig.joints)
    return skin_vertices(Skinning(rig.skinning.weights, Rg, trans, 0.0, 0.0, 0.0), rig.rest)


def rig_errors(animation, rig: Rig) -> dict:
    """The rig against the morph animation it was fitted to: bones, RMS and max vertex error over every frame and
    vertex as fractions of the animation's bounding-box diagonal (``rms_err``, ``max_err``), the fit's seconds."""
    verts = animation.vertices.detach().double().cpu()
    diag = float((verts.amax((0, 1)) - verts.amin((0, 1))).norm()) or 1.0
    e = (rig_vertices(rig) - verts).norm(dim=-1)
    return {"bones": int(rig.skinning.weights.shape[1]), "rms_err": float(e.pow(2).mean().sqrt()) / diag,
            "max_err": float(e.max()) / diag, "seconds": rig.skinning.seconds}


def _continuous(q: np.ndarray) -> np.ndarray:
    """(T, B, 4) quaternions with each sign chosen nearest the previous frame's (slerp then takes the short way)."""
    q = q.copy()
    for t in range(1, len(q)):
        flip = (q[t] * q[t - 1]).sum(-1) < 0
        q[t, flip] *= -1
    return q


def _ibm(joints: np.ndarray) -> np.ndarray:
    """(B, 16) column-major inverse bind matrices: translations by -j."""
    m = np.tile(np.eye(4, dtype=np.float32), (len(joints), 1, 1))
    m[:, :3, 3] = -joints
    return m.transpose(0, 2, 1).reshape(-1, 16)


def _joint_nodes(rig: Rig, name: str, first: int) -> list[dict]:
    j = rig.joints.numpy()
    kids = children(rig.parents)
    nodes = []
    for b, p in enumerate(rig.parents):
        node = {"name": f"{name}_bone_{b:02d}", "translation": [float(x) for x in (j[b] - (j[p] if p >= 0 else 0))]}
        if kids[b]:
            node["children"] = [first + k for k in kids[b]]
        nodes.append(node)
    return nodes


def write_rigged_glb(path, mesh, rig: Rig, times, *, name: str = "v2m4") -> dict:
    """A skinned GLB of the rig: the rest mesh with JOINTS_0/WEIGHTS_0 (<= 4 influences), joint nodes nested by the
    hierarchy under one armature node, inverse bind matrices, and one animation of the joints' local translation and
    rotation sampled at ``times`` (T,) seconds. Returns bytes and bones."""
    from .gltf import ELEMENT_ARRAY_BUFFER, _Buffers, _write, joint_animation
    from .skinning import to_gltf

    times = np.asarray(times, dtype=np.float64)
    if len(times) > 1 and bool((np.diff(times) <= 0).any()):
        raise ValueError("animation times must increase strictly (glTF samplers require it)")
    times = (times - times[0]).astype(np.float32)
    B = rig.skinning.weights.shape[1]
    skin = to_gltf(rig.skinning)
    b = _Buffers()
    gltf: dict = {"asset": {"version": "2.0", "generator": "v2m4"}, "scene": 0}
    attrs = _mesh_attributes(b, gltf, mesh, name)
    attrs["JOINTS_0"] = b.accessor(skin["joints"].astype(np.uint16), "VEC4")
    attrs["WEIGHTS_0"] = b.accessor(skin["weights"].astype(np.float32), "VEC4")
    faces = mesh.faces.detach().cpu().numpy().astype(np.uint32).reshape(-1)
    prim = {"attributes": attrs, "indices": b.accessor(faces, "SCALAR", target=ELEMENT_ARRAY_BUFFER),
            "material": 0, "mode": 4}
    gltf["meshes"] = [{"name": name, "primitives": [prim]}]
    gltf["nodes"] = [{"name": name, "mesh": 0, "skin": 0}, {"name": f"{name}_armature", "children": [2 + rig.root]}]
    gltf["nodes"] += _joint_nodes(rig, name, 2)
    gltf["scenes"] = [{"name": name, "nodes": [0, 1]}]
    gltf["skins"] = [{"name": f"{name}_skin", "joints": list(range(2, 2 + B)), "skeleton": 2 + rig.root,
                      "inverseBindMatrices": b.accessor(_ibm(rig.joints.numpy()), "MAT4", target=None)}]
    if len(times) > 1:
        Rl, tl = local_transforms(rig)
        tr = tl.float().numpy()
        rot = _continuous(_quaternions(Rl).float().numpy())
        gltf["animations"] = [joint_animation(b, times, tr, rot, 2, f"{name}_rig")]
    return {"bytes": _write(path, gltf, b), "bones": B}


def _mesh_attributes(b, gltf: dict, mesh, name: str) -> dict:
    """POSITION, NORMAL and the texture (TEXCOORD_0 + image) or COLOR_0, and the material, into gltf."""
    from .gltf import mesh_attributes

    rest = mesh.vertices.detach().cpu().double().numpy()
    faces = mesh.faces.detach().cpu().numpy().astype(np.int64)
    return mesh_attributes(b, gltf, mesh, rest, faces, name)


def write_rig(path: str | Path, anim, bones: int | None = None) -> dict:
    """``v2m4 run --rig [N]``: fit a rig to the animation (N bones; None or ``AUTO_BONES``: as many as reach
    ``TARGET_RMS`` and ``TARGET_MAX``, from DEFAULT_BONES to MAX_BONES), write it as a skinned GLB, and its report entry (bones,
    rms_err, max_err against the morph animation as fractions of the bounding-box diagonal, seconds, bytes, and the
    validator's counts when it is installed)."""
    from .validate import validate_glb, validator_available

    mesh = anim.mesh.to("cpu")
    auto = bones is None or bones == AUTO_BONES
    n = DEFAULT_BONES if auto else bones
    while True:
        rig = fit_rig(mesh.vertices, anim.vertices.cpu(), n_bones=n, faces=mesh.faces)
        report = rig_errors(anim, rig)
        met = report["rms_err"] <= TARGET_RMS and report["max_err"] <= TARGET_MAX
        if not auto or met or n >= MAX_BONES:
            break
        n = min(MAX_BONES, n + BONE_STEP)
    report["root"] = rig.root
    report["bytes"] = write_rigged_glb(path, mesh, rig, anim.times.cpu().numpy())["bytes"]
    if validator_available() is None:
        v = validate_glb(path)
        report["validator"] = {k: v[k] for k in ("errors", "warnings", "infos", "hints")}
    return report
