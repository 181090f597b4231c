"""Correctness of the renderer's primitives on CPU (issue 3). Expected values are derived in each test."""

import math

import pytest
import torch
import trimesh

from v2m4 import Mesh
from v2m4 import render as R
from v2m4.render import _cpu_aa, _torch_aa
from v2m4.camera import Camera, intrinsics_from_fov, look_at, orbit_camera

CTX = R.context("torch")


def ndc_to_clip(xy, z=0.0, w=1.0, dtype=torch.float32):
    """Clip positions (1, V, 4) for NDC points (V, 2) at depth z with homogeneous w."""
    xy = torch.as_tensor(xy, dtype=dtype)
    n = xy.shape[0]
    z = torch.as_tensor(z, dtype=dtype).expand(n)
    w = torch.as_tensor(w, dtype=dtype).expand(n)
    return torch.cat([xy * w[:, None], (z * w)[:, None], w[:, None]], -1)[None]


def pixel_to_ndc(px, py, w, h):
    return (2 * px + 1) / w - 1, (2 * py + 1) / h - 1


def test_coverage_matches_pixel_centres_inside_triangle():
    # A triangle in pixel coordinates (centres on integers); a pixel is covered iff its centre is inside.
    W = H = 16
    tri_px = torch.tensor([[2.3, 1.7], [13.6, 4.2], [5.1, 12.8]], dtype=torch.float64)
    ndc = torch.stack([(2 * tri_px[:, 0] + 1) / W - 1, (2 * tri_px[:, 1] + 1) / H - 1], -1)
    rast = R.rasterize(CTX, ndc_to_clip(ndc, dtype=torch.float64), torch.tensor([[0, 1, 2]]), (H, W))
    got = rast[0, ..., 3] > 0
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")

    def edge(a, b):
        return (tri_px[b, 0] - tri_px[a, 0]) * (ys - tri_px[a, 1]) - (tri_px[b, 1] - tri_px[a, 1]) * (xs - tri_px[a, 0])

    e = torch.stack([edge(0, 1), edge(1, 2), edge(2, 0)])
    expected = (e >= 0).all(0) | (e <= 0).all(0)
    assert expected.sum() > 20
    assert torch.equal(got, expected)


def test_barycentrics_and_depth_by_hand():
    # Screen-space triangle with w = 1 everywhere, so perspective-correct = affine barycentrics.
    W = H = 8
    verts = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)
    z = torch.tensor([0.1, 0.5, -0.3], dtype=torch.float64)
    pos = torch.cat([verts, z[:, None], torch.ones(3, 1, dtype=torch.float64)], -1)[None]
    rast = R.rasterize(CTX, pos, torch.tensor([[0, 1, 2]]), (H, W))
    # pixel (row 1, col 2): ndc (x, y) = (-0.375, -0.625); p = u p0 + v p1 + (1-u-v) p2
    x, y = pixel_to_ndc(2, 1, W, H)
    v = (x + 1) / 2
    w2 = (y + 1) / 2
    u = 1 - v - w2
    r = rast[0, 1, 2]
    torch.testing.assert_close(r[0].item(), u)
    torch.testing.assert_close(r[1].item(), v)
    torch.testing.assert_close(r[2].item(), u * 0.1 + v * 0.5 + w2 * -0.3)
    assert r[3].item() == 1


def test_perspective_correct_interpolation():
    # A plane seen in perspective: interpolating world x must reproduce the ray/plane intersection exactly.
    K = intrinsics_from_fov(60, (32, 32), dtype=torch.float64)
    E = look_at(torch.tensor([[0.3, 0.2, 3.0]], dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64))
    cam = Camera(K, E, (32, 32))
    quad = torch.tensor([[-1, -1, 0], [1, -1, 0], [1, 1, -1.5], [-1, 1, -1.5]], dtype=torch.float64)
    mesh = Mesh(quad, torch.tensor([[0, 1, 2], [0, 2, 3]]))
    out = R.render(CTX, mesh, cam, channels=("points", "tri_id"))
    pts = out["points"][0][out["tri_id"][0] >= 0]
    uv, _ = cam.project(pts)
    ys, xs = torch.nonzero(out["tri_id"][0] >= 0, as_tuple=True)
    centres = torch.stack([xs + 0.5, ys + 0.5], -1).to(torch.float64)
    # 1e-5 px: the barycentrics' area epsilon (1e-6, as nvdiffrast's) biases them by ~1e-8 relative
    torch.testing.assert_close(uv[0], centres, atol=1e-5, rtol=0)


