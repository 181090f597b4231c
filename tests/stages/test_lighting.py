"""The video's light: estimated against an unlit appearance, taken out of the frames, put back on the asset."""

import math
from dataclasses import replace

import torch
import trimesh

from v2m4 import render as R
from v2m4.camera import Camera
from v2m4.metrics.image import masked_psnr
from v2m4.stages.lighting import fit_light, relight, shading, srgb_to_linear, unlight, linear_to_srgb
from v2m4.stages.texture import TextureConfig, TextureResult, appearance_renders, bake_texture, ring_views
from v2m4.types import Frames, Mesh, Sequence

CTX = R.context("torch", "cpu")
LIGHT = torch.tensor([0.55, 0.12, 0.25, 0.15, 0.04, -0.03, 0.02, 0.05, 0.03])


def _random_normals(n: int, g: torch.Generator) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)


def test_a_known_light_is_recovered_and_divided_out():
    g = torch.Generator().manual_seed(0)
    n = _random_normals(64 * 64, g).view(1, 64, 64, 3)
    albedo = 0.2 + 0.6 * torch.rand(1, 64, 64, 3, generator=g)
    lit = relight(albedo, n, LIGHT)
    assert float(lit.max()) < 1  # nothing clipped: the model holds exactly
    ones = torch.ones(1, 64, 64, 1)
    light = fit_light(torch.cat([lit, ones], -1), torch.cat([albedo, ones], -1), n)
    torch.testing.assert_close(light, LIGHT, atol=2e-3, rtol=0)
    torch.testing.assert_close(unlight(lit, n, light), albedo, atol=5e-3, rtol=0)
    torch.testing.assert_close(linear_to_srgb(srgb_to_linear(albedo)), albedo, atol=1e-5, rtol=0)


