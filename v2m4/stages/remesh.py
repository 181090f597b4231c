"""Isotropic remeshing of the rest mesh (ours, beyond the paper).

Generators emit meshes simplified by quadric decimation, full of slivers (triangles of quality < 0.1, where 1 is
equilateral; figures in docs/calibration.md). Slivers are what registration folds first: nearly all the triangles
it flips are slivers. The rest mesh fixes the topology of the whole animation, so it is the one
place where remeshing pays: every later frame, the texture atlas and the exported file inherit well-shaped triangles.
We use Botsch & Kobbelt's isotropic remeshing from ``gpytoolbox`` at the mesh's own median edge length, so the
resolution stays what the generator chose.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from scipy.spatial import cKDTree

from ..errors import V2M4Error
from ..types import Mesh


def triangle_quality(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(F,) 4 sqrt(3) area / sum of squared edge lengths: 1 for equilateral, 0 for degenerate."""
    t = vertices[faces]
    e = torch.stack([t[:, 1] - t[:, 0], t[:, 2] - t[:, 1], t[:, 0] - t[:, 2]], 1)
    area = torch.linalg.cross(e[:, 0], -e[:, 2], dim=-1).norm(dim=-1) / 2
    return 4 * 3 ** 0.5 * area / (e * e).sum((1, 2)).clamp_min(1e-30)


# The remesher's normal cost here is seconds (4-5 s for a 4.5k-face output on a shared 2-core CPU, 10 passes); on
# some inputs it splits without end until the allocator gives up (measured: 212 s and a bad_alloc on one decimated
# 300k-face mesh). Both limits sit an order of magnitude above normal use and turn such a run into a quick failure,
# which the caller recovers from (registration falls back to Delaunay flips); see docs/calibration.md.
REMESH_SECONDS = 60.0
REMESH_BYTES = 4 * 2 ** 30

_CHILD = """
import resource, sys, numpy as np
limit = int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
import gpytoolbox
d = np.load(sys.argv[1])
deg = float(d["feature_deg"])
kw = dict(detect_feature_edges=True, feature_dihedral_threshold=deg) if deg > 0 else {}
V, F = gpytoolbox.remesh_botsch(d["V"], d["F"], i=int(d["iters"]), h=float(d["h"]), project=True, **kw)
np.savez(sys.argv[2], V=V, F=F)
"""


def _remesh_in_child(V: np.ndarray, F: np.ndarray, h: float, iters: int,
                     feature_deg: float | None) -> tuple[np.ndarray, np.ndarray]:
    """gpytoolbox's C++ remesher can crash the interpreter on inputs it dislikes (we met a segfault on a generated
    mesh) or run away (``REMESH_SECONDS``); a child process with a time and memory limit turns either into an error
    we can recover from, for ~0.3 s."""
    V, F = _referenced(V, F)  # unreferenced vertices are another crash
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
        np.savez(src, V=V, F=F.astype(np.int32), h=h, iters=iters, feature_deg=feature_deg or 0.0)
        try:
            proc = subprocess.run([sys.executable, "-c", _CHILD, src, dst, str(REMESH_BYTES)], capture_output=True,
                                  text=True, timeout=REMESH_SECONDS)
        except subprocess.TimeoutExpired:
            raise V2M4Error(f"isotropic remeshing failed (no result within {REMESH_SECONDS:.0f} s)") from None
        if proc.returncode != 0 or not os.path.exists(dst):
            why = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
            raise V2M4Error(f"isotropic remeshing failed ({why})")
        d = np.load(dst)
        return d["V"], d["F"]