def test_interpolate_and_texture_gradients_match_finite_differences():
    torch.manual_seed(0)
    pos = ndc_to_clip([[-0.9, -0.8], [0.83, -0.7], [-0.2, 0.9]], z=0.2, w=torch.tensor([1.0, 1.5, 2.0]),
                      dtype=torch.float64).clone().requires_grad_(True)
    tri = torch.tensor([[0, 1, 2]])
    uv = torch.tensor([[0.1, 0.2], [0.9, 0.3], [0.4, 0.8]], dtype=torch.float64, requires_grad=True)
    tex = torch.rand(5, 6, 3, dtype=torch.float64, requires_grad=True)

    def f(pos, uv, tex):
        rast = R.rasterize(CTX, pos, tri, (6, 6))
        uvp = R.interpolate(CTX, uv, rast, tri)
        return R.texture(CTX, tex, uvp)

    assert torch.autograd.gradcheck(f, (pos, uv, tex), eps=1e-6, atol=1e-5)


def _sphere(subdiv=4, radius=1.0):
    m = trimesh.creation.icosphere(subdivisions=subdiv, radius=radius)
    return Mesh(torch.tensor(m.vertices, dtype=torch.float32), torch.tensor(m.faces))


def _front_camera(res=96, dist=3.0, batch=1):
    z = torch.zeros(batch)
    return orbit_camera(z, z, torch.full((batch,), dist), torch.zeros(batch, 3), fov_deg=40, resolution=(res, res))


def test_mask_area_of_sphere_matches_analytic_disc():
    cam = _front_camera(res=128)
    mask = R.render(CTX, _sphere(5), cam, channels=("mask",))["mask"][0]
    f = 64 / math.tan(math.radians(20))
    r = f * math.tan(math.asin(1 / 3))  # the silhouette of a unit sphere at distance 3 is a cone of half-angle asin(1/3)
    assert abs(mask.sum().item() - math.pi * r * r) / (math.pi * r * r) < 0.01


@pytest.mark.parametrize("subdiv", [2, 5])  # 320 and 20,480 faces: gradients must not fade as triangles shrink
def test_silhouette_gradient_matches_finite_differences_on_dense_meshes(subdiv):
    mesh = _sphere(subdiv)
    cam = _front_camera(res=64)
    target = torch.zeros(1, 64, 64)
    target[0, 10:40, 12:50] = 1
    blur = torch.ones(1, 1, 5, 5) / 25

    def loss(v):
        m = R.render(CTX, mesh, cam, channels=("mask",), vertices=v)["mask"]
        b = torch.nn.functional.conv2d(m[:, None], blur, padding=2)[:, 0]
        return ((b - target) ** 2).sum()

    # directional derivative along a smooth deformation (scale + shift), against central differences of a
    # 4x supersampled render (the exact area, to a few thousandths)
    direction = mesh.vertices * 0.5 + torch.tensor([0.3, -0.2, 0.0])
    t = torch.zeros((), requires_grad=True)
    loss(mesh.vertices + t * direction).backward()
    cam_hi = cam.with_resolution((256, 256))

    def loss_hi(v):
        m = R.render(CTX, mesh, cam_hi, channels=("mask",), vertices=v, antialias_edges=False)["mask"]
        m = torch.nn.functional.avg_pool2d(m[:, None], 4)[:, 0]
        b = torch.nn.functional.conv2d(m[:, None], blur, padding=2)[:, 0]
        return ((b - target) ** 2).sum()

    h = 0.02
    with torch.no_grad():
        fd = (loss_hi(mesh.vertices + h * direction) - loss_hi(mesh.vertices - h * direction)) / (2 * h)
    assert t.grad.sign() == fd.sign()
    assert abs(t.grad.item() - fd.item()) / abs(fd.item()) < 0.1


def test_optimisation_moves_square_onto_target_silhouette():
    torch.manual_seed(0)
    K = intrinsics_from_fov(50, (64, 64))
    E = look_at(torch.tensor([[0.0, 0.0, 3.0]]), torch.zeros(1, 3))
    cam = Camera(K, E, (64, 64))
    sq = torch.tensor([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], dtype=torch.float32) * 0.5
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    target_v = sq * 1.3 + torch.tensor([0.35, -0.25, 0.0])
    target = R.render(CTX, Mesh(target_v, faces), cam, channels=("mask",))["mask"].detach()
    shift = torch.zeros(3, requires_grad=True)
    log_scale = torch.zeros((), requires_grad=True)
    opt = torch.optim.Adam([shift, log_scale], lr=0.03)
    for _ in range(150):
        opt.zero_grad()
        v = sq * log_scale.exp() + shift * torch.tensor([1.0, 1.0, 0.0])
        m = R.render(CTX, Mesh(v, faces), cam, channels=("mask",))["mask"]
        ((m - target) ** 2).mean().backward()
        opt.step()
    torch.testing.assert_close(shift.detach()[:2], torch.tensor([0.35, -0.25]), atol=0.02, rtol=0)
    assert abs(log_scale.exp().item() - 1.3) < 0.03


