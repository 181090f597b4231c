"""Topology-consistent registration (Sec. 4.3, Appendix A): one mesh deformed through every frame.

The rest mesh is the first frame's re-posed mesh. Each next frame starts from the previous result and is aligned to
that frame's re-posed generated mesh in two steps: a global similarity (6-D rotation, log-scale, translation) on
Chamfer + multi-view render L1, then per-vertex offsets under the large-steps parameterisation of Nicolet et al.
(2021) on render L1 + Chamfer + ARAP + face-area and edge-length consistency.

Ours, against drift: the ARAP, area and edge terms compare with the REST mesh (scaled by the accumulated global
scale), never with the previous frame, so an error made at one frame is pulled back instead of inherited; and a
pair whose loss jumps far above the sequence's so far, or that folds triangles, is retried from the previous good
state with a fresh, multi-start global alignment. Against collapse: triangles left folded or collapsed by a fit
are repaired locally (``unfold``) before the next pair starts from them.

What is rendered: silhouette (antialiased, so the outline pulls vertices) and world-space normals (inside the
outline, so folds and bulges pull too). Colour is not: the next frame's generated colours are not those of the
rest mesh, and comparing them would drag vertices towards paint instead of shape. Depth adds little over normals
and silhouette and needs per-view normalisation. When the rest mesh could not be remeshed, the global step
compares silhouettes only: the interpolated normals of two differently decimated raw meshes disagree enough to pull
a similarity off its target (``RegistrationConfig.global_normals``).

Units: every loss is computed in a normalised frame where the rest mesh fits the unit cube centred at the origin
(the generators' canonical size), so the paper's weights (area 1e6, edge 1e2) mean what they meant there.

Large steps: ``largesteps`` (PyPI) builds its matrices on 'cuda' unconditionally, so it cannot run on our CPUs;
the method is small enough to own: M = I + lambda * L (uniform Laplacian of the rest mesh, constant for the whole
sequence because topology is), x = M^-1 u with a dense Cholesky inverse (one factorisation per sequence; V <=
``dense_max_vertices``) or ``cholespy`` beyond, and the uniform Adam of the paper (one step size for all entries).
"""

from __future__ import annotations

import math
import statistics
import time
import warnings
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from .. import render as R
from ..camera import Camera, orbit_camera
from ..errors import V2M4Error
from ..types import Mesh, Sequence


@dataclass(frozen=True)
class RegistrationConfig:
    global_iters: int = 500         # Appendix A
    global_views: int = 20          # Appendix A: random views per step for the global render loss
    global_lr: float = 0.005        # ours (Adam on rotation-6D, log-scale, translation)
    local_iters: int = 1000         # Appendix A
    local_views: int = 50           # Appendix A
    local_lr: float = 0.003         # ours (uniform Adam in the large-steps parameter u)
    smooth_lambda: float = 19.0     # ours: Nicolet et al.'s lambda for I + lambda L
    w_render: float = 1.0           # Appendix A: every loss not named below has weight 1
    global_normals: bool | None = None  # ours: the global alignment's render term has the normal channel too.
                                    # None: only when the rest mesh was remeshed. A raw generated rest
                                    # (remesh_rest=False, or gpytoolbox missing) was pulled off its target by the
                                    # normals of two differently decimated meshes: p06 on exactly placed targets,
                                    # scale 0.946 and Chamfer 1.15e-2 after the global step (1.42e-3 by Chamfer
                                    # alone), F-score 0.16-0.56 over the clip; silhouettes only: 0.84-0.87. With a
                                    # remeshed rest the normals help (a rigid motion: max error 0.9% of the
                                    # diagonal with them, 1.15% without) and p06 scores 0.88 either way
    w_chamfer: float = 1.0          # Appendix A
    w_arap: float = 1.0             # Appendix A
    w_area: float = 1e6             # Appendix A: face-area consistency
    w_edge: float = 1e2             # Appendix A: edge-length consistency
    unfold_iters: int = 100         # ours: steps of the local repair of folded or collapsed triangles (unfold)
    render_res: int = 256           # ours: render-loss resolution
    view_pool: int = 100            # ours: target renders made once per pair; each step draws its views from them
    fov_deg: float = 40.0           # ours: the views' field of view
    chamfer_points: int = 5000      # ours: surface samples per mesh per step
    fail_ratio: float = 3.0         # ours: a pair whose final Chamfer exceeds this x the median so far is retried
    max_flipped: float = 1e-3       # ours: ... as is one folding more than this share of triangles
    retry_starts: int = 4           # ours: rotation starts of the retry's global alignment (quarter turns about +Y)
    dense_max_vertices: int = 12000 # ours: above this the large-steps solve needs cholespy
    remesh_rest: bool = True        # ours: isotropic remesh of the rest mesh first (stages/remesh.py says why)
    remesh_feature_deg: float | None = None  # ours: keep edges sharper than this as creases in that remesh; off:
                                             # it keeps the surface but its slivers fold (remesh_isotropic says)
    fit_rest: bool = False          # ours: fit the remeshed rest mesh to the first frame's mesh with the local
                                    # step's losses before any pair (register_sequence says why); off: on the
                                    # CPU bench it helped two items' drift and hurt two others'
    sample_sets: int = 16           # ours: surface-sample sets drawn once per pair, cycled through the steps
    arap_refresh: int = 10          # ours: steps between re-solving the ARAP rotations (the local step)
    input_view_iters: int = 0       # ours: after each pair, local steps that also fit the video's own silhouette
                                    # (off in the paper preset: not yet measured at its settings; fast uses 40)
    w_input_view: float = 1.0       # ours: weight of that term (silhouette L1 over the video mask's area)
    seed: int = 0

    @staticmethod
    def paper() -> "RegistrationConfig":
        return RegistrationConfig()

    @staticmethod
    def fast() -> "RegistrationConfig":
        """CPU preset: fewer, smaller views and iterations (same losses and weights)."""
        return RegistrationConfig(global_iters=60, global_views=6, global_lr=0.01, local_iters=120, local_views=8,
                                  local_lr=0.006, render_res=96, view_pool=24, chamfer_points=1500,
                                  input_view_iters=40)


