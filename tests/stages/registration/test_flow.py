"""The video's optical flow as registration evidence: the flow field itself, which vertices it constrains, and the
term's value for motion with and against it."""

import math
from dataclasses import replace

import pytest
import torch
import trimesh

from v2m4 import render as R
from v2m4.camera import Camera, orbit_camera
from v2m4.stages.registration.flow import FlowTerm, VideoFlow, video_flow, visible_vertices
from v2m4.stages.registration.joint import JointConfig, register_clip
from v2m4.types import Mesh

pytest.importorskip("cv2")
CTX = R.context("torch", "cpu")


def textured(shift: tuple[int, int], size: int = 96) -> torch.Tensor:
    """(H, W, 4) a smooth random texture inside a disc, both moved by shift (u, v) pixels."""
    g = torch.Generator().manual_seed(0)
    tex = torch.nn.functional.interpolate(torch.rand(1, 3, 12, 12, generator=g), size=(size + 20, size + 20),
                                          mode="bicubic", align_corners=False)[0].permute(1, 2, 0).clamp(0, 1)
    du, dv = shift
    rgb = tex[10 - dv:10 - dv + size, 10 - du:10 - du + size]
    v, u = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = ((u - size / 2 - du) ** 2 + (v - size / 2 - dv) ** 2 < (size / 3) ** 2).float()
    return torch.cat([rgb * disc[..., None], disc[..., None]], -1)


def test_flow_of_a_moved_texture_is_the_move_and_reliable_inside_the_object():
    flow = video_flow(torch.stack([textured((0, 0)), textured((3, -2)), textured((5, -1))]))
    assert flow.forward.shape == (2, 96, 96, 2) and len(flow) == 3
    inner = flow.reliable[0].clone()
    assert float(inner.float().mean()) > 0.25  # most of the disc (a third of the frame's area)
    assert not bool(flow.reliable[:, :5].any())  # the background is never trusted
    for t, move in enumerate(((3.0, -2.0), (2.0, 1.0))):
        f = flow.forward[t][flow.reliable[t]]
        assert torch.allclose(f.median(0).values, torch.tensor(move), atol=0.25), (t, f.median(0).values)


def _sphere_views(T: int):
    tm = trimesh.creation.icosphere(subdivisions=2, radius=0.5)
    m = Mesh(torch.tensor(tm.vertices, dtype=torch.float32), torch.tensor(tm.faces, dtype=torch.int64))
    cam = orbit_camera(torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([3.0]), torch.zeros(3), fov_deg=40,
                       resolution=(64, 64))
    return m, cam


def test_only_vertices_facing_the_camera_are_visible():
    m, cam = _sphere_views(1)
    seen = visible_vertices(CTX, m, cam, m.vertices[None])[0]
    towards = (m.vertices @ (cam.position[0] / cam.position[0].norm())) > 0.1
    away = (m.vertices @ (cam.position[0] / cam.position[0].norm())) < -0.1
    assert bool(seen[away].logical_not().all())
    assert float(seen[towards].float().mean()) > 0.9


def test_flow_term_is_zero_for_motion_that_follows_the_flow_and_grows_against_it():
    m, cam = _sphere_views(3)
    T, V = 3, m.vertices.shape[0]
    # every pixel moves 2 px right between frames; the sphere's vertices move as much in the image (the camera looks
    # along its own axis, so a world move of 2 px at the sphere's depth along the camera's x)
    field = torch.zeros(T - 1, 64, 64, 2)
    field[..., 0] = 2.0
    flow = VideoFlow(field, torch.ones(T - 1, 64, 64, dtype=torch.bool))
    term = FlowTerm(flow, cam, V, "cpu", torch.float32)
    right = cam.world_from_cam[0, :3, 0]
    per_px = 3.0 / float(cam.K[0, 0, 0])  # world units per pixel at the camera's distance from the centre
    follow = torch.stack([m.vertices + right * 2 * t * per_px for t in range(T)])
    term.refresh(CTX, m, follow)
    assert float(term.weight.sum(1).min()) > 0.3 * V / 2  # about the half of the sphere the camera sees
    near = term(follow)
    still = term(torch.stack([m.vertices] * T))
    slide = torch.stack([m.vertices + cam.world_from_cam[0, :3, 1] * 2 * t * per_px for t in range(T)])
    assert float(near.max()) < 0.1, near
    assert float(still.min()) > 1.0 and float(term(slide).min()) > float(still.min())
    assert not term(torch.stack([m.vertices] * T)).isnan().any()


def test_a_spin_no_silhouette_shows_is_recovered_from_the_flow():
    """A speckled sphere spinning 8 degrees a frame about the image's vertical: every frame's silhouette and every
    keyframe's surface are the same sphere, so only the video's flow tells where its points went. Measured (150
    steps, 96 px video): without the flow the fit's motion from frame 0 misses the truth's by 0.93x the truth's own
    at the last frame, with it by 0.64x (the flow ties neighbouring frames only, so the spin spreads from the ends)."""
    T = 7
    tm = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    v = torch.tensor(tm.vertices, dtype=torch.float32)
    m = Mesh(v, torch.tensor(tm.faces, dtype=torch.int64),
             vertex_colors=torch.rand(v.shape[0], 3, generator=torch.Generator().manual_seed(0)))
    a = torch.tensor([math.radians(8.0 * t) for t in range(T)])
    turn = torch.zeros(T, 3, 3)
    turn[:, 0, 0], turn[:, 0, 2], turn[:, 1, 1], turn[:, 2, 0], turn[:, 2, 2] = a.cos(), a.sin(), 1, -a.sin(), a.cos()
    truth = v @ turn.transpose(1, 2)
    cam = orbit_camera(torch.tensor([math.pi / 2]), torch.zeros(1), torch.tensor([2.5]), torch.zeros(1, 3),
                       fov_deg=40, resolution=(96, 96))
    with torch.no_grad():
        r = R.render(CTX, m, Camera(cam.K.expand(T, 3, 3), cam.cam_from_world.expand(T, 4, 4), cam.resolution),
                     channels=("rgb", "mask"), vertices=truth)
    rgba = torch.cat([r["rgb"], r["mask"][..., None]], -1)
    # later keyframes: another tessellation of the sphere, so no facet pattern tells the turn either
    fine = trimesh.creation.icosphere(subdivisions=4, radius=0.5)
    fv, ff = torch.tensor(fine.vertices, dtype=torch.float32), torch.tensor(fine.faces, dtype=torch.int64)
    key = [0, 3, 6]
    cfg = replace(JointConfig.fast(), render_res=32, view_pool=8, global_views=2, key_views=2, chamfer_points=400,
                  remesh_rest=False, iters=150, global_iters=20, w_flow=0.1)
    res = register_clip([m.with_vertices(truth[0])] + [Mesh(fv @ turn[k].T, ff) for k in key[1:]], torch.tensor(key),
                        rgba[..., 3], cam, cfg, CTX, generator=torch.Generator().manual_seed(0),
                        times=torch.arange(T, dtype=torch.float32), flow=video_flow(rgba))
    x = res.sequence.vertices
    miss = ((x - x[:1]) - (truth - truth[:1])).norm(dim=-1).mean(1)
    moved = (truth - truth[:1]).norm(dim=-1).mean(1)
    assert float(miss[-1]) < 0.75 * float(moved[-1]), (miss, moved)
    assert float(miss[1:].sum()) < 0.75 * float(moved[1:].sum()), (miss, moved)
