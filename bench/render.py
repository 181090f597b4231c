"""Renderer throughput: forward + backward of a textured ~20k-triangle mesh.

Claim measured: CPU torch backend, 8 views at 128² <= 0.1 s and at 256² <= 0.25 s; H100 nvdiffrast 2000 views
at 256² <= 0.1 s; H100 torch backend within 3x of nvdiffrast. On the CPU, rows ``torch-tensor`` are the torch
backend with its visibility found by the tensor rasteriser instead of the compiled kernel (``compiled=False``).

    python bench/render.py --device cpu            # rows for this machine
    python bench/render.py --device cuda           # both backends on the GPU

Each row: median of 5 timed runs after 2 warm-ups (synchronised on CUDA), of render(rgb + mask) and a
backward pass to the vertices and the 1024² texture. Rows of other devices already in the JSON are kept.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from v2m4 import Mesh  # noqa: E402
from v2m4 import render as R  # noqa: E402
from v2m4.camera import orbit_camera  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def scene(device, views: int, res: int, seed: int = 0):
    """A bumpy icosphere (20,480 faces) with planar uv and a smooth 1024² texture, seen from `views` orbit cameras
    at a distance where it covers about a third of each image (as an object in a camera-search frame does)."""
    import trimesh

    g = torch.Generator().manual_seed(seed)
    m = trimesh.creation.icosphere(subdivisions=5)
    v = torch.tensor(m.vertices, dtype=torch.float32)
    v = v * (1 + 0.05 * torch.sin(5 * v[:, :1]) * torch.cos(4 * v[:, 1:2]))
    # a seam-free planar uv and a smooth texture (random 16² colours upsampled): a generated asset's texture,
    # not noise, so that gradients through texture lookups are well defined and comparable between backends (a
    # uv seam makes a strip of triangles whose lookups span the whole texture, where neither backend's gradient
    # means anything)
    uv = 0.5 + 0.45 * v[:, :2] / v[:, :2].abs().max()
    tex = torch.nn.functional.interpolate(torch.rand(1, 3, 16, 16, generator=g), size=(1024, 1024), mode="bicubic",
                                          align_corners=False).clamp(0, 1)[0].permute(1, 2, 0).contiguous()
    mesh = Mesh(v, torch.tensor(m.faces), uv=uv, texture=tex).to(device)
    yaw = torch.rand(views, generator=g) * 6.283
    pitch = (torch.rand(views, generator=g) - 0.5) * 1.2
    cams = orbit_camera(yaw, pitch, torch.full((views,), 4.5), torch.zeros(views, 3), fov_deg=40,
                        resolution=(res, res)).to(device)
    return mesh, cams


def time_row(backend: str, device: str, views: int, res: int) -> dict:
    ctx = R.context("torch", device, compiled=False) if backend == "torch-tensor" else R.context(backend, device)
    mesh, cams = scene(device, views, res)
    topo = R.edge_topology(mesh.faces)
    v = mesh.vertices.clone().requires_grad_(True)
    tex = mesh.texture.clone().requires_grad_(True)
    m = Mesh(v, mesh.faces, uv=mesh.uv, texture=tex)
    cuda = device.startswith("cuda")
    coverage = []

    def step():
        out = R.render(ctx, m, cams, channels=("rgb", "mask"), topology=topo)
        (out["rgb"].mean() + out["mask"].mean()).backward()
        coverage.append(float(out["mask"].detach().mean()))
        v.grad = None
        tex.grad = None

    for _ in range(2):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**30
        name = torch.cuda.get_device_name()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # process peak RSS (KiB -> GiB)
        name = "cpu"
    return {"backend": backend, "device": name, "views": views, "res": res,
            "sec_fwd_bwd": round(statistics.median(times), 5), "peak_mem_gb": round(peak, 3),
            "coverage": round(statistics.mean(coverage), 3), "faces": int(mesh.faces.shape[0])}


def run_isolated(backend, device, views, res) -> dict:
    """One configuration per process, so the CPU peak-RSS figure is that configuration's own."""
    cmd = [sys.executable, __file__, "--one", backend, device, str(views), str(res)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return {"backend": backend, "device": device, "views": views, "res": res,
                "error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--one", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        b, d, n, r = args.one
        print(json.dumps(time_row(b, d, int(n), int(r))))
        return
    if args.device == "cpu":
        configs = [(b, "cpu", 8, r) for r in (128, 256) for b in ("torch", "torch-tensor")]
    else:
        configs = [(b, "cuda", n, 256) for b in ("nvdiffrast", "torch") for n in (64, 500, 2000)]
    rows = [run_isolated(*c) for c in configs]
    print(f"{'backend':<12} {'device':<26} {'views':>5} {'res':>4} {'s fwd+bwd':>10} {'peak GB':>8} {'cover':>6}")
    for r in rows:
        if "error" in r:
            print(f"{r['backend']:<12} {r['device']:<26} {r['views']:>5} {r['res']:>4}  ERROR {r['error']}")
        else:
            print(f"{r['backend']:<12} {r['device']:<26} {r['views']:>5} {r['res']:>4} {r['sec_fwd_bwd']:>10.4f} "
                  f"{r['peak_mem_gb']:>8.2f} {r['coverage']:>6.2f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "render.json"
    old = json.loads(path.read_text()) if path.exists() else {"rows": []}
    is_cpu = args.device == "cpu"
    kept = [r for r in old.get("rows", []) if (r.get("device") == "cpu") != is_cpu]
    meta = {"date": datetime.date.today().isoformat(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores",
            "commit": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                     text=True).stdout.strip()}
    runs = old.get("runs", {})
    runs["cpu" if is_cpu else "cuda"] = meta
    path.write_text(json.dumps({"date": meta["date"], "runs": runs, "rows": kept + rows}, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
