"""Mesh math shared by the stages: plain functions on tensors.

Letters as everywhere in v2m4: V vertices, F faces, E edges, N and M points. ``vertices (V, 3)`` are positions,
``faces (F, 3)`` int64 vertex indices, counter-clockwise seen from outside. Device and dtype follow the inputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _nearest_cpu, _nearest_gpu


def face_areas(vertices: Tensor, faces: Tensor) -> Tensor:
    """(F,) area of each triangle of vertices (V, 3) and faces (F, 3)."""
    t = vertices[faces]
    return torch.linalg.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0], dim=-1).norm(dim=-1) / 2


def face_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """(F, 3) unit normal of each triangle (right-handed in the face's corner order; 0 for a degenerate one)."""
    t = vertices[faces]
    return torch.nn.functional.normalize(torch.linalg.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0], dim=-1), dim=-1,
                                         eps=1e-20)


def unique_edges(faces: Tensor) -> Tensor:
    """(E, 2) undirected edges of faces (F, 3), each once, smaller index first, sorted."""
    e = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).sort(dim=1).values
    return torch.unique(e, dim=0)


def surface_area(vertices: Tensor, faces: Tensor) -> Tensor:
    """Total triangle area (scalar tensor)."""
    return face_areas(vertices, faces).sum()


def surface_centroid(vertices: Tensor, faces: Tensor) -> Tensor:
    """(3,) area-weighted centroid of the surface (not of the vertices, which a dense patch would pull)."""
    a = face_areas(vertices, faces)
    return (a[:, None] * vertices[faces].mean(1)).sum(0) / a.sum().clamp_min(1e-30)


def edge_change(vertices: Tensor, rest: Tensor, edges: Tensor) -> Tensor:
    """(E,) relative length change of each edge (E, 2) of vertices (V, 3) against rest (V, 3), after removing the
    global scale (total length over total rest length): 0 for a similarity of the rest shape."""
    lx = (vertices[edges[:, 1]] - vertices[edges[:, 0]]).norm(dim=-1)
    lr = (rest[edges[:, 1]] - rest[edges[:, 0]]).norm(dim=-1)
    s = lx.sum() / lr.sum().clamp_min(1e-30)
    return (lx / (s * lr).clamp_min(1e-12) - 1).abs()


def rotation_6d(x: Tensor) -> Tensor:
    """(..., 6) -> (..., 3, 3) rotations whose rows are the Gram-Schmidt orthonormalised first two 3-vectors of x
    and their cross product (Zhou et al. 2019, "On the continuity of rotation representations"): a continuous
    parameterisation to optimise, where Euler angles and quaternions have jumps."""
    a = torch.nn.functional.normalize(x[..., :3], dim=-1)
    b = x[..., 3:] - (a * x[..., 3:]).sum(-1, keepdim=True) * a
    b = torch.nn.functional.normalize(b, dim=-1)
    return torch.stack([a, b, torch.linalg.cross(a, b, dim=-1)], -2)


