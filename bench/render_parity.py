"""Parity of the torch and nvdiffrast backends on one scene (needs a CUDA GPU and diffrp-nvdiffrast).

Claim measured: mask IoU >= 0.999, colour PSNR >= 40 dB and gradient cosine >= 0.95 between the backends.
Same bumpy 20k-face textured sphere as bench/render.py, 16 views at 256², gradients of an L2 image loss to
the vertex positions and the texture. Writes bench/results/render_parity.json.
"""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from render import scene  # noqa: E402

from v2m4 import Mesh  # noqa: E402
from v2m4 import render as R  # noqa: E402
from v2m4.camera import near_far  # noqa: E402
from v2m4.render._torch_aa import screen_area  # noqa: E402


def run(backend: str, mesh: Mesh, cams, target_rgb, target_mask, weight=None, nudge: float = 0.0):
    """Render, then backpropagate an L2 loss; weight (B, H, W) restricts the colour term to some pixels.

    Also returns the gradient to a similarity transform of the mesh (axis-angle, translation, log-scale at
    identity): the few parameters that camera search and global registration optimise. nudge moves every
    vertex by that relative amount (a float32 ulp is ~1e-7) to measure a backend against itself.
    """
    ctx = R.context(backend, "cuda")
    v = (mesh.vertices * (1 + nudge)).clone().requires_grad_(True)
    tex = mesh.texture.clone().requires_grad_(True)
    sim = torch.zeros(7, device=v.device, requires_grad=True)
    rx, ry, rz = sim[0], sim[1], sim[2]
    zero = torch.zeros((), device=v.device)
    K = torch.stack([torch.stack([zero, -rz, ry]), torch.stack([rz, zero, -rx]), torch.stack([-ry, rx, zero])])
    Rm = torch.linalg.matrix_exp(K)
    verts = sim[6].exp() * (v @ Rm.T) + sim[3:6]
    out = R.render(ctx, Mesh(verts, mesh.faces, uv=mesh.uv, texture=tex), cams, channels=("rgb", "mask", "tri_id"))
    w = 1.0 if weight is None else weight[..., None]
    loss = (w * (out["rgb"] - target_rgb) ** 2).sum() + ((out["mask"] - target_mask) ** 2).sum()
    loss.backward()
    return out["rgb"].detach(), out["mask"].detach(), v.grad, tex.grad, out["tri_id"], sim.grad


