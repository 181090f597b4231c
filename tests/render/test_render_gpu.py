"""GPU checks of the renderer: same results on CUDA as on the CPU, and the nvdiffrast backend agrees."""

import pytest
import torch
import trimesh

from v2m4 import Mesh
from v2m4 import render as R
from v2m4.camera import orbit_camera

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _scene(device):
    m = trimesh.creation.icosphere(subdivisions=4)
    g = torch.Generator().manual_seed(0)
    mesh = Mesh(torch.tensor(m.vertices, dtype=torch.float32), torch.tensor(m.faces),
                vertex_colors=torch.rand(len(m.vertices), 3, generator=g)).to(device)
    cams = orbit_camera(torch.tensor([0.0, 2.0]), torch.tensor([0.2, -0.4]), torch.tensor([3.0, 3.5]),
                        torch.zeros(2, 3), fov_deg=40, resolution=(96, 96)).to(device)
    return mesh, cams


def test_torch_backend_same_on_cuda_and_cpu():
    mesh, cams = _scene("cpu")
    cpu = R.render(R.context("torch", "cpu"), mesh, cams, channels=("rgb", "mask", "depth"))
    gpu = R.render(R.context("torch", "cuda"), mesh.to("cuda"), cams.to("cuda"), channels=("rgb", "mask", "depth"))
    for k in cpu:
        agree = (cpu[k] - gpu[k].cpu()).abs() < 1e-3
        assert agree.float().mean() > 0.999, k


def test_nvdiffrast_backend_agrees_with_torch():
    pytest.importorskip("nvdiffrast")
    mesh, cams = _scene("cuda")
    a = R.render(R.context("torch", "cuda"), mesh, cams, channels=("rgb", "mask"))
    b = R.render(R.context("nvdiffrast", "cuda"), mesh, cams, channels=("rgb", "mask"))
    ma, mb = a["mask"] > 0.5, b["mask"] > 0.5
    assert (ma & mb).sum() / (ma | mb).sum() > 0.999
    assert ((a["rgb"] - b["rgb"]) ** 2).mean() < 1e-4


def test_torch_backend_gradients_and_coverage_same_on_cuda_and_cpu():
    # the CUDA path has its own gathers (_RowGather) and grouping of triangle boxes; coverage is exact integer
    # arithmetic on snapped vertices, so the visible triangle must be the same on both devices
    mesh, cams = _scene("cpu")
    out = {}
    for dev in ("cpu", "cuda"):
        v = mesh.vertices.to(dev).clone().requires_grad_(True)
        m = Mesh(v, mesh.faces.to(dev), vertex_colors=mesh.vertex_colors.to(dev))
        r = R.render(R.context("torch", dev), m, cams.to(dev), channels=("rgb", "mask", "tri_id"))
        (r["rgb"].sum() + r["mask"].sum()).backward()
        out[dev] = (r["tri_id"].cpu(), v.grad.cpu())
    assert (out["cpu"][0] == out["cuda"][0]).float().mean() > 0.9999
    cos = torch.nn.functional.cosine_similarity(out["cpu"][1].flatten(), out["cuda"][1].flatten(), dim=0)
    assert cos > 0.999