def nearest_rotations(S: Tensor, sweeps: int = 5) -> Tensor:
    """(..., 3, 3) -> (..., 3, 3): for each S the proper rotation R maximising tr(R S) (R = V diag(1, 1, d) U^T
    for S = U diag(sigma) V^T, d = sign det S: the Kabsch / ARAP rotation of S = sum_k a_k b_k^T, which turns
    every a_k onto its b_k as nearly as one rotation can).

    Why not ``torch.linalg.svd``: a batch of tens of thousands of 3 x 3 problems (one per vertex and frame) is
    dispatched as that many small LAPACK or cuSOLVER calls. Here: cyclic Jacobi on S^T S, each of the six
    entries and nine eigenvector entries one tensor, so a sweep is a few dozen elementwise operations over the
    whole batch (quadratic convergence: 4 sweeps reach double precision on random matrices, 5 is the default);
    then U's first two columns by Gram-Schmidt from S V and its third as their cross product, which makes U
    proper, so that V U^T is the best proper rotation without a sign test, and is defined for a planar S (rank 2,
    a flat one-ring) as for any other. No host synchronisation. Use float64 where S is nearly singular."""
    A = S.transpose(-1, -2) @ S
    a = {(i, j): A[..., i, j].contiguous() for i in range(3) for j in range(i, 3)}
    one, zero = torch.ones_like(a[0, 0]), torch.zeros_like(a[0, 0])
    v = [[one if i == j else zero for j in range(3)] for i in range(3)]  # v[i][j]: V's row i, column j

    def at(i: int, j: int) -> Tensor:
        return a[(i, j) if i <= j else (j, i)]

    for _ in range(sweeps):
        for p, q in ((0, 1), (0, 2), (1, 2)):
            r = 3 - p - q
            apq, app, aqq = at(p, q), at(p, p), at(q, q)
            off = apq != 0
            theta = (aqq - app) / torch.where(off, 2 * apq, one)
            t = torch.where(off, torch.copysign(one, theta) / (theta.abs() + torch.sqrt(theta * theta + 1)), zero)
            c = torch.rsqrt(t * t + 1)
            s = t * c
            arp, arq = at(r, p), at(r, q)
            a[(p, p)], a[(q, q)], a[(p, q)] = app - t * apq, aqq + t * apq, zero
            a[(min(r, p), max(r, p))], a[(min(r, q), max(r, q))] = c * arp - s * arq, s * arp + c * arq
            for i in range(3):
                v[i][p], v[i][q] = c * v[i][p] - s * v[i][q], s * v[i][p] + c * v[i][q]
    V = torch.stack([torch.stack(row, -1) for row in v], -2)
    order = torch.stack([a[0, 0], a[1, 1], a[2, 2]], -1).argsort(-1, descending=True)
    V = V.gather(-1, order[..., None, :].expand(V.shape))
    V = torch.cat([V[..., :2], V[..., 2:] * _det3(V).sign()[..., None, None]], -1)  # sorting may reflect V
    B = S @ V  # U diag(sigma)
    u1 = _unit_or(B[..., 0], V[..., 0])
    u2 = _unit_or(B[..., 1] - (u1 * B[..., 1]).sum(-1, keepdim=True) * u1, _orthogonal(u1))
    U = torch.stack([u1, u2, torch.linalg.cross(u1, u2, dim=-1)], -1)
    return V @ U.transpose(-1, -2)


def _det3(M: Tensor) -> Tensor:
    """det of 3 x 3 matrices as a triple product: elementwise (``torch.det`` factorises, which a CUDA graph may not
    capture)."""
    return (M[..., :, 0] * torch.linalg.cross(M[..., :, 1], M[..., :, 2], dim=-1)).sum(-1)


def _unit_or(x: Tensor, fallback: Tensor) -> Tensor:
    """x normalised, or the unit fallback where x is (numerically) zero: a singular direction of S left free."""
    n = x.norm(dim=-1, keepdim=True)
    tiny = n <= 1e-12 * (1 + n.amax(dim=-1, keepdim=True))
    return torch.where(tiny, fallback, x / n.clamp_min(1e-300))


def _orthogonal(u: Tensor) -> Tensor:
    """A unit vector orthogonal to each unit u (..., 3)."""
    e = torch.zeros_like(u)
    e[..., 0] = 1.0
    ex = torch.where((u[..., :1].abs() < 0.9), e, e.roll(1, -1))
    return torch.nn.functional.normalize(torch.linalg.cross(u, ex, dim=-1), dim=-1)


def sample_barycentric(faces: Tensor, weights: Tensor, n: int, *, generator: torch.Generator
                       ) -> tuple[Tensor, Tensor]:
    """n surface samples as (corner indices (n, 3), barycentric weights (n, 3) float32), faces drawn with
    probability proportional to weights (F,) (face areas: uniform on the surface) and positions uniform inside
    each face. Drawn on the CPU (the same values on every device), then moved to faces' device; a sample set made
    once evaluates on any positions of the same topology (``barycentric_points``)."""
    idx = torch.multinomial(weights.cpu().double(), n, replacement=True, generator=generator).to(faces.device)
    r1, r2 = torch.rand(n, generator=generator), torch.rand(n, generator=generator)
    s = r1.sqrt()
    b = torch.stack([1 - s, s * (1 - r2), s * r2], -1).to(faces.device)
    return faces[idx], b


def barycentric_points(vertices: Tensor, samples: tuple[Tensor, Tensor]) -> Tensor:
    """(n, 3) positions of ``sample_barycentric``'s samples on vertices (V, 3); differentiable in vertices."""
    corners, b = samples
    return (vertices[corners] * b[..., None].to(vertices)).sum(1)