def manifold_faces(F: np.ndarray) -> np.ndarray:
    """F without the faces that make an edge shared by more than two faces (each such edge keeps its first two).

    Generated meshes carry a few of these (marching-cubes ties, welds of touching parts); the remesher cannot take
    them, and dropping a handful of triangles leaves small holes that it keeps as boundaries.
    """
    F = F[(F[:, 0] != F[:, 1]) & (F[:, 1] != F[:, 2]) & (F[:, 2] != F[:, 0])]
    e = np.sort(np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]]), axis=1)
    face = np.tile(np.arange(len(F)), 3)
    _, inv, counts = np.unique(e, axis=0, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    if counts.max(initial=0) <= 2:
        return F
    order = np.lexsort((face, inv))  # per edge, faces in index order
    rank = np.empty(len(order), dtype=np.int64)
    start = np.r_[0, np.cumsum(counts)[:-1]]
    rank[order] = np.arange(len(order)) - start[inv[order]]
    drop = np.unique(face[rank >= 2])
    return np.delete(F, drop, axis=0)


def remesh_isotropic(mesh: Mesh, edge_length: float | None = None, *, iters: int = 10,
                     feature_deg: float | None = None, max_faces: int | None = None) -> Mesh:
    """The surface of ``mesh`` re-triangulated with near-equilateral triangles of the given edge length (default:
    the median edge length). Vertex colours follow by nearest original vertex; uv and texture are dropped (the
    texture stage builds its own atlas).

    max_faces: the edge length grows, where needed, to the equilateral edge that tiles the surface's area with
    this many triangles: a mesh decimated from a dense one keeps many short edges, and its median alone can ask
    for a remesh many times its size.

    feature_deg: edges whose faces meet at more than this dihedral angle are kept as creases (split and collapsed
    only along themselves; gpytoolbox >= 0.3.8); None remeshes everything alike, which rounds creases and thins
    narrow parts. Creases (30 degrees) keep more of the generated surface and lose less area, but leave slivers
    that registration then folds, so they are off by default (tuned: see docs/calibration.md)."""
    if importlib.util.find_spec("gpytoolbox") is None:
        raise V2M4Error("isotropic remeshing needs gpytoolbox (pip install gpytoolbox), "
                        "or turn it off (RegistrationConfig.remesh_rest=False)")
    V = mesh.vertices.detach().double().cpu().numpy()
    F = mesh.faces.cpu().numpy().astype(np.int32)
    if edge_length is None:
        e = np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]])
        edge_length = float(np.median(np.linalg.norm(V[e[:, 0]] - V[e[:, 1]], axis=1)))
    if max_faces:
        area = float(triangle_areas(V, F).sum())
        edge_length = max(edge_length, float(np.sqrt(4 * area / (np.sqrt(3) * max_faces))))
    F = manifold_faces(F)
    _, keep = np.unique(np.sort(F, 1), axis=0, return_index=True)  # duplicate faces crash the remesher
    F = F[np.sort(keep)]
    V2, F2 = _remesh_in_child(V, F, edge_length, iters, feature_deg)
    # a part smaller than one triangle at this edge length cannot be tiled: the remesher shrinks it to a speck (a
    # tetrahedron, or four vertices on one point), whose faces have no area to register or to texture
    V2, F2 = drop_small_components(V2, F2, np.sqrt(3) / 4 * edge_length ** 2)
    colors = None
    if mesh.vertex_colors is not None:
        _, idx = cKDTree(V).query(V2)
        colors = mesh.vertex_colors.detach().cpu()[torch.as_tensor(idx)].to(mesh.vertex_colors)
    dev = mesh.vertices.device
    return Mesh(torch.as_tensor(V2, dtype=mesh.vertices.dtype, device=dev),
                torch.as_tensor(F2, dtype=torch.int64, device=dev), vertex_colors=colors)


def drop_small_components(V: np.ndarray, F: np.ndarray, min_area: float) -> tuple[np.ndarray, np.ndarray]:
    """(V, F) without the connected components (vertices joined by faces) whose total area is below ``min_area``
    (the largest is always kept), and without the vertices no face uses any more; the rest keep their order."""
    if len(F) == 0:
        return V, F
    label = piece_labels(len(V), F)
    per = np.bincount(label[F[:, 0]], weights=triangle_areas(V, F), minlength=label.max() + 1)
    big = (per >= min_area) | (np.arange(len(per)) == per.argmax())  # never the whole mesh
    keep = big[label[F[:, 0]]]
    return (V, F) if keep.all() else _referenced(V, F[keep])


