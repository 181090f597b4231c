"""The generator interface (Sec. 3): one frame image in, one mesh in the generator's canonical frame out.

A generator returns meshes centred, inside [-0.5, 0.5]^3, +Y up, with vertex colours (or uv + texture). It may
lose the object's position and orientation in the video; the camera search (Sec. 4.1) recovers them.
``simplify_mesh`` brings a generated mesh down to a working resolution, appearance carried.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from ..errors import V2M4Error
from ..types import Mesh


@runtime_checkable
class Generator(Protocol):
    """What the pipeline calls. ``fov_deg`` is the vertical field of view (degrees) that the generator's renders and
    conditioning assume; TRELLIS-style generators render at 40 (official code).

    Optional appearance hook (Sec. 4.2), looked up with ``getattr(generator, "refine", None)``:
    ``refine(image, index, camera) -> Mesh``: frame ``index`` generated again so that its mesh, rendered under
    ``camera`` (that frame's cam_from_canonical from the camera search, at the frame's resolution), matches
    ``image`` (H, W, 4) RGBA; same seed as ``generate``, result in the canonical frame.
    """

    name: str
    fov_deg: float

    def generate(self, image: Tensor, index: int) -> Mesh:
        """image (H, W, 4) RGBA in [0, 1] (straight alpha), index: the frame's index -> Mesh (canonical frame)."""
        ...


def canonicalise(mesh: Mesh) -> Mesh:
    """Centre a mesh on its bounding box and scale its largest side to 1, as native 3D generators do."""
    v = mesh.vertices
    lo, hi = v.min(0).values, v.max(0).values
    s = 1.0 / float((hi - lo).max().clamp_min(1e-12))
    return mesh.with_vertices((v - (lo + hi) / 2) * s)


def simplify_mesh(mesh: Mesh, max_faces: int) -> Mesh:
    """``mesh`` with at most ``max_faces`` faces by quadric edge collapse (fast-simplification); the same object
    when it has no more already.

    The decimation runs on the mesh welded by position (uv or colour seams would otherwise open as cracks). Each
    new vertex takes the vertex colours of the closest point of the original surface (barycentric). With uv, every
    new face takes the uv chart of the original face nearest its centroid, and its corners the uv of their closest
    point on that chart, so vertices on seams are split again; a new face that spans a seam maps into one chart.
    The texture is kept as it is.
    """
    if mesh.faces.shape[0] <= max_faces:
        return mesh
    if max_faces < 1:
        raise V2M4Error(f"max_faces must be at least 1, got {max_faces}")
    import fast_simplification

    v = mesh.vertices.detach().cpu().double().numpy()
    f = mesh.faces.detach().cpu().numpy()
    pos, weld = np.unique(v, axis=0, return_inverse=True)
    wf = weld.reshape(-1)[f]
    wf = wf[(wf[:, 0] != wf[:, 1]) & (wf[:, 1] != wf[:, 2]) & (wf[:, 2] != wf[:, 0])]
    points, faces = pos, wf
    for _ in range(3):  # fast-simplification meets its target; a few more passes if a mesh ever resists
        if len(faces) <= max_faces:
            break
        points, faces = fast_simplification.simplify(points, faces, target_count=max_faces)
    if len(faces) > max_faces:
        raise V2M4Error(f"cannot simplify the mesh to {max_faces} faces (got {len(faces)}); ask for more faces")
    faces = faces.astype(np.int64)
    uv = None if mesh.uv is None else mesh.uv.detach().cpu().double().numpy()
    col = None if mesh.vertex_colors is None else mesh.vertex_colors.detach().cpu().double().numpy()
    if uv is None:
        face, bary = _closest_on_surface(points, v, f)
        new_v, new_f = points, faces
    else:
        charts = _uv_charts(v, uv, f)
        centroid_face, _ = _closest_on_surface(points[faces].mean(1), v, f)
        corner_chart = np.repeat(charts[centroid_face], 3)
        key = faces.reshape(-1) * (int(charts.max()) + 1) + corner_chart  # one new vertex per (vertex, chart)
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        new_v = points[faces.reshape(-1)[first]]
        new_f = inverse.reshape(-1, 3)
        face, bary = _closest_on_surface(new_v, v, f, chart=corner_chart[first], face_chart=charts,
                                         fallback=np.repeat(centroid_face, 3)[first])

    def carry(a):
        return None if a is None else torch.as_tensor(np.einsum("nk,nkc->nc", bary, a[f[face]]), dtype=torch.float32,
                                                      device=mesh.device)

    return Mesh(torch.as_tensor(new_v, dtype=torch.float32, device=mesh.device),
                torch.as_tensor(new_f, dtype=torch.int64, device=mesh.device), uv=carry(uv), texture=mesh.texture,
                vertex_colors=None if col is None else carry(col).clamp(0, 1))


def _uv_charts(v: np.ndarray, uv: np.ndarray, f: np.ndarray) -> np.ndarray:
    """(F,) chart of every face: faces joined through corners that share position and uv."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    _, same = np.unique(np.concatenate([v, uv], 1), axis=0, return_inverse=True)
    g = same.reshape(-1)[f]
    n = int(g.max()) + 1
    edges = np.concatenate([g[:, [0, 1]], g[:, [1, 2]]])
    _, label = connected_components(coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n)),
                                    directed=False)
    return label[g[:, 0]]


def _closest_on_surface(query: np.ndarray, v: np.ndarray, f: np.ndarray, *, chart=None, face_chart=None,
                        fallback=None, k: int = 16, chunk: int = 1 << 15) -> tuple[np.ndarray, np.ndarray]:
    """For each query point (N, 3) its closest point on the triangles v[f]: (face (N,), barycentric (N, 3)).

    Candidates are the faces with the k nearest centroids (plus ``fallback`` (N,)); with ``chart`` (N,), only
    candidates whose ``face_chart`` matches count (the fallback must).
    """
    import trimesh
    from scipy.spatial import cKDTree

    tris = v[f]
    k = min(k, len(f))
    _, cand = cKDTree(tris.mean(1)).query(query, k=k)
    cand = cand.reshape(len(query), k)
    if fallback is not None:
        cand = np.concatenate([cand, fallback[:, None]], 1)
    face = np.empty(len(query), np.int64)
    point = np.empty((len(query), 3))
    for s in range(0, len(query), chunk):
        c = cand[s:s + chunk]
        q = np.repeat(query[s:s + chunk], c.shape[1], 0)
        cp = trimesh.triangles.closest_point(tris[c.reshape(-1)], q)
        d = ((cp - q) ** 2).sum(-1).reshape(c.shape)
        if chart is not None:
            d[face_chart[c] != chart[s:s + chunk, None]] = np.inf
        j = d.argmin(1)
        rows = np.arange(len(c))
        face[s:s + chunk] = c[rows, j]
        point[s:s + chunk] = cp.reshape(*c.shape, 3)[rows, j]
    bary = trimesh.triangles.points_to_barycentric(tris[face], point)
    bary = np.clip(np.nan_to_num(bary, nan=1 / 3), 0, 1)  # a zero-area face has no barycentrics; any mix is right
    return face, bary / np.maximum(bary.sum(1, keepdims=True), 1e-12)
