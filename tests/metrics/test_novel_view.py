"""Novel-view metrics: the textured reference against itself is perfect, a turned or untextured copy is not."""

import math

import torch
import trimesh

from v2m4 import render as R
from v2m4.data.bench import BenchItem, Material, render_ground_truth
from v2m4.metrics.geometry import apply
from v2m4.metrics.novel_view import framing, novel_view_scores, orbit_views
from v2m4.types import Mesh

RES = (64, 64)


def _item(frames: int = 2) -> BenchItem:
    """An asymmetric textured box (a long body and a head on one end), two materials, moving along +X."""
    body = trimesh.creation.box((2.0, 0.6, 0.6))
    head = trimesh.creation.box((0.5, 0.5, 0.5))
    head.apply_translation((1.1, 0.4, 0.0))
    m = trimesh.util.concatenate([body, head])
    v = torch.tensor(m.vertices, dtype=torch.float32)
    f = torch.tensor(m.faces, dtype=torch.int64)
    uv = (v[:, [0, 2]] - v[:, [0, 2]].min(0).values) / 2.5
    checker = ((torch.arange(8)[:, None] + torch.arange(8)[None]) % 2).float()
    tex = torch.stack([checker, 0.3 + 0.4 * checker, 1 - checker, torch.ones_like(checker)], -1)
    mats = [Material(torch.tensor([1.0, 1.0, 1.0, 1.0]), tex), Material(torch.tensor([0.8, 0.1, 0.1, 1.0]), None)]
    fm = torch.zeros(len(f), dtype=torch.int64)
    fm[len(body.faces):] = 1
    verts = torch.stack([v + torch.tensor([0.3 * t, 0.0, 0.0]) for t in range(frames)])
    return BenchItem(id="box", frames=None, gt_vertices=verts, faces=f, uv=uv, face_material=fm, materials=mats,
                     camera=None, times=torch.arange(frames).float(), frame_indices=list(range(frames)))


def _scores(item, vertices, mesh_of=None):
    ctx = R.context("torch", torch.device("cpu"))

    def truth(t, cams):
        return render_ground_truth(item, item.gt_vertices[t], cams, ctx)

    def ours(t, cams):
        if mesh_of is None:
            return render_ground_truth(item, vertices[t], cams, ctx)
        o = R.render(ctx, mesh_of(t), cams, channels=("rgb", "mask"))
        return o["rgb"], o["mask"]

    centres, radius = framing(item.gt_vertices)
    return novel_view_scores(ours, truth, centres, radius, views=8, resolution=RES)


def test_orbit_views_frame_every_frame_and_look_at_its_centre():
    item = _item(3)
    centres, radius = framing(item.gt_vertices)
    cams = orbit_views(centres, radius, views=4, resolution=RES)
    assert len(cams) == 12
    for t in range(3):
        pix, depth = cams[t * 4:(t + 1) * 4].project(centres[t][None].expand(4, 1, 3))
        torch.testing.assert_close(pix[:, 0], torch.tensor([[32.0, 32.0]]).expand(4, 2), atol=1e-3, rtol=0)
        # every vertex of the frame is inside the image
        p, _ = cams[t * 4:(t + 1) * 4].project(item.gt_vertices[t][None].expand(4, -1, 3))
        assert bool(((p >= 0) & (p <= 64)).all())


def test_reference_against_itself_is_perfect():
    item = _item()
    s = _scores(item, item.gt_vertices)
    assert s["nv_mask_iou"] == 1.0 and s["nv_psnr"] == 100.0 and math.isclose(s["nv_ssim"], 1.0, abs_tol=1e-6)
    assert s["nv_psnr_shared"] == 100.0 and s["nv_psnr_texture_bound"] == 100.0


def test_a_quarter_turn_and_a_lost_texture_score_clearly_lower():
    item = _item()
    c = item.gt_vertices[0].mean(0)
    Rq = torch.tensor([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]])
    turned = torch.stack([(v - c) @ Rq.T + c for v in item.gt_vertices])
    s_turn = _scores(item, turned)
    assert s_turn["nv_mask_iou"] < 0.7 and s_turn["nv_psnr"] < 20
    grey = _scores(item, None, mesh_of=lambda t: Mesh(item.gt_vertices[t], item.faces))
    assert grey["nv_mask_iou"] > 0.97  # the same shape: only the appearance differs
    assert grey["nv_psnr"] < 15 and grey["nv_ssim"] < 0.9
    # the texture lost on the same shape shows where both surfaces are seen; the turn's figure there is its own
    assert grey["nv_psnr_shared"] < 15
    assert s_turn["nv_psnr_shared"] > s_turn["nv_psnr"]  # the union adds object-against-background pixels
    # a perfect texture would put the grey shape near the reference; the turned one stays bound by its silhouette
    assert grey["nv_psnr_texture_bound"] > 25 > s_turn["nv_psnr_texture_bound"] > s_turn["nv_psnr"]


def test_ground_truth_render_reads_each_materials_colour():
    item = _item(1)
    ctx = R.context("torch", torch.device("cpu"))
    centres, radius = framing(item.gt_vertices)
    cams = orbit_views(centres, radius, views=8, resolution=RES)
    rgb, mask = render_ground_truth(item, item.gt_vertices[0], cams, ctx)
    tri = R.render(ctx, Mesh(item.gt_vertices[0], item.faces), cams, channels=("tri_id",))["tri_id"]
    inside = (mask > 0.999) & (tri >= 0)
    head = inside & (item.face_material[tri.clamp_min(0)] == 1)
    assert int(head.sum()) > 20
    red = torch.tensor([0.8, 0.1, 0.1])
    srgb = torch.where(red <= 0.0031308, 12.92 * red, 1.055 * red ** (1 / 2.4) - 0.055)
    torch.testing.assert_close(rgb[head], srgb.expand(int(head.sum()), 3), atol=1e-4, rtol=0)
    body = inside & (item.face_material[tri.clamp_min(0)] == 0)
    cols = rgb[body]
    assert float(cols[:, 2].max()) > 0.9 and float(cols[:, 2].min()) < 0.1  # both checker colours seen


def test_once_alignment_is_a_similarity_in_world_units():
    from v2m4.metrics.geometry import sequence_geometry
    item = _item()
    seq = item.gt_vertices
    moved = [v * 2.0 + torch.tensor([5.0, -1.0, 2.0]) for v in seq]
    _, once = sequence_geometry(moved, [item.faces] * 2, seq, item.faces, n_points=800)
    torch.testing.assert_close(apply(once, moved[1]), seq[1], atol=0.03, rtol=0)