@dataclass
class RegistrationResult:
    """sequence: the rest mesh and every frame's vertex positions (world). Per pair (T - 1 entries, pair t-1 -> t):
    chamfer (normalised units, squared), flipped share, retried flag, seconds; scales (T,) accumulated global scale
    of each frame relative to the rest mesh."""

    sequence: Sequence
    chamfer: list[float] = field(default_factory=list)
    flipped: list[float] = field(default_factory=list)
    retried: list[bool] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    scales: list[float] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------------
# mesh quantities (plain functions on (V, 3) positions and the rest mesh's connectivity)

def unique_edges(faces: Tensor) -> Tensor:
    """(E, 2) undirected edges, each once, smaller index first."""
    e = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).sort(dim=1).values
    return torch.unique(e, dim=0)


def face_areas(v: Tensor, faces: Tensor) -> Tensor:
    t = v[faces]
    return torch.linalg.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0], dim=-1).norm(dim=-1) / 2


def face_normals(v: Tensor, faces: Tensor) -> Tensor:
    t = v[faces]
    return torch.nn.functional.normalize(torch.linalg.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0], dim=-1), dim=-1,
                                         eps=1e-20)


def arap_rotations(x: Tensor, rest: Tensor, edges: Tensor) -> Tensor:
    """(V, 3, 3) per-vertex best rotations taking rest one-ring edges onto current ones (Sorkine & Alexa 2007)."""
    i, j = torch.cat([edges[:, 0], edges[:, 1]]), torch.cat([edges[:, 1], edges[:, 0]])
    er, ex = rest[j] - rest[i], x[j] - x[i]
    S = torch.zeros(x.shape[0], 3, 3, dtype=x.dtype, device=x.device).index_add(0, i, er[:, :, None] * ex[:, None, :])
    U, _, Vh = torch.linalg.svd(S.double())
    Rm = Vh.transpose(1, 2) @ U.transpose(1, 2)
    fix = torch.det(Rm) < 0  # reflection: flip the axis of the smallest singular value
    if bool(fix.any()):
        Vf = Vh.transpose(1, 2).clone()
        Vf[fix, :, 2] *= -1
        Rm = torch.where(fix[:, None, None], Vf @ U.transpose(1, 2), Rm)
    return Rm.to(x.dtype)


def arap_energy(x: Tensor, rest: Tensor, edges: Tensor, scale: float = 1.0, rotations: Tensor | None = None) -> Tensor:
    """ARAP (Igarashi et al. 2005; Sorkine & Alexa's form): mean over directed edges of
    |(x_j - x_i) - R_i s (r_j - r_i)|^2 with R_i the best local rotation (held fixed: the local step). 0 at the
    (scaled, rotated) rest pose. rotations: (V, 3, 3) to reuse from an earlier step instead of solving them."""
    rs = rest * scale
    Rm = arap_rotations(x.detach(), rs, edges) if rotations is None else rotations
    i, j = torch.cat([edges[:, 0], edges[:, 1]]), torch.cat([edges[:, 1], edges[:, 0]])
    r = (x[j] - x[i]) - (Rm[i] @ (rs[j] - rs[i])[..., None])[..., 0]
    return (r * r).sum(-1).mean()