def test_no_light_is_fitted_without_shared_pixels_and_the_shading_has_a_floor():
    g = torch.Generator().manual_seed(1)
    n = _random_normals(16, g).view(1, 4, 4, 3)
    img = torch.cat([torch.full((1, 4, 4, 3), 0.5), torch.ones(1, 4, 4, 1)], -1)
    assert fit_light(img, img, n) is None  # 16 pixels: under min_pixels
    away = torch.tensor([0.0, -1.0, 0.0])  # where the fitted harmonics would go below 0
    dark = torch.tensor([0.3, 0.0, 0.6, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert abs(float(shading(away, dark)) - 0.1 * 0.3) < 1e-6


def _lambert(normals: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Ambient + diffuse shading of a white distant light, as the bench's frames were lit (linear light)."""
    return 0.35 + 0.65 * (normals @ direction).clamp_min(0)


def _turning_sphere(amplitude: float, angles: torch.Tensor, direction: list[float], noise: float = 0.0):
    """A coloured sphere (its generated mesh carrying the true base colours) turning through the angles about y
    under a fixed directional light, filmed by one camera, with sRGB noise of that std: (frames, the re-posed
    meshes, their sequence, the camera, eight views around it and what they should show unlit)."""
    tm = trimesh.creation.icosphere(subdivisions=3)
    v = torch.tensor(tm.vertices, dtype=torch.float32)
    col = 0.5 + amplitude * torch.stack([torch.sin(2 * v[:, 0]), torch.cos(3 * v[:, 1]), torch.sin(2.5 * v[:, 2])], -1)
    m = Mesh(v, torch.tensor(tm.faces), vertex_colors=col)
    T = angles.shape[0]
    c, s = torch.cos(angles), torch.sin(angles)
    Ry = torch.zeros(T, 3, 3)
    Ry[:, 0, 0], Ry[:, 0, 2], Ry[:, 1, 1], Ry[:, 2, 0], Ry[:, 2, 2] = c, s, 1, -s, c
    verts = m.vertices[None] @ Ry.transpose(1, 2)
    cam = ring_views(m, 1, 96, pitch_deg=10)
    cams = Camera(cam.K.expand(T, 3, 3), cam.cam_from_world.expand(T, 4, 4), cam.resolution)
    r = R.render(CTX, m, cams, channels=("rgb", "mask", "normal"), vertices=verts)
    light = _lambert(r["normal"], torch.nn.functional.normalize(torch.tensor(direction), dim=0))
    lit = linear_to_srgb(srgb_to_linear(r["rgb"]) * light[..., None])
    if noise > 0:
        lit = (lit + noise * torch.randn(lit.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    frames = torch.cat([lit * r["mask"][..., None], r["mask"][..., None]], -1)
    reposed = [m.with_vertices(verts[t]) for t in range(T)]
    views = ring_views(m, 8, 96)
    return (Frames(frames, fps=6.0), reposed, Sequence(m, verts, torch.arange(T, dtype=torch.float32)), cam, views,
            appearance_renders([m], views, CTX))


def _unlit_psnr(mesh: Mesh, views, want: torch.Tensor) -> float:
    """Median PSNR of the mesh seen unlit from the views against want, over pixels both cover fully."""
    got = R.render(CTX, mesh, views, channels=("rgb", "mask"))
    inner = (want[..., 3] > 0.99) & (got["mask"] > 0.99)
    return float(masked_psnr(got["rgb"], want[..., :3], inner.float()).median())


CFG = replace(TextureConfig.fast(), size=128, iters=30, multi_views=16, render_res=96)


def test_the_texture_is_base_colour_and_the_input_view_sees_it_lit():
    """A coloured sphere filmed under a directional light, its generated mesh carrying the true base colours: with
    the light taken out, the texture seen unlit from every side is much closer to the base colour than the one
    baked from the frames as they are, and under the fitted light it reproduces the frames."""
    # the sphere turns; the light stays
    frames, reposed, seq, cam, views, want = _turning_sphere(0.4, torch.arange(4) * (math.pi / 3), [0.5, 0.8, 0.6])
    out, psnr = {}, {}
    for delight in (True, False):
        out[delight] = bake_texture(frames, reposed, seq, cam, replace(CFG, delight=delight), CTX,
                                    generator=torch.Generator().manual_seed(0))
        psnr[delight] = _unlit_psnr(out[delight].mesh, views, want)
    assert out[False].light is None and out[True].light is not None
    assert psnr[True] > 30 and psnr[True] > psnr[False] + 6, psnr
    # under its light, the base-colour texture shows the frames again
    tex = out[True]
    r = R.render(CTX, tex.mesh.with_vertices(seq.vertices[1][tex.vmap]), cam, channels=("rgb", "mask", "normal"))
    ref = frames.rgba[1:2]
    inner = (ref[..., 3] > 0.99) & (r["mask"] > 0.99)
    assert float(masked_psnr(relight(r["rgb"], r["normal"], tex.light), ref[..., :3], inner.float())) > 30


def test_dim_pixels_weigh_less_once_the_light_is_divided_out():
    """Frames with sensor noise: divided by a dim shading, a pixel's noise grows, so the texel the turning sphere
    shows both lit and turned from the light is closer to its base colour when each pixel weighs by its shading."""
    # every side passes through the light and away from it
    frames, reposed, seq, cam, views, want = _turning_sphere(0.3, torch.arange(6) * (2 * math.pi / 6),
                                                             [0.9, 0.2, 0.4], noise=0.04)
    psnr = {}
    for weighted in (True, False):
        out = bake_texture(frames, reposed, seq, cam, replace(CFG, shade_weight=weighted), CTX,
                           generator=torch.Generator().manual_seed(0))
        psnr[weighted] = _unlit_psnr(out.mesh, views, want)
    assert psnr[True] > psnr[False] + 0.3, psnr


def test_the_light_is_saved_with_the_texture(tmp_path):
    tm = trimesh.creation.icosphere(subdivisions=1)
    mesh = Mesh(torch.tensor(tm.vertices, dtype=torch.float32), torch.tensor(tm.faces),
                uv=torch.rand(len(tm.vertices), 2), texture=torch.rand(8, 8, 3))
    for light in (LIGHT, None):
        res = TextureResult(mesh, torch.arange(len(tm.vertices)), torch.zeros(8, 8, dtype=torch.bool), light=light)
        res.save(tmp_path / "t.npz")
        back = TextureResult.load(tmp_path / "t.npz")
        assert (back.light is None) == (light is None)
        if light is not None:
            torch.testing.assert_close(back.light, light)
