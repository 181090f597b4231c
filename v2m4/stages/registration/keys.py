"""The keyframes' evidence for the whole-clip fit, stacked: each keyframe's target (surface samples and its pool of
rendered views) as one batch, and the render loss of many poses against their keyframes' views in one call."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ... import render as R
from ...camera import Camera
from ...geometry import face_areas
from ..._graphs import RenderPass, StepVisibility
from ...types import Mesh
from .align import Target
from .config import RegistrationConfig


@dataclass(frozen=True)
class _Keys:
    """The K keyframes' targets stacked: points (K, N, 3); cams (K * pool views, camera k's pool first);
    mask (K, pool, H, W); normal (K, pool, H, W, 3); area (K,) surface areas; all normalised; normal_l1 (K, pool)
    each target view's sum of |normal| (its L1 against an empty render)."""

    points: Tensor
    cams: Camera
    mask: Tensor
    normal: Tensor
    area: Tensor
    normal_l1: Tensor

    @staticmethod
    def build(meshes: list[Mesh], cfg: RegistrationConfig, ctx, g: torch.Generator) -> tuple["_Keys", list[Target]]:
        tgts = [Target(m, cfg, ctx, g) for m in meshes]  # once per keyframe, before any step
        cams = Camera(torch.cat([t.cams.K for t in tgts]), torch.cat([t.cams.cam_from_world for t in tgts]),
                      tgts[0].cams.resolution)
        area = torch.stack([face_areas(m.vertices, m.faces).sum() for m in meshes])
        normal = torch.stack([t.normal for t in tgts])
        return _Keys(torch.stack([t.points for t in tgts]), cams, torch.stack([t.mask for t in tgts]), normal, area,
                     normal.abs().sum((2, 3, 4))), tgts

    @property
    def pool(self) -> int:
        return self.mask.shape[1]

    def picks(self, steps: int, n: int, g: torch.Generator) -> Tensor:
        """(steps, K, n) view indices into each keyframe's pool, drawn up front (no host wait in the loop)."""
        K, n = self.mask.shape[0], min(n, self.pool)
        return torch.argsort(torch.rand(steps, K, self.pool, generator=g), dim=2)[..., :n].to(self.mask.device)

    def views(self, x: Tensor, key_of: Tensor, idx: Tensor) -> tuple[Camera, Tensor]:
        """The cameras and vertices (B * n, V, 3) of the render of positions x (B, V, 3), row b in keyframe
        key_of[b]'s pool views idx[b] (B, n)."""
        n = idx.shape[1]
        flat = (idx + key_of[:, None] * self.pool).reshape(-1)
        cams = Camera(self.cams.K[flat], self.cams.cam_from_world[flat], self.cams.resolution)
        return cams, _per_view(x, n)

    def render_l1(self, ctx, template: Mesh, x: Tensor, key_of: Tensor, idx: Tensor, topo,
                  seen: StepVisibility | None = None) -> Tensor:
        """(B,) render L1 (mask + normals, ``align._render_l1``) of positions x (B, V, 3), row b against keyframe
        key_of[b]'s pool in its views idx[b] (B, n); one render call of B * n views. seen: their visibility found
        beforehand, as render "key" (static shapes)."""
        B, n = idx.shape
        cams, v = self.views(x, key_of, idx)
        # one pose's n views share its vertex normals: found once per row, not once per view
        nrm = _per_view(R.vertex_normals(x, template.faces), n)
        # on the CPU the normals' L1 goes over the covered pixels alone (a tenth of the images on the bench):
        # sum |p - t| over an image = sum |t| + the sum over covered pixels of |p - t| - |t|, as p is 0 elsewhere.
        # Single-threaded on the demo, the dense images' L1 and its backward were half of this render's 25.7 ms
        rows = x.device.type == "cpu"
        out = _render(ctx, template, cams, v, topo, ("mask", "normal"), seen, "key", normals=nrm, per_pixel=rows)
        kk = key_of[:, None]
        dm = (out["mask"].reshape(B, n, *out["mask"].shape[1:]) - self.mask[kk, idx]).abs().mean((1, 2, 3))
        h, w = out["mask"].shape[1:]
        if not rows:
            dn = (out["normal"].reshape(B, n, h, w, 3) - self.normal[kk, idx]).abs().sum(-1)
            return dm + dn.mean((1, 2, 3))
        pix, hw = out["pixel"], h * w
        # a row that holds no pixel (index B * n * hw) is 0 and adds |0 - t| - |t| = 0 wherever it reads t
        view = (pix // hw).clamp_max(B * n - 1)
        flat = (key_of[:, None] * self.pool + idx).reshape(-1)  # each rendered view's target, (B * n,)
        t = self.normal.reshape(-1, 3).index_select(0, flat[view] * hw + pix % hw)
        d = ((out["normal"] - t).abs() - t.abs()).sum(-1)
        covered = torch.zeros(B * n, dtype=d.dtype, device=d.device).index_add(0, view, d).view(B, n)
        return dm + (self.normal_l1[kk, idx] + covered).sum(1) / (n * hw)


def _per_view(x: Tensor, n: int) -> Tensor:
    """Rows x (B, ...) repeated for each of their n views -> (B * n, ...), row b's views together."""
    return x[:, None].expand(x.shape[0], n, *x.shape[1:]).reshape(x.shape[0] * n, *x.shape[1:])


def _render(ctx, template: Mesh, cams: Camera, v: Tensor, topo, channels: tuple[str, ...],
            seen: StepVisibility | None, name: str, normals: Tensor | None = None,
            per_pixel: bool = False) -> dict[str, Tensor]:
    """``render``, or ``render_visible`` from render ``name``'s visibility in seen."""
    if seen is None:
        return R.render(ctx, template, cams, channels=channels, vertices=v, topology=topo, normals=normals,
                        per_pixel=per_pixel)
    return seen.render(ctx, name, RenderPass(template, cams, v, topo), channels, normals=normals,
                       per_pixel=per_pixel)