def area_energy(x: Tensor, rest: Tensor, faces: Tensor, scale: float = 1.0) -> Tensor:
    """Face-area consistency against the rest mesh: mean squared area change (Appendix A)."""
    return ((face_areas(x, faces) - scale * scale * face_areas(rest, faces)) ** 2).mean()


def edge_energy(x: Tensor, rest: Tensor, edges: Tensor, scale: float = 1.0) -> Tensor:
    """Edge-length consistency against the rest mesh: mean squared length change (Appendix A)."""
    lx = (x[edges[:, 1]] - x[edges[:, 0]]).norm(dim=-1)
    lr = (rest[edges[:, 1]] - rest[edges[:, 0]]).norm(dim=-1) * scale
    return ((lx - lr) ** 2).mean()


def carried_area_ratio(x: Tensor, rest: Tensor, faces: Tensor, rotations: Tensor, scale: float = 1.0) -> Tensor:
    """(F,) each face's area vector projected on its rest normal carried by its corners' local rotations, over its
    (scaled) rest area: 1 at rest, near 0 collapsed, negative folded."""
    n0 = face_normals(rest, faces)
    carried = torch.nn.functional.normalize(sum((rotations[faces[:, k]] @ n0[..., None])[..., 0] for k in range(3)),
                                            dim=-1, eps=1e-20)
    t = x[faces]
    signed = (torch.linalg.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0], dim=-1) * carried).sum(-1) / 2
    return signed / (scale * scale * face_areas(rest, faces)).clamp_min(1e-30)


def fold_energy(x: Tensor, rest: Tensor, faces: Tensor, rotations: Tensor, scale: float = 1.0, *,
                min_ratio: float = 0.1) -> Tensor:
    """Barrier against what ``flipped_fraction`` counts, summed over faces (a few bad faces are not averaged away).

    Each face's area vector projected on its rest normal carried by its corners' local rotations (the ARAP
    rotations, so an articulated limb that turns costs nothing), over its (scaled) rest area: 1 at rest, near 0
    collapsed, negative folded; the barrier is 0 above ``min_ratio`` and quadratic below. Signed, so a fold in a
    flat region still has a gradient (an unsigned normal or area does not change as a flat fold slides), and
    needed because the paper's area term cannot stop a collapse: a mean of squared absolute changes hardly notices
    one small face vanishing."""
    ratio = carried_area_ratio(x, rest, faces, rotations, scale)
    return (torch.relu(min_ratio - ratio) ** 2).sum()


def unfold(x: Tensor, rest: Tensor, faces: Tensor, edges: Tensor, scale: float = 1.0, *, iters: int = 100,
           ring: int = 2) -> Tensor:
    """Positions x with folded and collapsed triangles repaired: ``fold_energy`` minimised over the corners of the
    bad faces (those it penalises) and ``ring`` rings around them, every other vertex held.

    A repair after the fit rather than a term inside it: the large-steps optimiser normalises every step by the
    largest gradient it has seen, so a barrier's spike would stall the whole fit for hundreds of steps."""
    with torch.no_grad():
        bad = carried_area_ratio(x, rest, faces, arap_rotations(x, rest * scale, edges), scale) <= 0.1
        if not bool(bad.any()) or iters <= 0:
            return x
        active = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        active[faces[bad].flatten()] = True
        for _ in range(ring):
            grow = active[edges[:, 0]] | active[edges[:, 1]]
            active[edges[grow].flatten()] = True
        step = float((x[edges[:, 1]] - x[edges[:, 0]]).norm(dim=-1).median()) * 0.05
    y = x.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([y], lr=step)
    mask = active[:, None].to(x.dtype)
    for it in range(iters):
        if it % 10 == 0:
            rot = arap_rotations(y.detach(), rest * scale, edges)
        loss = fold_energy(y, rest, faces, rot, scale)
        if float(loss.detach()) == 0.0:
            break
        opt.zero_grad()
        loss.backward()
        y.grad *= mask
        opt.step()
    return y.detach()