def test_channels_agree_with_camera_projection_and_batch():
    mesh = _sphere(3)
    cams = orbit_camera(torch.tensor([0.0, 1.0, 2.5]), torch.tensor([0.0, 0.4, -0.3]), torch.tensor([3.0, 3.5, 4.0]),
                        torch.zeros(3, 3), fov_deg=40, resolution=(48, 48))
    out = R.render(CTX, mesh, cams, channels=("rgb", "mask", "depth", "normal", "points", "tri_id"))
    for k, shape in [("rgb", (3, 48, 48, 3)), ("mask", (3, 48, 48)), ("depth", (3, 48, 48)),
                     ("normal", (3, 48, 48, 3)), ("points", (3, 48, 48, 3)), ("tri_id", (3, 48, 48))]:
        assert out[k].shape == shape, k
    vis = out["tri_id"] >= 0
    # depth equals the distance of the surface point along the view axis
    _, d = cams.project(out["points"].reshape(3, -1, 3))
    torch.testing.assert_close(out["depth"].reshape(3, -1)[vis.reshape(3, -1)], d[vis.reshape(3, -1)], atol=1e-4, rtol=0)
    # on a unit sphere the normal is the point itself (up to faceting)
    cos = (out["normal"][vis] * torch.nn.functional.normalize(out["points"][vis], dim=-1)).sum(-1)
    assert cos.min() > 0.98
    # rendering views one at a time gives the same images as the batched call
    single = R.render(CTX, mesh, cams[1], channels=("mask",))["mask"]
    torch.testing.assert_close(single[0], out["mask"][1])


def test_bad_inputs_raise_clear_errors():
    from v2m4.errors import V2M4Error

    with pytest.raises(V2M4Error, match="pos must have shape"):
        R.rasterize(CTX, torch.zeros(1, 3, 3), torch.tensor([[0, 1, 2]]), (4, 4))
    with pytest.raises(V2M4Error, match="unknown render channels"):
        R.render(CTX, _sphere(1), _front_camera(16), channels=("albedo",))
    with pytest.raises(V2M4Error, match="CUDA"):
        R.context("nvdiffrast", "cpu")


def test_edge_topology_of_closed_mesh():
    mesh = _sphere(2)
    edges, edge_faces, opposite = R.edge_topology(mesh.faces)
    assert edges.shape[0] == 3 * mesh.faces.shape[0] // 2  # closed manifold: every edge has two faces
    assert (edge_faces >= 0).all() and (opposite >= 0).all()


def test_mesh_partly_outside_the_image_renders():
    # silhouette edges crossing the image border must be dropped, not indexed out of bounds
    mesh = _sphere(3)
    cam = orbit_camera(torch.zeros(1), torch.zeros(1), torch.full((1,), 1.6), torch.tensor([[0.7, 0.3, 0.0]]),
                       fov_deg=60, resolution=(32, 32))
    v = mesh.vertices.clone().requires_grad_(True)
    out = R.render(CTX, mesh, cam, channels=("mask",), vertices=v)
    out["mask"].sum().backward()
    assert out["mask"].sum() > 0 and torch.isfinite(v.grad).all()


def test_shared_edges_cover_each_pixel_centre_exactly_once():
    # A 4x4-cell grid of triangles whose vertices sit exactly on pixel centres (so many centres lie exactly on
    # edges and vertices), jittered on the 1/16-pixel snapping grid: the triangles, rasterised one at a time,
    # must cover every centre inside the grid exactly once (no cracks, no double cover); centres on the grid's
    # outer border belong to it on two of its four sides only.
    W = H = 24
    g = torch.Generator().manual_seed(3)
    n = 4
    ij = torch.stack(torch.meshgrid(torch.arange(n + 1), torch.arange(n + 1), indexing="ij"), -1).reshape(-1, 2)
    px = 4.0 + 4.0 * ij.double()
    interior = ((ij > 0) & (ij < n)).all(-1)
    px[interior] += torch.randint(-20, 21, (int(interior.sum()), 2), generator=g).double() / 16
    ndc = torch.stack([(2 * px[:, 1] + 1) / W - 1, (2 * px[:, 0] + 1) / H - 1], -1)
    faces = []
    for r in range(n):
        for c in range(n):
            a, b, d, e = r * (n + 1) + c, r * (n + 1) + c + 1, (r + 1) * (n + 1) + c, (r + 1) * (n + 1) + c + 1
            faces += [[a, b, e], [a, e, d]] if (r + c) % 2 else [[a, b, d], [b, e, d]]
    faces = torch.tensor(faces)
    faces[::3] = faces[::3].flip(-1)  # mixed winding: the fill rule must not depend on it
    pos = ndc_to_clip(ndc, dtype=torch.float64)
    count = torch.zeros(H, W, dtype=torch.long)
    for f in faces:
        count += (R.rasterize(CTX, pos, f[None], (H, W))[0, ..., 3] > 0).long()
    assert int(count.max()) == 1
    assert torch.equal(count[5:20, 5:20], torch.ones(15, 15, dtype=torch.long))  # the grid spans centres 4..20
    border = count[4:21, 4:21]
    sides = [int(border[0].sum()), int(border[-1].sum()), int(border[:, 0].sum()), int(border[:, -1].sum())]
    assert sides == [0, 16, 0, 16]  # the fill rule gives a region its bottom and right borders, not top and left
    assert int(count.sum()) == int((R.rasterize(CTX, pos, faces, (H, W))[0, ..., 3] > 0).sum())