def piece_labels(n_vertices: int, F: np.ndarray) -> np.ndarray:
    """(V,) int: the connected component (vertices joined by faces) of each of n_vertices vertices; a vertex in no
    face is a component of its own."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rows = np.repeat(F[:, 0], 2)
    cols = F[:, 1:].reshape(-1)
    adj = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_vertices, n_vertices))
    return connected_components(adj, directed=False)[1]


def triangle_areas(V: np.ndarray, F: np.ndarray) -> np.ndarray:
    """(F,) triangle areas, in float64."""
    t = V[F].astype(np.float64)
    return np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1) / 2


def _referenced(V: np.ndarray, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(V, F) without the vertices no face uses; the rest keep their order, F its dtype."""
    used = np.unique(F)
    remap = np.full(len(V), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return V[used], remap[F].astype(F.dtype)


def _corner_angle(V: np.ndarray, p: np.ndarray, q: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Angle at vertex p of the triangles (p, q, r), radians."""
    u, v = V[q] - V[p], V[r] - V[p]
    n = np.maximum(np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1), 1e-30)
    return np.arccos(np.clip((u * v).sum(1) / n, -1.0, 1.0))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)


def delaunay_flips(mesh: Mesh, *, passes: int = 20, max_dihedral_deg: float = 20.0) -> Mesh:
    """``mesh`` with edges flipped towards a Delaunay triangulation where the surface is nearly flat: same vertices,
    same number of faces. The fallback when ``remesh_isotropic`` cannot run (gpytoolbox missing, or built for
    another numpy): on decimated meshes it about halves the triangles under 5 degrees and the share registration
    folds, though a real remesh does better (figures in docs/calibration.md).

    An interior edge shared by two consistently oriented faces is flipped when its two opposite angles sum above
    pi, the faces' normals are within ``max_dihedral_deg`` (so the shape does not change), both new faces keep the
    old orientation and the new edge does not exist yet. Each pass flips a set of edges with no face in common,
    most violated first."""
    V = mesh.vertices.detach().double().cpu().numpy()
    F = mesh.faces.cpu().numpy().astype(np.int64).copy()
    cos_lim = np.cos(np.radians(max_dihedral_deg))
    for _ in range(passes):
        he = np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]])  # half-edges a -> b
        opp = np.concatenate([F[:, 2], F[:, 0], F[:, 1]])
        face = np.tile(np.arange(len(F)), 3)
        key = np.sort(he, axis=1)
        uniq, inv, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
        inv = inv.reshape(-1)
        order = np.argsort(inv, kind="stable")
        start = np.r_[0, np.cumsum(counts)[:-1]]
        two = np.nonzero(counts == 2)[0]
        h0, h1 = order[start[two]], order[start[two] + 1]
        ok = (he[h0, 0] == he[h1, 1]) & (he[h0, 1] == he[h1, 0])  # consistently oriented pair
        h0, h1 = h0[ok], h1[ok]
        a, b, c, d = he[h0, 0], he[h0, 1], opp[h0], opp[h1]
        sum_opp = _corner_angle(V, c, a, b) + _corner_angle(V, d, a, b)
        n0, n1 = _unit(np.cross(V[b] - V[a], V[c] - V[a])), _unit(np.cross(V[a] - V[b], V[d] - V[b]))
        m0, m1 = np.cross(V[a] - V[c], V[d] - V[c]), np.cross(V[b] - V[d], V[c] - V[d])  # new (c,a,d), (d,b,c)
        cand = (sum_opp > np.pi + 1e-9) & ((n0 * n1).sum(1) > cos_lim) & ((m0 * n0).sum(1) > 0) \
            & ((m1 * n0).sum(1) > 0) & (c != d)
        idx = np.nonzero(cand)[0]
        if len(idx) == 0:
            break
        existing = set(map(tuple, uniq.tolist()))
        used = np.zeros(len(F), dtype=bool)
        chosen = []
        f0, f1 = face[h0], face[h1]
        for i in idx[np.argsort(-sum_opp[idx])]:
            e = (min(c[i], d[i]), max(c[i], d[i]))
            if used[f0[i]] or used[f1[i]] or e in existing:
                continue
            used[f0[i]] = used[f1[i]] = True
            existing.add(e)
            chosen.append(i)
        if not chosen:
            break
        ch = np.array(chosen)
        F[f0[ch]] = np.stack([c[ch], a[ch], d[ch]], 1)
        F[f1[ch]] = np.stack([d[ch], b[ch], c[ch]], 1)
    return dataclasses.replace(mesh, faces=torch.as_tensor(F, dtype=mesh.faces.dtype, device=mesh.faces.device))