def flipped_fraction(x: Tensor, rest: Tensor, faces: Tensor, edges: Tensor) -> float:
    """Share of triangles folded over or collapsed against the rest mesh.

    A face is folded when its normal points away from its rest normal carried by its corners' local rotations
    (the ARAP rotations), so an articulated limb that turns does not count; collapsed when its area falls below
    1% of its rest area (after the global scale).
    """
    with torch.no_grad():
        s = float(torch.sqrt(face_areas(x, faces).sum() / face_areas(rest, faces).sum().clamp_min(1e-30)))
        Rm = arap_rotations(x, rest * s, edges)
        n0, n1 = face_normals(rest, faces), face_normals(x, faces)
        dots = torch.stack([((Rm[faces[:, k]] @ n0[..., None])[..., 0] * n1).sum(-1) for k in range(3)], -1)
        folded = dots.mean(-1) < 0
        collapsed = face_areas(x, faces) < 0.01 * s * s * face_areas(rest, faces)
        return float((folded | collapsed).float().mean())


def arap_scale(x: Tensor, rest: Tensor, edges: Tensor) -> float:
    """The uniform scale of positions x (V, 3) against the rest pose with each vertex's best local rotation taken out
    (ARAP's local step): 1 for a rigid motion of the rest shape, s for the rest shape scaled by s, near 1 for a
    motion that turns parts without stretching them."""
    rot = arap_rotations(x, rest, edges)
    er = rest[edges[:, 1]] - rest[edges[:, 0]]
    ex = x[edges[:, 1]] - x[edges[:, 0]]
    return float((ex * (rot[edges[:, 0]] @ er[..., None])[..., 0]).sum() / (er * er).sum().clamp_min(1e-30))


def edge_change(x: Tensor, rest: Tensor, edges: Tensor) -> Tensor:
    """(E,) relative edge-length change against the rest mesh after removing the global scale."""
    lx = (x[edges[:, 1]] - x[edges[:, 0]]).norm(dim=-1)
    lr = (rest[edges[:, 1]] - rest[edges[:, 0]]).norm(dim=-1)
    s = lx.sum() / lr.sum().clamp_min(1e-30)
    return (lx / (s * lr).clamp_min(1e-12) - 1).abs()


# ---------------------------------------------------------------------------------------------------------------
# large steps (Nicolet et al. 2021)

def uniform_laplacian(n: int, faces: Tensor) -> Tensor:
    """Dense (n, n) combinatorial Laplacian D - A of the mesh graph."""
    e = unique_edges(faces)
    L = torch.zeros(n, n, dtype=torch.float64, device=faces.device)
    L[e[:, 0], e[:, 1]] = -1
    L[e[:, 1], e[:, 0]] = -1
    L -= torch.diag(L.sum(1))
    return L


class SmoothSolver:
    """x = (I + lambda L)^-1 u for the rest mesh's connectivity; differentiable (M is symmetric, so the backward
    pass is the same solve, which autograd derives from the matrix product)."""

    def __init__(self, n: int, faces: Tensor, lam: float, *, dense_max: int = 12000):
        self.n = n
        if n <= dense_max:
            M = torch.eye(n, dtype=torch.float64, device=faces.device) + lam * uniform_laplacian(n, faces)
            self.inv = torch.cholesky_inverse(torch.linalg.cholesky(M)).float().contiguous()  # it comes column-major
            self.M = M.float()
            self._chol = None
        else:
            try:
                from cholespy import CholeskySolverF, MatrixType
            except ImportError:
                raise V2M4Error(f"registration of a {n}-vertex mesh needs the cholespy package "
                                f"(pip install cholespy), or simplify the mesh below {dense_max} vertices") from None
            e = unique_edges(faces)
            deg = torch.zeros(n, device=faces.device).index_add(0, e.flatten(), torch.ones(e.numel(), device=faces.device))
            ii = torch.cat([e[:, 0], e[:, 1], torch.arange(n, device=faces.device)])
            jj = torch.cat([e[:, 1], e[:, 0], torch.arange(n, device=faces.device)])
            vals = torch.cat([torch.full((2 * len(e),), -lam, device=faces.device), 1 + lam * deg]).float()
            self._chol = CholeskySolverF(n, ii.int(), jj.int(), vals.double(), MatrixType.COO)
            self.inv = None
            self.M = torch.sparse_coo_tensor(torch.stack([ii, jj]), vals, (n, n)).coalesce()

    def to_u(self, x: Tensor) -> Tensor:
        return self.M @ x

    def to_x(self, u: Tensor) -> Tensor:
        if self.inv is not None:
            # inv is symmetric, so this is inv @ u; written this way neither pass multiplies by a transposed
            # (column-major) inv, which on the CPU is 4x slower (1.6k vertices: 29 -> 7.6 ms per step, fwd+bwd)
            return (u.T @ self.inv).T
        return _CholespySolve.apply(u, self._chol)