def test_sliver_triangles_pass_no_barycentric_gradient():
    # A triangle of 0.047 px² on screen (vertices on the 1/16-pixel grid, so snapping keeps it) that covers the
    # centre of pixel (row 3, col 4): there its barycentric derivatives are ~1/area. render() keeps its colour
    # but drops that position gradient (sliver_area); sliver_area=0 keeps it.
    K = intrinsics_from_fov(60, (8, 8), dtype=torch.float64)
    E = look_at(torch.tensor([[0.0, 0.0, 3.0]], dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64))
    cam = Camera(K, E, (8, 8))
    sub = torch.tensor([[58.0, 47.0], [70.0, 47.0], [64.0, 49.0]], dtype=torch.float64)  # 1/16 px, centre (64, 48)
    u, v = sub[:, 0] / 16 + 0.5, sub[:, 1] / 16 + 0.5
    f = float(K[0, 0, 0])
    verts = torch.stack([(u - 4) * 3 / f, -(v - 4) * 3 / f, torch.zeros(3, dtype=torch.float64)], -1)  # on z = 0
    torch.testing.assert_close(cam.project(verts[None])[0][0], torch.stack([u, v], -1))
    colors = torch.eye(3, dtype=torch.float64)
    grads = {}
    for sl in (0.05, 0.0):
        vv = verts.clone().requires_grad_(True)
        out = R.render(CTX, Mesh(vv, torch.tensor([[0, 1, 2]]), vertex_colors=colors), cam, channels=("rgb",),
                       antialias_edges=False, sliver_area=sl)
        img = out["rgb"].detach()
        assert float(img[0, 3, 4].sum()) > 0.99 and float(img.sum()) < 1.01  # one pixel
        out["rgb"][..., 0].sum().backward()  # the first vertex's share: its barycentric
        grads[sl] = float(vv.grad.abs().max())
    assert grads[0.05] == 0
    assert grads[0.0] > 1.0


def test_row_gather_matches_index_select():
    # _RowGather is the CUDA path of the renderer's gathers; the same arithmetic runs on the CPU
    from v2m4.render._torch import _RowGather, _ScatterRows

    g = torch.Generator().manual_seed(0)
    for shape in [(50, 4), (50, 3, 4), (50, 8)]:
        src = torch.randn(*shape, generator=g, requires_grad=True)
        idx = torch.randint(0, 50, (37,), generator=g)
        a = _RowGather.apply(src, idx)
        b = src.index_select(0, idx)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        w = torch.randn(b.shape, generator=g)
        ga, = torch.autograd.grad((a * w).sum(), src)
        gb, = torch.autograd.grad((b * w).sum(), src)
        torch.testing.assert_close(ga, gb)
    vals = torch.randn(5, 4, generator=g, requires_grad=True)
    idx = torch.tensor([7, 1, 3, 9, 0])
    out = _ScatterRows.apply(12, idx, vals)
    torch.testing.assert_close(out[idx], vals)
    assert float((out.sum() - vals.sum()).detach()) == 0
    gv, = torch.autograd.grad((out * torch.arange(48.0).view(12, 4)).sum(), vals)
    torch.testing.assert_close(gv, torch.arange(48.0).view(12, 4)[idx])


def test_render_each_matches_one_render_per_mesh():
    """Three meshes of different topologies and placements, one camera each, in one call: the same images, and
    the same pose gradients, as three separate renders."""
    ms = []
    for k, (sub, shift) in enumerate([(2, 0.0), (3, 0.3), (1, -0.2)]):
        t = trimesh.creation.icosphere(subdivisions=sub)
        v = torch.tensor(t.vertices, dtype=torch.float32) * (0.8 + 0.2 * k) + shift
        col = torch.rand(v.shape[0], 3, generator=torch.Generator().manual_seed(k))
        ms.append(Mesh(v, torch.tensor(t.faces), vertex_colors=col))
    yaw = torch.tensor([0.2, 1.4, -2.0], requires_grad=True)
    pitch = torch.tensor([0.1, -0.3, 0.4])
    cams = orbit_camera(yaw, pitch, torch.tensor([3.0, 3.5, 2.8]), torch.zeros(3, 3), fov_deg=40, resolution=(64, 64))
    ctx = R.context("torch", "cpu")
    topo = [R.edge_topology(m.faces) for m in ms]
    joint = R.render_each(ctx, ms, cams, channels=("rgb", "mask"), topologies=topo, background=0.5)
    (g_joint,) = torch.autograd.grad((joint["rgb"] ** 2).sum() + joint["mask"].sum(), yaw, retain_graph=True)
    sep = [R.render(ctx, m, cams[b], channels=("rgb", "mask"), topology=topo[b], background=0.5) for b, m in enumerate(ms)]
    rgb = torch.cat([o["rgb"] for o in sep])
    mask = torch.cat([o["mask"] for o in sep])
    (g_sep,) = torch.autograd.grad((rgb ** 2).sum() + mask.sum(), yaw)
    assert mask.sum() > 500 and (mask.sum((1, 2)) > 0).all()
    assert torch.allclose(joint["mask"], mask, atol=1e-5)
    assert torch.allclose(joint["rgb"], rgb, atol=1e-5)
    assert torch.allclose(g_joint, g_sep, rtol=1e-3, atol=1e-3)


