"""Where a batched render spends its time: a torch.profiler table of bench/render.py's step.

    python bench/profile_render.py --device cuda --backend torch --views 2000 --res 256
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from render import scene  # noqa: E402

from v2m4 import Mesh  # noqa: E402
from v2m4 import render as R  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--res", type=int, default=128)
    ap.add_argument("--rows", type=int, default=30)
    args = ap.parse_args()
    ctx = R.context(args.backend, args.device)
    mesh, cams = scene(args.device, args.views, args.res)
    topo = R.edge_topology(mesh.faces)
    v = mesh.vertices.clone().requires_grad_(True)
    tex = mesh.texture.clone().requires_grad_(True)
    m = Mesh(v, mesh.faces, uv=mesh.uv, texture=tex)

    def step():
        out = R.render(ctx, m, cams, channels=("rgb", "mask"), topology=topo)
        (out["rgb"].mean() + out["mask"].mean()).backward()

    for _ in range(2):
        step()
    acts = [torch.profiler.ProfilerActivity.CPU]
    if args.device.startswith("cuda"):
        acts.append(torch.profiler.ProfilerActivity.CUDA)
        torch.cuda.synchronize()
    with torch.profiler.profile(activities=acts) as prof:
        step()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
    key = "cuda_time_total" if args.device.startswith("cuda") else "cpu_time_total"
    key = "self_" + key
    print(prof.key_averages().table(sort_by=key, row_limit=args.rows, max_name_column_width=60))


if __name__ == "__main__":
    main()
