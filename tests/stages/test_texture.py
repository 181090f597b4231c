"""Global texture (Sec. 4.4): a known texture seen from known views is reproduced; atlas split is consistent;
filling leaves no unreached texel in view."""

import math

import pytest
import torch
import trimesh
from dataclasses import replace

from v2m4 import render as R
from v2m4.metrics.image import masked_psnr
from v2m4.stages.texture import (TextureConfig, appearance_renders, fit_texture, fill_unreached, random_views,
                                 ring_views, unreached_fraction, uv_atlas)
from v2m4.types import Mesh

CTX = R.context("torch", "cpu")


def sphere_with_known_colour() -> tuple[Mesh, Mesh]:
    """A bumpy icosphere with smooth vertex colours, and its atlas version whose texture holds the same colours."""
    tm = trimesh.creation.icosphere(subdivisions=3)
    v = torch.tensor(tm.vertices, dtype=torch.float32)
    v = v * (1 + 0.1 * torch.sin(3 * v[:, :1]))
    col = 0.5 + 0.45 * torch.stack([torch.sin(2 * v[:, 0]), torch.cos(3 * v[:, 1]), torch.sin(2.5 * v[:, 2])], -1)
    return Mesh(v, torch.tensor(tm.faces), vertex_colors=col), None


def test_uv_atlas_split_is_consistent():
    m, _ = sphere_with_known_colour()
    a, vmap = uv_atlas(m, size=128, padding=2)
    assert torch.equal(a.vertices, m.vertices[vmap])
    assert a.faces.shape == m.faces.shape
    assert float(a.uv.min()) >= 0 and float(a.uv.max()) <= 1
    # the split faces are the original faces, corner by corner
    assert torch.equal(vmap[a.faces].sort(1).values, m.faces.sort(1).values) or \
        torch.equal(torch.sort(vmap[a.faces].sort(1).values, 0).values, torch.sort(m.faces.sort(1).values, 0).values)


def test_baked_texture_reproduces_known_views():
    m, _ = sphere_with_known_colour()
    cfg = replace(TextureConfig.fast(), size=128, iters=100, multi_views=24, render_res=96, video_supervision=False)
    g = torch.Generator().manual_seed(0)
    atlas, vmap = uv_atlas(m, size=cfg.size, padding=cfg.padding)
    multi = random_views(m, cfg.multi_views, cfg.render_res, g)
    targets = appearance_renders([m], multi, CTX)
    ref = multi[0]
    res = fit_texture(atlas, vmap, m.vertices[None], ref, targets[:1], multi, targets, cfg, CTX)
    # re-render the textured mesh from the training views and from new ones: the seen texels reproduce them
    new = random_views(m, 6, cfg.render_res, torch.Generator().manual_seed(5))
    for cams in (multi, new):
        want = appearance_renders([m], cams, CTX)
        got = R.render(CTX, res.mesh, cams, channels=("rgb", "mask"))
        inner = (want[..., 3] > 0.99) & (got["mask"] > 0.99)
        psnr = masked_psnr(got["rgb"], want[..., :3], inner.float())
        assert float(psnr.median()) >= 30, psnr
    assert unreached_fraction(res.mesh, res.unreached, ring_views(m, 8, 96), CTX) <= 1e-3
    assert res.losses[-1] < res.losses[0]


def test_fill_reaches_every_texel_from_its_neighbours():
    tex = torch.zeros(16, 16, 3)
    known = torch.zeros(16, 16, dtype=torch.bool)
    tex[4:8, 4:8] = torch.tensor([0.2, 0.4, 0.6])
    known[4:8, 4:8] = True
    out = fill_unreached(tex, known)
    assert torch.allclose(out, torch.tensor([0.2, 0.4, 0.6]).expand(16, 16, 3), atol=1e-6)


def test_colour_transfer_recovers_an_affine_colour_map():
    from v2m4.stages.texture import apply_colour_transfer, colour_transfer

    g = torch.Generator().manual_seed(0)
    src = torch.rand(2, 16, 16, 4, generator=g) * 0.6 + 0.2
    src[..., 3] = 1.0
    a = torch.tensor([[0.9, 0.1, 0.0, 0.05], [0.0, 0.8, 0.1, -0.02], [0.05, 0.0, 0.7, 0.1]])
    tgt = apply_colour_transfer(src, a)
    fit = colour_transfer(src, tgt, ridge=1e-6)
    assert torch.allclose(fit, a, atol=1e-3)
    # no shared coverage: the identity
    empty = tgt.clone()
    empty[..., 3] = 0
    assert torch.equal(colour_transfer(src, empty), torch.eye(3, 4))


def test_video_decides_what_it_saw_and_generated_views_fill_the_rest():
    """With video supervision, generated views that disagree with the video (a colour drift) cannot pull the texels
    the video saw; without it (the paper's weighting) they do."""
    m, _ = sphere_with_known_colour()
    drifted = Mesh(m.vertices, m.faces, vertex_colors=(m.vertex_colors * 0.6 + 0.3))
    g = torch.Generator().manual_seed(0)
    multi = random_views(m, 24, 96, g)
    targets = appearance_renders([drifted], multi, CTX)
    ref_cam = random_views(m, 1, 96, torch.Generator().manual_seed(3))
    video = appearance_renders([m], ref_cam, CTX)
    psnr = {}
    for vs in (True, False):
        cfg = replace(TextureConfig.fast(), size=128, iters=100, multi_views=24, render_res=96, video_supervision=vs)
        atlas, vmap = uv_atlas(m, size=cfg.size, padding=cfg.padding)
        res = fit_texture(atlas, vmap, m.vertices[None], ref_cam, video, multi, targets, cfg, CTX)
        got = R.render(CTX, res.mesh, ref_cam, channels=("rgb", "mask"))
        inner = (video[..., 3] > 0.99) & (got["mask"] > 0.99)
        psnr[vs] = float(masked_psnr(got["rgb"], video[..., :3], inner.float()))
    assert psnr[True] >= 28 and psnr[True] > psnr[False] + 5, psnr