def test_mesh_split_at_uv_seams_renders_like_the_welded_mesh():
    # a textured mesh comes split at its seams (copies share positions); the seams must not be antialiased as
    # outlines: every face on its own vertices renders exactly like the connected mesh
    welded = _sphere(3)
    F = welded.faces.shape[0]
    g = torch.Generator().manual_seed(0)
    tex = torch.rand(8, 8, 3, generator=g)
    uv_w = torch.rand(welded.vertices.shape[0], 2, generator=g)
    split_idx = welded.faces.reshape(-1)
    split = Mesh(welded.vertices[split_idx], torch.arange(3 * F).reshape(F, 3), uv=uv_w[split_idx], texture=tex)
    welded = Mesh(welded.vertices, welded.faces, uv=uv_w, texture=tex)
    cam = _front_camera(res=96)
    a = R.render(CTX, welded, cam, channels=("rgb", "mask"))
    b = R.render(CTX, split, cam, channels=("rgb", "mask"))
    torch.testing.assert_close(b["mask"], a["mask"], atol=1e-5, rtol=0)
    torch.testing.assert_close(b["rgb"], a["rgb"], atol=1e-5, rtol=0)
    edges, edge_faces, _ = R.edge_topology(split.faces, split.vertices)
    assert (edge_faces >= 0).all()  # the welded connectivity is closed again
    # without a texture too (a mesh file split at seams), and through render_each
    plain_split, plain = Mesh(split.vertices, split.faces), Mesh(welded.vertices, welded.faces)
    a = R.render(CTX, plain, cam, channels=("mask",))["mask"]
    torch.testing.assert_close(R.render(CTX, plain_split, cam, channels=("mask",))["mask"], a, atol=1e-5, rtol=0)
    two = Camera(cam.K.expand(2, 3, 3), cam.cam_from_world.expand(2, 4, 4), cam.resolution)
    each = R.render_each(CTX, [plain_split, plain_split], two, channels=("mask",))["mask"]
    torch.testing.assert_close(each, a.expand(2, -1, -1), atol=1e-5, rtol=0)


@pytest.mark.skipif(not R._cpu.available(), reason="numba is not installed: the CPU uses the tensor rasteriser")
def test_compiled_cpu_visibility_equals_the_tensor_rasteriser():
    # Random views of a noisy sphere (self-intersecting, so depth decides), some partly off screen, one behind the
    # eye, plus two screen-filling triangles (the tensor rasteriser's float64 path): the same covered pixels
    # everywhere, and the same triangle wherever the two nearest surfaces are not within a float32 step of depth.
    g = torch.Generator().manual_seed(0)
    m = trimesh.creation.icosphere(subdivisions=3)
    v = torch.tensor(m.vertices, dtype=torch.float32)
    v = v + 0.05 * torch.randn(v.shape, generator=g)
    big = torch.tensor([[-9.0, -9.0, 0.5], [9.0, -8.0, 0.6], [0.0, 9.0, 0.4]])
    v = torch.cat([v, big])
    tri = torch.cat([torch.tensor(m.faces), torch.tensor([[len(v) - 3, len(v) - 2, len(v) - 1]])])
    pos = []
    for b in range(7):
        q = torch.linalg.qr(torch.randn(3, 3, generator=g))[0]
        p = v @ q.T
        p[:, 2] += 0.5 if b == 0 else 3.0  # view 0: the eye inside the sphere, vertices behind it
        shift = 0.6 * (b % 3 - 1)
        pos.append(torch.stack([2 * p[:, 0] + shift * p[:, 2], 2 * p[:, 1], (p[:, 2] - 2) / 2 * p[:, 2], p[:, 2]], -1))
    pos = torch.stack(pos)
    for res in [(48, 64), (96, 96)]:
        ref = R._torch.visibility(pos, tri, res, 1 << 20)
        got = R._cpu.visibility(pos, tri, res)
        assert torch.equal(got >= 0, ref >= 0)
        assert float((got != ref).float().mean()) < 1e-3
        # one view at a time (the kernel's split over threads) gives the same ids
        assert torch.equal(torch.cat([R._cpu.visibility(pos[b:b + 1], tri, res) for b in range(7)]), got)
    cam = orbit_camera(torch.zeros(1), torch.zeros(1), torch.full((1,), 3.0), torch.zeros(3), fov_deg=40,
                       resolution=(64, 64))
    mesh = Mesh(v[:-3], torch.tensor(m.faces))
    fast = R.render(CTX, mesh, cam, channels=("mask", "tri_id"))
    ref = R.render(R.context("torch", compiled=False), mesh, cam, channels=("mask", "tri_id"))
    assert torch.equal(fast["mask"], ref["mask"])


