"""Registration energies against the rest mesh (Sec. 4.3, Appendix A "Topology Consistency"), and collapse measures.

Plain functions on positions x (V, 3), the rest positions rest (V, 3) and the rest mesh's connectivity: faces
(F, 3), edges (E, 2) (``v2m4.geometry.unique_edges``). ``scale`` is the rest mesh's size in x's frame (the
accumulated global scale): every term is 0 at the scaled rest pose.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...geometry import edge_change, face_areas, face_normals, nearest_rotations, unique_edges
from ...optim import Adam


def arap_rotations(x: Tensor, rest: Tensor, edges: Tensor) -> Tensor:
    """(..., V, 3, 3) per-vertex best rotations taking rest (V, 3) one-ring edges onto those of positions x
    (..., V, 3), e.g. every frame of a clip at once (Sorkine & Alexa 2007; ``geometry.nearest_rotations``: no host
    sync)."""
    i, j = torch.cat([edges[:, 0], edges[:, 1]]), torch.cat([edges[:, 1], edges[:, 0]])
    er, ex = rest[j] - rest[i], x[..., j, :] - x[..., i, :]
    S = torch.zeros(*x.shape, 3, dtype=torch.float64, device=x.device)
    S = S.index_add(x.dim() - 2, i, (er[:, :, None] * ex[..., None, :]).double())
    return nearest_rotations(S).to(x.dtype)


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

    The rotations that carry each face's rest normal are re-solved every 10 steps, and the repair ends only where
    no face is bad under the rotations of its final positions (as ``flipped_fraction`` measures them); faces found
    bad at a re-solve join the repaired region with their rings.

    A repair after the fit rather than a term inside it: the large-steps optimiser normalises every step by the
    largest gradient it has seen, so a barrier's spike would stall the whole fit for hundreds of steps."""
    if iters <= 0:
        return x
    active = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)

    @torch.no_grad()
    def resolve(y: Tensor) -> tuple[Tensor, bool]:
        """The rotations at y, and whether some face is bad under them (its corners and rings made active)."""
        rot = arap_rotations(y, rest * scale, edges)
        bad = carried_area_ratio(y, rest, faces, rot, scale) <= 0.1
        if not bool(bad.any()):
            return rot, False
        grown = torch.zeros_like(active)
        grown[faces[bad].flatten()] = True
        for _ in range(ring):
            near = grown[edges[:, 0]] | grown[edges[:, 1]]
            grown[edges[near].flatten()] = True
        active.logical_or_(grown)
        return rot, True

    rot, any_bad = resolve(x)
    if not any_bad:
        return x
    with torch.no_grad():
        step = float((x[edges[:, 1]] - x[edges[:, 0]]).norm(dim=-1).median()) * 0.05
    y = x.detach().clone().requires_grad_(True)
    opt = Adam([y], lr=step)
    fresh = True  # rot was solved at y's current positions
    for it in range(iters):
        if it % 10 == 0 and not fresh:
            rot, _ = resolve(y.detach())
            fresh = True
            # a new optimiser with the new rotations: a nearly vanished face's barrier (its ratio can reach -1e4)
            # leaves Adam's second moment so large that later steps stall for its ~1,000-step memory
            opt = Adam([y], lr=step)
        loss = fold_energy(y, rest, faces, rot, scale)
        if float(loss.detach()) == 0.0:
            if fresh:
                break
            rot, any_bad = resolve(y.detach())  # no fold under older rotations: check under these positions' own
            fresh = True
            if not any_bad:
                break
            loss = fold_energy(y, rest, faces, rot, scale)
        opt.zero_grad()
        loss.backward()
        y.grad *= active[:, None].to(y.dtype)
        opt.step()
        fresh = False
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


def sequence_quality(vertices: Tensor, rest_vertices: Tensor, faces: Tensor) -> dict[str, float]:
    """Collapse measures of a registered sequence (K, V, 3) against its rest mesh: the 99th percentile of relative
    edge-length change over all frames and edges, the largest per-frame share of folded or collapsed triangles,
    and the largest change of size against the rest pose (``arap_scale``; an articulated object keeps its size)."""
    edges = unique_edges(faces)
    ch = torch.cat([edge_change(v, rest_vertices, edges) for v in vertices[1:]]) if len(vertices) > 1 else \
        torch.zeros(1)
    fl = [flipped_fraction(v, rest_vertices, faces, edges) for v in vertices[1:]] or [0.0]
    size = [abs(arap_scale(v, rest_vertices, edges) - 1.0) for v in vertices[1:]] or [0.0]
    return {"edge_change_p99": float(torch.quantile(ch.double().cpu(), 0.99)), "flipped_frac": max(fl),
            "size_change_max": max(size)}


def repair_folds(x: Tensor, rest: Tensor, faces: Tensor, edges: Tensor, scale: Tensor, iters: int
                 ) -> tuple[Tensor, list[float]]:
    """Every frame of x (T, V, 3) with its folds repaired (``unfold``, at the frame's reference size scale (T,)),
    and each frame's folded share afterwards. The repair is local and rarely active: one frame at a time."""
    out = [unfold(x[t], rest, faces, edges, float(scale[t]), iters=iters) for t in range(x.shape[0])]
    return torch.stack(out), [flipped_fraction(y, rest, faces, edges) for y in out]
