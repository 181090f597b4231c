"""Re-pose (Alg. 1, line 9) and, beyond the paper, one size and steady depths for the re-posed meshes.

``repose`` moves a canonical mesh into the world of the fixed video camera; ``repose_scales`` gives the factor about
the camera centre it applies to each frame: equal surface areas (``consistent_scales``), then depths smoothed over
time (``steady_depths``). Scaling about the camera centre leaves every image unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ...geometry import surface_area, surface_centroid
from ...types import Mesh
from .config import CameraSearchConfig


def repose(mesh: Mesh, cam_from_canonical: Tensor, world_from_cam: Tensor, *, scale: float = 1.0) -> tuple[Mesh, Tensor]:
    """Move a canonical mesh into the world of the fixed video camera (Alg. 1, line 9).

    cam_from_canonical (4, 4): the camera found for this frame; world_from_cam (4, 4): the video camera's pose;
    scale: a factor about the camera centre (see ``consistent_scales``), which leaves the image unchanged.
    Returns the re-posed mesh and world_from_canonical (4, 4) = world_from_cam @ diag(scale) @ cam_from_canonical.
    Rendering the result through the video camera reproduces the render of the canonical mesh through the found
    camera exactly (same intrinsics).
    """
    S = torch.diag(torch.tensor([scale, scale, scale, 1.0], dtype=mesh.vertices.dtype, device=mesh.vertices.device))
    M = world_from_cam.to(mesh.vertices) @ S @ cam_from_canonical.to(mesh.vertices)
    v = mesh.vertices @ M[:3, :3].T + M[:3, 3]
    return mesh.with_vertices(v), M


def consistent_scales(meshes: list[Mesh]) -> Tensor:
    """(T,) factors k_t = sqrt(area_0 / area_t) that give every frame's mesh the first one's surface area.

    Beyond the paper. Generators normalise each mesh into a unit cube, so a frame whose pose stretches the bounding
    box (legs out in a gallop) comes out smaller, and a single view cannot tell that from the object being farther
    away: re-posed rigidly, the object's size and depth wobble from frame to frame by the bounding box's change
    (up to 10% on the bench's gallops). Articulated motion keeps surface area nearly constant, and scaling a mesh
    about the camera centre leaves its image unchanged, so equal areas fix size and depth at no cost to the fit.
    """
    a = torch.stack([surface_area(m.vertices, m.faces).double() for m in meshes])
    return (a[0] / a.clamp_min(1e-30)).sqrt()


def steady_depths(positions: Tensor, times: Tensor, noise: float = CameraSearchConfig.depth_noise,
                  still_angle: float = CameraSearchConfig.still_angle,
                  lateral_noise: float = CameraSearchConfig.lateral_noise,
                  growth_angle: float = CameraSearchConfig.growth_angle) -> Tensor:
    """(T,) factors about the camera centre that move each frame's object along its ray to a smoothed track.

    positions (T, 3): the object's centre per frame in the video camera's frame (the camera centre at the origin);
    its direction from the camera is what the image fixes, its distance is what the size estimate guesses.

    Beyond the paper. A re-posed mesh's depth is its size (a generator's normalisation, or its surface area under
    ``consistent_scales``) over its apparent size, so the size estimate's error, 1-2% per frame for a generator's
    perturbed mesh, becomes depth error; at 1.5-4 bounding-box diagonals from the camera that is 2-8% of the
    diagonal, more than the shape error. Objects move smoothly, the errors do not.

    An object in place (its direction within ``still_angle`` of its mean: the bench's walks, gallops and waves
    move 0.3-1.2 degrees) gets one distance when the log-distances scatter no more than ``noise`` (the per-frame
    log-depth error) explains, a chi-square test at 95%. Beyond that, a distance that changes while the direction
    barely does (sideways by less than ``tan(growth_angle)`` times the change along the ray) is read as a change
    of size and also gets one distance: the equal-area sizes assume a constant surface area, which a blooming or
    morphing object breaks (the bench's morph sphere grows to 3.9 times its area and back: read as motion, its
    translation error was 68-70% of the diagonal). The price: an object walking at the camera within
    ``growth_angle`` of its ray is read as growing; ``growth_angle=0`` turns the rule off. Otherwise
    log-distance is smoothed over time (``_smooth_log_depth``). The chi-square test comes first because the
    errors are not independent (warm-started frames share a radius error, a pose shares its area error):
    cross-validation alone read them as motion and kept a drift of 2-5% of the diagonal on a third of the CPU
    bench's items.

    An object crossing the view is smoothed as a 3-D track instead (``_smooth_track``): one distance, or a
    smoothed distance, would flatten what a straight run past the camera does (closer at the middle by the
    cosine of its angle: 2% for the bench's fox, 12 degrees either side, at four diagonals, 8% of the diagonal).
    Scaling about the camera centre leaves every image unchanged. Fewer than 4 frames: no smoothing (ones).
    """
    T = len(positions)
    p = positions.double().cpu()
    if T < 4:
        return torch.ones(T, dtype=torch.float64)
    x = times.double().cpu()
    x = (x - x[0]) / (x[-1] - x[0]).clamp_min(1e-12)
    ray = torch.nn.functional.normalize(p, dim=-1)
    mean_ray = torch.nn.functional.normalize(ray.mean(0), dim=0)
    if float(torch.acos((ray @ mean_ray).clamp(-1, 1)).max()) > still_angle:
        return _smooth_track(p, x, noise, lateral_noise)
    from scipy.stats import chi2
    y = p.norm(dim=-1).clamp_min(1e-12).log()
    if float(((y - y.mean()) ** 2).sum()) <= noise ** 2 * chi2.ppf(0.95, T - 1):
        return (y.mean() - y).exp()
    # a change of size (the docstring says why): an approach this close to the camera's ray is rare
    spread = float(torch.acos((ray @ ray.T).clamp(-1, 1)).max())
    if spread < float(y.max() - y.min()) * math.tan(growth_angle):
        return (y.mean() - y).exp()
    return (_smooth_log_depth(y, x) - y).exp()


def _differences(x: Tensor) -> tuple[Tensor, Tensor]:
    """First and second difference operators over the sample times x (T,)."""
    I = torch.eye(len(x), dtype=torch.float64)
    D1 = (I[1:] - I[:-1]) / (x[1:] - x[:-1]).clamp_min(1e-6)[:, None]
    return D1, D1[1:] - D1[:-1]


def _gcv(n: int, rss: float, trace: float) -> float:
    # GCV with its trace inflated by 1.4 (Kim & Gu 2004): plain GCV undersmooths short series
    return n * rss / max(n - 1.4 * trace, 1e-9) ** 2


def _smooth_log_depth(y: Tensor, x: Tensor) -> Tensor:
    """Whittaker smoother of log-distances y (T,) over times x: speed (a still object) or acceleration (a steady
    approach) penalised, the penalty and its weight chosen by generalised cross-validation."""
    T = len(y)
    I = torch.eye(T, dtype=torch.float64)
    best = None
    for D in _differences(x):
        P = D.T @ D
        for k in range(-24, 25):  # lambda from 1e-6 to 1e6
            H = torch.linalg.inv(I + 10 ** (k / 4) * P)
            z = H @ y
            g = _gcv(T, float(((y - z) ** 2).sum()), float(H.trace()))
            if best is None or g < best[0]:
                best = (g, z)
    return best[1]


def _smooth_track(p: Tensor, x: Tensor, noise: float, lateral_noise: float) -> Tensor:
    """Depth factors (T,) for positions p (T, 3) of an object crossing the view: a 3-D Whittaker smoother with the
    noise of each position along its ray (``noise``) and across it (``lateral_noise``, the sideways shift of a
    centroid as limbs move) as its weights, and the acceleration penalised. A constant-velocity track is taken
    when its chi-square residual is within 95% (the sideways motion then tells the distance what to do),
    otherwise the penalty's weight is chosen by generalised cross-validation. Each position's new distance is
    its projection on its own ray: the sideways part is the image's, and stays."""
    from scipy.stats import chi2
    T = len(p)
    dist = p.norm(dim=-1)
    ray = p / dist[:, None]
    e3 = torch.eye(3, dtype=torch.float64)
    along = ray[:, :, None] * ray[:, None, :]
    blocks = (along / noise ** 2 + (e3 - along) / lateral_noise ** 2) / dist[:, None, None] ** 2
    W = torch.block_diag(*blocks)  # (3T, 3T) inverse covariance of the stacked positions
    b = W @ p.reshape(-1)
    # a constant-velocity track a + v x: weighted least squares, and its chi-square residual
    A = torch.cat([e3.expand(T, 3, 3), x[:, None, None] * e3], 2).reshape(3 * T, 6)
    line = A @ torch.linalg.solve(A.T @ W @ A, A.T @ b)
    r = p.reshape(-1) - line
    if float(r @ W @ r) <= chi2.ppf(0.95, 3 * T - 6):
        fit = line
    else:
        D2 = torch.kron(_differences(x)[1], e3) / float(dist.mean()) ** 2
        P = D2.T @ D2
        best = None
        for k in range(-8, 41):  # lambda from 1e-2 to 1e10: W is in units of 1/noise^2
            H = torch.linalg.solve(W + 10 ** (k / 4) * P, W)
            z = H @ p.reshape(-1)
            res = p.reshape(-1) - z
            g = _gcv(3 * T, float(res @ W @ res), float(H.trace()))
            if best is None or g < best[0]:
                best = (g, z)
        fit = best[1]
    return (fit.reshape(T, 3) * ray).sum(-1) / dist


def repose_scales(meshes: list[Mesh], cam_from_canonical: Tensor, times: Tensor, cfg: CameraSearchConfig) -> Tensor:
    """(T,) float64 on the CPU: the factors about the camera centre that ``repose`` applies, ``consistent_scales``
    then ``steady_depths`` on the depths of the meshes' surface centroids (which a moving limb shifts less than it
    does a bounding box's centre; docs/calibration.md), each as the config asks."""
    T = len(meshes)
    k = consistent_scales(meshes).cpu() if cfg.consistent_scale else torch.ones(T, dtype=torch.float64)
    if not cfg.steady_depth:
        return k
    centres = torch.stack([surface_centroid(m.vertices, m.faces).double().cpu() for m in meshes])
    M = cam_from_canonical.double().cpu()
    pos = ((M[:, :3, :3] @ centres[..., None])[..., 0] + M[:, :3, 3]) * k[:, None]
    return k * steady_depths(pos, times, cfg.depth_noise, cfg.still_angle, cfg.lateral_noise, cfg.growth_angle)