@pytest.mark.skipif(not _cpu_aa.available(), reason="numba is not installed: the CPU uses the tensor antialias")
def test_compiled_cpu_antialias_equals_the_tensor_antialias_in_values_and_gradients(monkeypatch):
    # A noisy sphere with a hole (boundary edges) seen from views around it, one of them from inside (vertices
    # behind the eye), and a textured render (colour gradients) beside the mask: the compiled walk finds the same
    # crossings, so images and gradients agree to float32 rounding, view by view and for the whole batch.
    g = torch.Generator().manual_seed(2)
    tm = trimesh.creation.icosphere(subdivisions=3)
    v = torch.tensor(tm.vertices, dtype=torch.float32)
    v = v + 0.04 * torch.randn(v.shape, generator=g)
    faces = torch.tensor(tm.faces)[v[torch.tensor(tm.faces)][:, :, 2].mean(1) < 0.8]  # a cap cut off: a hole
    mesh = Mesh(v, faces, vertex_colors=torch.rand(v.shape, generator=g))
    cams = orbit_camera(torch.tensor([0.0, 70, 150, 230, 300]), torch.tensor([10.0, -20, 40, 0, 80]),
                        torch.tensor([3.0, 2.5, 3.5, 3.0, 0.7]), torch.zeros(3), fov_deg=45, resolution=(40, 56))
    wr = torch.randn(5, 40, 56, 3, generator=g)
    wm = torch.randn(5, 40, 56, generator=g)

    def run(ctx):
        x = v[None].repeat(5, 1, 1).requires_grad_(True)
        col = mesh.vertex_colors.clone().requires_grad_(True)
        out = R.render(ctx, Mesh(v, faces, vertex_colors=col), cams, channels=("rgb", "mask"), vertices=x)
        ((out["rgb"] * wr).sum() + (out["mask"] * wm).sum()).backward()
        return out["rgb"].detach(), out["mask"].detach(), x.grad, col.grad

    got = run(CTX)
    with monkeypatch.context() as mp:  # the same visibility (the compiled rasteriser's), the tensor antialias
        mp.setattr(_torch_aa, "_cpu_available", lambda: False)
        ref = run(CTX)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, atol=2e-5 * float(b.abs().max()), rtol=0)
    edge = (ref[1] > 0) & (ref[1] < 1)
    assert int(edge.sum()) > 100 and float(ref[2].abs().sum()) > 0  # silhouettes crossed, positions moved
    # the views split over threads: one view at a time gives the same image
    x = v[None].repeat(5, 1, 1)
    one = torch.cat([R.render(CTX, mesh, cams[b:b + 1], channels=("mask",), vertices=x[b:b + 1])["mask"]
                     for b in range(5)])
    torch.testing.assert_close(one, got[1], atol=1e-6, rtol=0)


def test_barycentrics_backward_is_the_derivative_of_its_forward():
    # the written-out backward of the visible pixels' barycentrics and depth, against finite differences in float64
    g = torch.Generator().manual_seed(0)
    p = torch.randn(9, 3, 4, dtype=torch.float64, generator=g)
    p[..., 3] = p[..., 3].abs() + 0.5
    ndc = torch.rand(2, 9, dtype=torch.float64, generator=g) * 0.4 - 0.2
    p.requires_grad_(True)
    f = R._torch._Barycentrics.apply
    assert torch.autograd.gradcheck(lambda q: f(q, ndc[0], ndc[1]), (p,))
    assert torch.autograd.gradcheck(lambda q: f(q, ndc[0], ndc[1])[1], (p,))  # z alone: no barycentric gradient


@pytest.mark.skipif(not R._cpu.available(), reason="numba is not installed: the CPU uses the tensor rasteriser")
def test_compiled_visibility_without_a_writable_cache(monkeypatch):
    # an install where numba finds nowhere to keep compiled code (it raises when asked to cache): the kernel is
    # compiled in the process instead, and renders the same
    from v2m4 import _compiled

    real = _compiled.numba.njit

    def njit(*args, **kw):
        if kw.get("cache"):
            raise RuntimeError("cannot cache function: no locator available")
        return real(*args, **kw)

    monkeypatch.setattr(_compiled.numba, "njit", njit)
    monkeypatch.setattr(_compiled, "_compiled", {})
    pos = ndc_to_clip([[-0.8, -0.7], [0.9, -0.5], [0.1, 0.8]])
    tri = torch.tensor([[0, 1, 2]])
    got = R._cpu.visibility(pos, tri, (16, 16))
    assert torch.equal(got, R._torch.visibility(pos, tri, (16, 16), 1 << 20)) and int((got == 0).sum()) > 50