class _CholespySolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, solver):
        x = torch.empty_like(u)
        solver.solve(u.detach().contiguous(), x)
        ctx.solver = solver
        return x

    @staticmethod
    def backward(ctx, g):
        out = torch.empty_like(g)
        ctx.solver.solve(g.contiguous(), out)
        return out, None


class UniformAdam(torch.optim.Optimizer):
    """Adam whose second-moment normalisation is one scalar, the max over all entries (Nicolet et al. 2021, Sec. 5):
    a step moves every entry by the same scale, which keeps the large-steps parameterisation's smoothing intact."""

    def __init__(self, params, lr=0.01, betas=(0.9, 0.999)):
        super().__init__(params, dict(lr=lr, betas=betas))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["t"], st["m"], st["v"] = 0, torch.zeros_like(p), torch.zeros_like(p)
                st["t"] += 1
                st["m"].mul_(b1).add_(p.grad, alpha=1 - b1)
                st["v"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                m_hat = st["m"] / (1 - b1 ** st["t"])
                v_hat = st["v"] / (1 - b2 ** st["t"])
                p.sub_(group["lr"] * m_hat / (v_hat.sqrt().max() + 1e-8))


# ---------------------------------------------------------------------------------------------------------------
# losses against one target mesh

def _rot6d(x: Tensor) -> Tensor:
    a = torch.nn.functional.normalize(x[:3], dim=0)
    b = torch.nn.functional.normalize(x[3:] - (a * x[3:]).sum() * a, dim=0)
    return torch.stack([a, b, torch.linalg.cross(a, b)])


def _sample_bary(faces: Tensor, weights: Tensor, n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    idx = torch.multinomial(weights.cpu().double(), n, replacement=True, generator=g).to(faces.device)
    r1, r2 = torch.rand(n, generator=g), torch.rand(n, generator=g)
    s = r1.sqrt()
    b = torch.stack([1 - s, s * (1 - r2), s * r2], -1).to(faces.device)
    return faces[idx], b


def _points(v: Tensor, fb: tuple[Tensor, Tensor]) -> Tensor:
    f, b = fb
    return (v[f] * b[..., None].to(v)).sum(1)


def _chamfer(a: Tensor, b: Tensor) -> Tensor:
    """Symmetric mean squared nearest distance. The nearest pairs are found without autograd and the loss is
    rebuilt from the gathered points: the gradient is the same, and cdist's backward (an N x M x 3 tensor) is gone."""
    with torch.no_grad():
        d = torch.cdist(a.detach(), b)
        # argmin down the columns strides through memory; a transposed copy is faster (CPU: 31 -> 21 ms at 1.5k)
        ia, ib = d.argmin(1), d.t().contiguous().argmin(1)
    return ((a - b[ia]) ** 2).sum(-1).mean() + ((b - a[ib]) ** 2).sum(-1).mean()


def view_cameras(n: int, centre: Tensor, radius: float, cfg: RegistrationConfig, g: torch.Generator) -> Camera:
    """n cameras uniformly on a sphere around ``centre`` (looking at it), far enough to see a sphere of ``radius``."""
    dev = centre.device
    yaw = (torch.rand(n, generator=g) * 2 - 1) * math.pi
    pitch = torch.asin(torch.rand(n, generator=g) * 2 - 1).clamp(-1.4, 1.4)
    dist = 1.15 * radius / math.sin(math.radians(cfg.fov_deg) / 2)
    return orbit_camera(yaw.to(dev), pitch.to(dev), torch.full((n,), dist, device=dev),
                        centre[None].expand(n, 3).to(dev), fov_deg=cfg.fov_deg,
                        resolution=(cfg.render_res, cfg.render_res))


@dataclass
class InputView:
    """The video's view of one frame, for the input-view term: camera (1 view, world), mask (H, W) of the frame,
    and the registration's normalisation (world = normalised * scale + centre)."""

    camera: Camera
    mask: Tensor
    centre: Tensor
    scale: float

    def loss(self, ctx, template: Mesh, y: Tensor, topo) -> Tensor:
        r = R.render(ctx, template, self.camera, channels=("mask",), vertices=y * self.scale + self.centre,
                     topology=topo)
        return (r["mask"][0] - self.mask).abs().sum() / self.mask.sum().clamp_min(1.0)


class _Target:
    """A target mesh's fixed data for one pair: surface samples and a pool of renders (mask, normal)."""

    def __init__(self, mesh: Mesh, cfg: RegistrationConfig, ctx, g: torch.Generator):
        v, f = mesh.vertices, mesh.faces
        self.points = _points(v, _sample_bary(f, face_areas(v, f), cfg.chamfer_points, g))
        centre = (v.max(0).values + v.min(0).values) / 2
        radius = float((v - centre).norm(dim=-1).max())
        self.cams = view_cameras(cfg.view_pool, centre, radius, cfg, g)
        with torch.no_grad():
            out = R.render(ctx, mesh, self.cams, channels=("mask", "normal"))
        self.mask, self.normal = out["mask"], out["normal"]

    def picks(self, steps: int, n: int, g: torch.Generator) -> Tensor:
        """(steps, n) view indices, drawn up front so the loop never waits on the host."""
        n = min(n, len(self.cams))
        return torch.argsort(torch.rand(steps, len(self.cams), generator=g), dim=1)[:, :n].to(self.mask.device)


def _sample_sets(faces: Tensor, weights: Tensor, n: int, sets: int, g: torch.Generator) -> list[tuple[Tensor, Tensor]]:
    return [_sample_bary(faces, weights, n, g) for _ in range(sets)]


def _render_l1(ctx, template: Mesh, x: Tensor, tgt: _Target, idx: Tensor, topo, normals: bool = True) -> Tensor:
    out = R.render(ctx, template, tgt.cams[idx], channels=("mask", "normal") if normals else ("mask",),
                   vertices=x, topology=topo)
    loss = (out["mask"] - tgt.mask[idx]).abs().mean()
    return loss + (out["normal"] - tgt.normal[idx]).abs().sum(-1).mean() if normals else loss


# ---------------------------------------------------------------------------------------------------------------
# one pair

def global_align(x: Tensor, template: Mesh, tgt: _Target, cfg: RegistrationConfig, ctx, g: torch.Generator, topo,
                 *, init_rotation: Tensor | None = None, iters: int | None = None) -> tuple[Tensor, float, float]:
    """Similarity moving positions x (V, 3) onto the target: rotation about x's centroid, log-scale, translation.
    Returns the moved positions (detached), the scale, and the final loss."""
    c = x.mean(0).detach()
    R0 = torch.eye(3, dtype=x.dtype, device=x.device) if init_rotation is None else init_rotation.to(x)
    r6 = torch.cat([R0[0], R0[1]]).clone().requires_grad_(True)
    log_s = torch.zeros((), dtype=x.dtype, device=x.device, requires_grad=True)
    t = (tgt.points.mean(0) - c).detach().clone().requires_grad_(True) if init_rotation is not None else \
        torch.zeros(3, dtype=x.dtype, device=x.device, requires_grad=True)
    opt = torch.optim.Adam([r6, log_s, t], lr=cfg.global_lr)
    n_iters = cfg.global_iters if iters is None else iters
    samples = _sample_sets(template.faces, face_areas(x, template.faces), cfg.chamfer_points, cfg.sample_sets, g)
    picks = tgt.picks(n_iters, cfg.global_views, g)
    loss = torch.zeros(())

    def moved():
        return (x - c) @ _rot6d(r6).T * log_s.exp() + c + t

    for it in range(n_iters):
        y = moved()
        loss = cfg.w_chamfer * _chamfer(_points(y, samples[it % len(samples)]), tgt.points)
        if cfg.w_render > 0:
            loss = loss + cfg.w_render * _render_l1(ctx, template, y, tgt, picks[it], topo,
                                                    normals=cfg.global_normals is not False)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return moved(), float(log_s.exp()), float(loss)


def local_align(x: Tensor, rest: Tensor, scale: float, template: Mesh, tgt: _Target, solver: SmoothSolver,
                edges: Tensor, cfg: RegistrationConfig, ctx, g: torch.Generator, topo, *,
                video: "InputView | None" = None, iters: int | None = None) -> Tensor:
    """Per-vertex deformation of x (V, 3) onto the target under large steps; regularised against ``rest`` * scale.
    video: also fit the frame's own silhouette seen from the video camera (``InputView``)."""
    u = solver.to_u(x.detach()).clone().requires_grad_(True)
    opt = UniformAdam([u], lr=cfg.local_lr)
    samples = _sample_sets(template.faces, face_areas(rest, template.faces), cfg.chamfer_points, cfg.sample_sets, g)
    n_iters = cfg.local_iters if iters is None else iters
    picks = tgt.picks(n_iters, cfg.local_views, g)
    rot = None
    for it in range(n_iters):
        y = solver.to_x(u)
        loss = cfg.w_chamfer * _chamfer(_points(y, samples[it % len(samples)]), tgt.points)
        if video is not None:
            loss = loss + cfg.w_input_view * video.loss(ctx, template, y, topo)
        if cfg.w_render > 0:
            loss = loss + cfg.w_render * _render_l1(ctx, template, y, tgt, picks[it], topo)
        if cfg.w_arap > 0:
            if it % max(1, cfg.arap_refresh) == 0:
                rot = arap_rotations(y.detach(), rest * scale, edges)
            loss = loss + cfg.w_arap * arap_energy(y, rest, edges, scale, rot)
        if cfg.w_area > 0:
            loss = loss + cfg.w_area * area_energy(y, rest, template.faces, scale)
        if cfg.w_edge > 0:
            loss = loss + cfg.w_edge * edge_energy(y, rest, edges, scale)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return solver.to_x(u)


def _eval_chamfer(x: Tensor, faces: Tensor, tgt: _Target, g: torch.Generator) -> float:
    with torch.no_grad():
        return float(_chamfer(_points(x, _sample_bary(faces, face_areas(x, faces), len(tgt.points), g)), tgt.points))


def _quarter_turns(n: int, dtype, device) -> Tensor:
    out = []
    for k in range(n):
        a = 2 * math.pi * k / n
        c, s = math.cos(a), math.sin(a)
        out.append(torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=dtype, device=device))
    return torch.stack(out)


# ---------------------------------------------------------------------------------------------------------------

def _normaliser(v: Tensor) -> tuple[Tensor, float]:
    lo, hi = v.min(0).values, v.max(0).values
    return (lo + hi) / 2, float((hi - lo).max().clamp_min(1e-12))


def register_sequence(meshes: list[Mesh], cfg: RegistrationConfig, ctx: R.RenderContext, *,
                      times: Tensor | None = None, progress=None,
                      video: tuple[Camera, Tensor] | None = None) -> RegistrationResult:
    """Deform meshes[0] (the rest pose) through meshes[1:], one pair at a time (Sec. 4.3).

    meshes: re-posed meshes, one per keyframe, in one world frame (topology may differ between them).
    times (T,) seconds of each mesh (default 0, 1, 2, ...). progress: optional callable(done, total).
    video: (the video camera, (T, H, W) masks of the keyframes): beyond the paper, each pair ends with
    ``cfg.input_view_iters`` local steps that also fit the frame's own silhouette, so what the camera saw and
    the targets (a generator's shapes, re-posed) disagree on is settled by the video; kept only if it folds no
    more triangles than the limit.
    """
    if not meshes:
        raise V2M4Error("registration needs at least one mesh")
    for k, m in enumerate(meshes):
        if not bool(torch.isfinite(m.vertices).all()):
            raise V2M4Error(f"mesh {k} has non-finite vertices; repair or drop that frame before registration")
    g = torch.Generator().manual_seed(cfg.seed)
    rest_w = meshes[0]
    remeshed = False
    if cfg.remesh_rest:
        from .remesh import delaunay_flips, remesh_isotropic
        try:
            rest_w = remesh_isotropic(rest_w, feature_deg=cfg.remesh_feature_deg)
            remeshed = True
        except V2M4Error as exc:
            rest_w = delaunay_flips(rest_w)
            warnings.warn(f"rest mesh kept as generated, its edges only flipped towards Delaunay (it folds more "
                          f"under registration than a remeshed one): {exc}")
    if cfg.global_normals is None:
        cfg = replace(cfg, global_normals=remeshed)
    c0, k0 = _normaliser(rest_w.vertices)
    norm = lambda v: (v - c0) / k0  # noqa: E731
    rest = norm(rest_w.vertices).detach()
    template = Mesh(rest, rest_w.faces)
    edges = unique_edges(rest_w.faces)
    topo = R.edge_topology(rest_w.faces, rest_w.vertices)
    solver = SmoothSolver(rest.shape[0], rest_w.faces, cfg.smooth_lambda, dense_max=cfg.dense_max_vertices)
    T = len(meshes)
    times = torch.arange(T, dtype=torch.float32) if times is None else times.float()
    res = RegistrationResult(sequence=None, scales=[1.0])  # type: ignore[arg-type]
    area0 = face_areas(norm(meshes[0].vertices), meshes[0].faces).sum()
    if cfg.fit_rest and rest_w is not meshes[0]:
        # A remesh trims thin extremities (fingers, ears), which every later pair's render term stretched the whole
        # mesh back out to: frame 1 on came out ~2-4% larger than frame 0 (ARAP-fitted scale, p04 on the CPU
        # bench). Fitting the rest mesh to its own frame first gives frame 0 the fit every other frame gets, and
        # the regularisers a reference that needs no stretching.
        tgt0 = _Target(Mesh(norm(meshes[0].vertices).detach(), meshes[0].faces), cfg, ctx, g)
        view0 = None if video is None or cfg.input_view_iters <= 0 else \
            InputView(video[0], video[1][0].to(rest), c0, k0)
        y = local_align(rest, rest, 1.0, template, tgt0, solver, edges, cfg, ctx, g, topo, video=view0)
        y = unfold(y, rest, template.faces, edges, 1.0, iters=cfg.unfold_iters)
        if flipped_fraction(y, rest, template.faces, edges) <= cfg.max_flipped:
            rest = y.detach()
            rest_w = rest_w.with_vertices(rest * k0 + c0)
            template = Mesh(rest, rest_w.faces)
    out = [rest]
    x = rest
    for t in range(1, T):
        t0 = time.perf_counter()
        tgt_mesh = Mesh(norm(meshes[t].vertices).detach(), meshes[t].faces)
        tgt = _Target(tgt_mesh, cfg, ctx, g)
        # the regularisers' reference size: the target's surface area against the first frame's, not the product of
        # the pairwise global scales (a walk's best-fit scale wobbles by a few % per pair, and a product drifts)
        sc = float(torch.sqrt(face_areas(tgt_mesh.vertices, tgt_mesh.faces).sum() / area0))

        def attempt(starts: Tensor | None):
            if starts is None:
                y, _, _ = global_align(x, template, tgt, cfg, ctx, g, topo)
            else:  # a fresh global alignment: short runs from each start, the lowest Chamfer goes on
                short = max(1, cfg.global_iters // 4)
                tries = [global_align(x, template, tgt, replace(cfg, w_render=0.0), ctx, g, topo, init_rotation=Rs,
                                      iters=short) for Rs in starts]
                y0, _, _ = min(tries, key=lambda r: _eval_chamfer(r[0], template.faces, tgt, g))
                y, _, _ = global_align(y0, template, tgt, cfg, ctx, g, topo)
            y = local_align(y, rest, sc, template, tgt, solver, edges, cfg, ctx, g, topo)
            y = unfold(y, rest, template.faces, edges, sc, iters=cfg.unfold_iters)
            return y, _eval_chamfer(y, template.faces, tgt, g), flipped_fraction(y, rest, template.faces, edges)

        y, ch, fl = attempt(None)
        retried = False
        prev = res.chamfer
        bad = fl > cfg.max_flipped or (len(prev) >= 2 and ch > cfg.fail_ratio * statistics.median(prev))
        if bad and cfg.retry_starts > 0:
            retried = True
            y2, ch2, fl2 = attempt(_quarter_turns(cfg.retry_starts, x.dtype, x.device))
            if (fl2 <= cfg.max_flipped, -ch2) > (fl <= cfg.max_flipped, -ch):
                y, ch, fl = y2, ch2, fl2
        if video is not None and cfg.input_view_iters > 0:
            view = InputView(video[0], video[1][t].to(y), c0, k0)
            y2 = local_align(y, rest, sc, template, tgt, solver, edges, cfg, ctx, g, topo, video=view,
                             iters=cfg.input_view_iters)
            y2 = unfold(y2, rest, template.faces, edges, sc, iters=cfg.unfold_iters)
            fl2 = flipped_fraction(y2, rest, template.faces, edges)
            if fl2 <= max(fl, cfg.max_flipped):
                y, ch, fl = y2, _eval_chamfer(y2, template.faces, tgt, g), fl2
        x = y.detach()
        out.append(x)
        res.chamfer.append(ch)
        res.flipped.append(fl)
        res.retried.append(retried)
        res.scales.append(sc)
        res.seconds.append(time.perf_counter() - t0)
        if progress:
            progress(t, T - 1)
    verts = torch.stack(out) * k0 + c0
    res.sequence = Sequence(rest=rest_w, vertices=verts.float(), times=times)
    return res