def nearest_pairs(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Nearest neighbours both ways between point sets a (..., N, 3) and b (..., M, 3) of the same batch shape, row
    by row: (ia (..., N), ib (..., M)) int64, ia the index in its row of b of each point of a's nearest, ib the
    reverse. No autograd.

    On a GPU, one fused kernel per direction (``_nearest_gpu``, Triton) that never writes the distance matrix;
    without Triton (or for float64), the full matrix, whose cost is memory bandwidth. On a CPU the matrix
    is the cost itself (O(N M) per row), so each row's points go into a grid searched outward from each query
    (``_nearest_cpu``, compiled: ~3 ms a direction for 9 rows of 1,500 surface samples on one thread, against
    ~10 ms for a k-d tree); without numba, one k-d tree holds every row at once, each row moved along x beyond
    the reach of the others. All are exact; where two points are equally near, either may be chosen."""
    batch, N, M = a.shape[:-2], a.shape[-2], b.shape[-2]
    if a.device.type != "cpu":
        kernel = _nearest_gpu.nearest if _nearest_gpu.available(a) and b.dtype == a.dtype else None
        if kernel is None or not (N and M):
            return _nearest_dense(a.detach(), b.detach())
    else:
        kernel = _nearest_cpu.nearest if _nearest_cpu.available() else None
    if kernel is not None and N and M:
        A, B = a.detach().reshape(-1, N, 3), b.detach().reshape(-1, M, 3)
        return kernel(A, B).reshape(*batch, N), kernel(B, A).reshape(*batch, M)
    from scipy.spatial import cKDTree

    A = a.detach().reshape(-1, N, 3).double()
    B = b.detach().reshape(-1, M, 3).double()
    lo = torch.minimum(A.amin((0, 1)), B.amin((0, 1)))
    span = float((torch.maximum(A.amax((0, 1)), B.amax((0, 1))) - lo).max()) if N and M else 0.0
    shift = torch.zeros(A.shape[0], 1, 3, dtype=torch.float64)
    shift[:, 0, 0] = torch.arange(A.shape[0], dtype=torch.float64) * (3 * span + 1)
    pa, pb = (A - lo + shift).reshape(-1, 3).numpy(), (B - lo + shift).reshape(-1, 3).numpy()
    workers = max(1, torch.get_num_threads())
    # trees built once per call and queried once: an unbalanced tree of uncompacted nodes builds in half the time,
    # and its queries are as exact
    kw = {"balanced_tree": False, "compact_nodes": False}
    ia = torch.from_numpy(cKDTree(pb, **kw).query(pa, workers=workers)[1]).reshape(-1, N)
    ib = torch.from_numpy(cKDTree(pa, **kw).query(pb, workers=workers)[1]).reshape(-1, M)
    rows = torch.arange(A.shape[0])[:, None]
    return (ia - rows * M).reshape(*batch, N), (ib - rows * N).reshape(*batch, M)


def _nearest_dense(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """``nearest_pairs`` by two batched products: argmin_j |a_i - b_j|² = argmin_j (|b_j|² - 2 a_i . b_j), so
    each direction is one baddbmm and one argmin over its rows (no square root, clamp or transposed copy of the
    distance matrix, each of which is a pass over N x M entries). Both sets are centred on b's mean first, which
    keeps the expansion's cancellation small."""
    batch, N, M = a.shape[:-2], a.shape[-2], b.shape[-2]
    A, B = a.reshape(-1, N, 3), b.reshape(-1, M, 3)
    c = B.mean(1, keepdim=True)
    A, B = A - c, B - c
    ia = torch.baddbmm((B * B).sum(-1)[:, None, :], A, B.transpose(1, 2), alpha=-2).argmin(-1)
    ib = torch.baddbmm((A * A).sum(-1)[:, None, :], B, A.transpose(1, 2), alpha=-2).argmin(-1)
    return ia.reshape(*batch, N), ib.reshape(*batch, M)


def chamfer(a: Tensor, b: Tensor) -> Tensor:
    """Symmetric Chamfer distance between point sets a (..., N, 3) and b (..., M, 3), row by row: mean squared
    nearest distance a -> b plus b -> a, shape (...) (a scalar for single sets; 0 for identical sets),
    differentiable in both.

    The nearest pairs are found without autograd (``nearest_pairs``) and the loss is rebuilt from the gathered
    points: the gradient is the same, and cdist's backward (an N x M x 3 tensor) is gone."""
    ia, ib = nearest_pairs(a, b)
    near_b = torch.gather(b, -2, ia[..., None].expand(*ia.shape, 3))
    near_a = torch.gather(a, -2, ib[..., None].expand(*ib.shape, 3))
    return ((a - near_b) ** 2).sum(-1).mean(-1) + ((b - near_a) ** 2).sum(-1).mean(-1)