@pytest.mark.parametrize("slack,rows", [(0, "exact"), (1000, "slack"), (0, "every pixel")])
def test_render_visible_equals_render_in_values_and_gradients(slack, rows):
    # a deformed sphere from 3 views, one partly off-screen and one with the mesh partly behind the eye: the
    # static path (visibility given, every pixel shaded, crossings in fixed slots) must be render's numbers
    torch.manual_seed(0)
    mesh = _sphere(3)
    bump = mesh.vertices * (1 + 0.15 * torch.sin(3 * mesh.vertices[:, :1]))
    cam = orbit_camera(torch.tensor([0.0, 40.0, 10.0]), torch.tensor([0.0, 20.0, -5.0]),
                       torch.tensor([3.0, 3.0, 1.05]), torch.tensor([[0.0, 0.0, 0.0], [0.6, 0.2, 0.0],
                                                                      [0.0, 0.0, 0.0]]),
                       fov_deg=45, resolution=(48, 56))
    topo = R.edge_topology(mesh.faces)
    w_mask, w_norm = torch.rand(3, 48, 56), torch.rand(3, 48, 56, 3)

    def loss(out):
        return (out["mask"] * w_mask).sum() + (out["normal"] * w_norm).sum()

    v1 = bump.clone().requires_grad_(True)
    ref = R.render(CTX, mesh, cam, channels=("mask", "normal"), vertices=v1, topology=topo)
    loss(ref).backward()
    tri_id = R.visible_faces(CTX, mesh, cam, vertices=bump)
    n = int(R.silhouette_crossings(mesh, cam, vertices=bump, topology=topo))
    assert n > 0
    covered = int((tri_id >= 0).sum())
    pixels = {"exact": covered, "slack": covered + 777, "every pixel": None}[rows]
    v2 = bump.clone().requires_grad_(True)
    out = R.render_visible(CTX, mesh, cam, tri_id, crossings=n + slack, pixels=pixels, channels=("mask", "normal"),
                           vertices=v2, topology=topo)
    loss(out).backward()
    torch.testing.assert_close(out["mask"], ref["mask"], atol=1e-5, rtol=0)
    torch.testing.assert_close(out["normal"], ref["normal"], atol=1e-5, rtol=0)
    assert torch.isfinite(v2.grad).all()
    torch.testing.assert_close(v2.grad, v1.grad, atol=1e-4 * v1.grad.abs().max(), rtol=1e-4)
    # too few slots drop crossings: the silhouette's antialias is then visibly incomplete
    short = R.render_visible(CTX, mesh, cam, tri_id, crossings=n // 2, channels=("mask",), vertices=bump,
                             topology=topo)
    assert (short["mask"] - ref["mask"]).abs().sum() > 1.0


@pytest.mark.parametrize("rows", ["render", "exact", "slack", "every pixel"])
def test_per_pixel_channels_are_the_images_covered_pixels(rows):
    # per_pixel: the rows are the images' values at exactly the covered pixels (each once), padding rows are 0 and
    # point past the batch; a loss over the rows has the images' gradient
    mesh = _sphere(3)
    bump = mesh.vertices * (1 + 0.15 * torch.sin(3 * mesh.vertices[:, :1]))
    cam = orbit_camera(torch.tensor([0.0, 40.0]), torch.tensor([0.0, 20.0]), torch.tensor([3.0, 3.0]),
                       torch.zeros(2, 3), fov_deg=45, resolution=(40, 48))
    channels = ("mask", "normal", "depth", "points")
    w = torch.rand(2, 40, 48, 3, generator=torch.Generator().manual_seed(0))
    v1 = bump.clone().requires_grad_(True)
    ref = R.render(CTX, mesh, cam, channels=channels, vertices=v1)
    (ref["normal"] * w).sum().backward()
    v2 = bump.clone().requires_grad_(True)
    if rows == "render":
        out = R.render(CTX, mesh, cam, channels=channels, vertices=v2, per_pixel=True)
    else:
        tri_id = R.visible_faces(CTX, mesh, cam, vertices=bump)
        covered = int((tri_id >= 0).sum())
        n = int(R.silhouette_crossings(mesh, cam, vertices=bump))
        out = R.render_visible(CTX, mesh, cam, tri_id, crossings=n, vertices=v2, channels=channels, per_pixel=True,
                               pixels={"exact": covered, "slack": covered + 99, "every pixel": None}[rows])
    pix, total = out["pixel"], 2 * 40 * 48
    held = pix < total
    cover = ref["mask"].new_zeros(total)
    cover[pix[held]] = 1
    assert torch.equal(cover.view(2, 40, 48) > 0, R.visible_faces(CTX, mesh, cam, vertices=bump) >= 0)
    assert pix[held].unique().numel() == int(held.sum())
    for ch in ("normal", "depth", "points"):
        img = ref[ch].reshape(total, -1)
        got = out[ch].reshape(pix.shape[0], -1)
        torch.testing.assert_close(got[held], img[pix[held]], atol=1e-5, rtol=0)
        assert (got[~held] == 0).all()
    (out["normal"][held] * w.reshape(total, 3)[pix[held]]).sum().backward()
    torch.testing.assert_close(v2.grad, v1.grad, atol=1e-4 * v1.grad.abs().max(), rtol=1e-4)