def main():
    if not torch.cuda.is_available():
        print("render_parity needs a CUDA GPU; skipped")
        return
    mesh, cams = scene("cuda", 16, 256)
    # the target: the same scene slightly moved, so gradients are non-trivial
    with torch.no_grad():
        tgt = R.render(R.context("torch", "cuda"), mesh, cams, channels=("rgb", "mask"),
                       vertices=mesh.vertices * 1.03 + torch.tensor([0.02, -0.01, 0.0], device="cuda"))
    a = run("torch", mesh, cams, tgt["rgb"], tgt["mask"])
    b = run("nvdiffrast", mesh, cams, tgt["rgb"], tgt["mask"])
    ma, mb = a[1] > 0.5, b[1] > 0.5
    iou = float((ma & mb).sum() / (ma | mb).sum())
    mse = float(((a[0] - b[0]) ** 2).mean())
    psnr = float(10 * torch.log10(torch.tensor(1.0 / max(mse, 1e-12))))
    cos = lambda x, y: float(torch.nn.functional.cosine_similarity(x.flatten(), y.flatten(), dim=0))  # noqa: E731
    cos_v, cos_t = cos(a[2], b[2]), cos(a[3], b[3])
    # The two rasterisers break ties differently (pixel centres on shared edges, ~2% of the covered pixels). A
    # pixel given to a different triangle contributes a different vertex gradient by construction, and where that
    # triangle is seen edge-on its barycentric derivatives are huge; so also compare with the colour term
    # restricted to the pixels both backends give to the same triangle (the silhouette term is kept whole).
    same = ((a[4] == b[4]) & (a[4] >= 0)).float()
    a2 = run("torch", mesh, cams, tgt["rgb"], tgt["mask"], same)
    b2 = run("nvdiffrast", mesh, cams, tgt["rgb"], tgt["mask"], same)
    cos_v_same = cos(a2[2], b2[2])
    am = run("torch", mesh, cams, tgt["rgb"], tgt["mask"], torch.zeros_like(same))
    bm = run("nvdiffrast", mesh, cams, tgt["rgb"], tgt["mask"], torch.zeros_like(same))
    cos_v_mask = cos(am[2], bm[2])
    # Pixels of sliver triangles (seen almost edge-on: screen area < 0.05 px²) have barycentric derivatives of
    # order 1 / area, and their float32 area is mostly rounding error, so each backend's vertex gradient there
    # is noise: measure each backend against itself with every vertex moved by ~1 ulp, and the two backends on
    # the pixels of well-conditioned triangles.
    na = run("torch", mesh, cams, tgt["rgb"], tgt["mask"], nudge=2e-7)
    nb = run("nvdiffrast", mesh, cams, tgt["rgb"], tgt["mask"], nudge=2e-7)
    cos_self_t, cos_self_n = cos(a[2], na[2]), cos(b[2], nb[2])
    with torch.no_grad():
        P = cams.clip_from_world(*near_far(mesh.vertices[None].expand(len(cams), -1, -1), cams))
        pos = torch.cat([mesh.vertices, torch.ones_like(mesh.vertices[:, :1])], -1) @ P.transpose(1, 2)
        px_area = screen_area(pos, mesh.faces, (256, 256)).abs()  # (B, F) pixels²
        tid = b[4].clamp_min(0)
        area_at = torch.gather(px_area, 1, tid.reshape(len(cams), -1)).view_as(tid)
        well = same * (area_at >= 0.05).float()
        # pixels whose centre lies inside the float triangle (snapped coverage also gives a triangle the centres
        # just outside it, where the barycentrics extrapolate)
        rt = R.rasterize(R.context("torch", "cuda"), pos.contiguous(), mesh.faces, (256, 256))
        u, v_ = rt[..., 0], rt[..., 1]
        inside = same * ((u >= 0) & (v_ >= 0) & (1 - u - v_ >= 0)).float()
    a3 = run("torch", mesh, cams, tgt["rgb"], tgt["mask"], well)
    b3 = run("nvdiffrast", mesh, cams, tgt["rgb"], tgt["mask"], well)
    cos_v_well = cos(a3[2], b3[2])
    a4 = run("torch", mesh, cams, tgt["rgb"], tgt["mask"], inside)
    b4 = run("nvdiffrast", mesh, cams, tgt["rgb"], tgt["mask"], inside)
    cos_v_inside = cos(a4[2], b4[2])
    cos_pose = cos(a[5], b[5])
    row = {"date": datetime.date.today().isoformat(), "device": torch.cuda.get_device_name(), "views": 16,
           "res": 256, "faces": int(mesh.faces.shape[0]), "mask_iou": round(iou, 5), "rgb_psnr_db": round(psnr, 2),
           "grad_cos_vertices": round(cos_v, 4), "grad_cos_texture": round(cos_t, 4),
           "grad_cos_vertices_same_triangle_pixels": round(cos_v_same, 4),
           "grad_cos_vertices_silhouette_only": round(cos_v_mask, 4),
           "same_triangle_frac": round(float(same.sum() / (b[4] >= 0).sum()), 4),
           "grad_cos_vertices_self_torch_1ulp": round(cos_self_t, 4),
           "grad_cos_vertices_self_nvdiffrast_1ulp": round(cos_self_n, 4),
           "well_conditioned_frac": round(float(well.sum() / (b[4] >= 0).sum()), 4),
           "grad_cos_vertices_well_conditioned_pixels": round(cos_v_well, 4),
           "grad_cos_similarity_transform": round(cos_pose, 4),
           "inside_float_frac": round(float(inside.sum() / (b[4] >= 0).sum()), 4),
           "grad_cos_vertices_inside_float_triangle_pixels": round(cos_v_inside, 4),
           "pass": iou >= 0.999 and psnr >= 40 and min(cos_v, cos_t) >= 0.95}
    print(json.dumps(row, indent=1))
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "render_parity.json").write_text(json.dumps(row, indent=1) + "\n")


if __name__ == "__main__":
    main()