def test_nvdiffrast_context_keeps_its_module_and_context(monkeypatch):
    # the context's fields are filled by name: a field added before them once took nvdiffrast's module, and every
    # nvdiffrast render failed (only a GPU run showed it)
    from v2m4.render import _nvdiffrast

    dr, glctx = object(), object()
    monkeypatch.setattr(_nvdiffrast, "make_context", lambda device: (dr, glctx))
    ctx = R.context("nvdiffrast", "cuda")
    assert ctx.backend == "nvdiffrast" and ctx._dr is dr and ctx._glctx is glctx and ctx.compiled is True


def test_nvdiffrast_keeps_a_rasteriser_context_per_batch_shape(monkeypatch):
    # nvdiffrast's rasteriser reallocates its buffers (each free waits on the device) whenever a call's batch shape
    # differs from its previous call's: shapes that alternate get a context each, the least recently used dropped
    from v2m4.render import _nvdiffrast

    made = []

    class FakeDr:
        def RasterizeCudaContext(self, device):
            made.append(object())
            return made[-1]

    first = object()
    monkeypatch.setattr(_nvdiffrast, "make_context", lambda device: (FakeDr(), first))
    ctx = R.context("nvdiffrast", "cuda")
    key, video = (450, 128, 128), (24, 256, 256)
    a, b = _nvdiffrast.raster_context(ctx, key), _nvdiffrast.raster_context(ctx, video)
    assert a is first and b is not a and len(made) == 1
    for _ in range(3):
        assert _nvdiffrast.raster_context(ctx, key) is a and _nvdiffrast.raster_context(ctx, video) is b
    assert len(made) == 1
    for n in range(4):
        _nvdiffrast.raster_context(ctx, (n + 1, 64, 64), keep=4)
    assert list(ctx._glctxs) == [(n + 1, 64, 64) for n in range(4)]


def test_given_normals_replace_the_computed_ones_in_values_and_gradients():
    """Many views of one pose may pass that pose's vertex normals once (expanded): the normal channel and its
    gradients are those of the normals render finds per view; other normals show in the channel."""
    mesh = _sphere(2)
    cams = orbit_camera(torch.tensor([0.0, 1.5, 3.0]), torch.tensor([0.2, -0.1, 0.3]), torch.full((3,), 3.0),
                        torch.zeros(3, 3), fov_deg=40, resolution=(40, 40))
    w = torch.randn(3, 40, 40, 3, generator=torch.Generator().manual_seed(0))

    def run(shared):
        x = mesh.vertices.clone().requires_grad_(True)
        kw = {"normals": R.vertex_normals(x, mesh.faces)[None].expand(3, -1, -1)} if shared else {}
        n = R.render(CTX, mesh, cams, channels=("normal",), vertices=x[None].expand(3, -1, -1), **kw)["normal"]
        (n * w).sum().backward()
        return n.detach(), x.grad

    (n0, g0), (n1, g1) = run(False), run(True)
    torch.testing.assert_close(n1, n0, atol=1e-6, rtol=0)
    torch.testing.assert_close(g1, g0, atol=1e-5, rtol=1e-4)
    flipped = R.render(CTX, mesh, cams, channels=("normal", "mask"), normals=-R.vertex_normals(mesh.vertices, mesh.faces))
    seen = flipped["mask"] > 0.99
    assert (flipped["normal"][seen] * n0[seen]).sum(-1).max() < -0.9


def test_texture_taps_read_what_sample_texture_reads():
    """Reads worked out once (``texture_taps``, what a texture fit reuses every step) give sample_texture's values
    and texture gradients exactly, border clamping included; taps of another texture size are refused."""
    from v2m4.errors import V2M4Error

    g = torch.Generator().manual_seed(0)
    uv = torch.rand(500, 2, generator=g) * 1.2 - 0.1  # some outside [0, 1]: clamped to the border
    tex = torch.rand(16, 12, 3, generator=g)
    a, b = tex.clone().requires_grad_(True), tex.clone().requires_grad_(True)
    w = torch.rand(500, 3, generator=g)
    pa, pb = R.sample_texture(a, uv), R.sample_texture(b, R.texture_taps(uv, (16, 12)))
    assert torch.equal(pa, pb)
    (pa * w).sum().backward()
    (pb * w).sum().backward()
    assert torch.equal(a.grad, b.grad) and float(a.grad.abs().sum()) > 0
    with pytest.raises(V2M4Error):
        R.sample_texture(tex, R.texture_taps(uv, (12, 16)))
