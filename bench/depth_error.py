"""Where the re-posed meshes' depth error comes from: per item and seed, the error of the size each frame's
generated mesh is given, and the place error it becomes once the camera search fits the silhouette.

One view cannot tell size from distance: the camera search puts a mesh as far away as its size needs to fill the
silhouette, so a size error of e becomes a depth error of e times the distance, several object diagonals on the
bench. The re-pose gives every frame's mesh the first one's surface area (``consistent_scales``) and then smooths
the depths over time (``steady_depths``). This measures, against the ground truth, relative to frame 0 (which is
how the bench's once-aligned F-score sees the sequence):

- ``size_err_max``: the area rule's largest size error (the generated mesh's area against the truth's; the
  synthetic generator's decimation and its 1% low-frequency displacement change areas by a few %);
- ``pos_err_raw_max``: the largest displacement error of the true centroid (% of the diagonal), areas equal, no
  smoothing; ``pos_err_max`` and ``pos_err_last`` with the depth smoothing (the pipeline's re-pose);
- ``depth_diag``: the camera's distance to the object in object diagonals (the error's lever).

F-score@2% needs the place error under ~2% of the diagonal, so with a depth of 2-4 diagonals the size must be right
to 0.5-1% per frame.

    python bench/depth_error.py --device cpu --preset fast --resolution 128 --frames 8 --seeds 0,1 \\
        --out bench/results/depth_error.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from v2m4 import render as R  # noqa: E402
from v2m4.bench import git_commit, load_selected_item, machine_description  # noqa: E402
from v2m4.config import PipelineConfig  # noqa: E402
from v2m4.data.bench import list_items  # noqa: E402
from v2m4.generators.synthetic import SyntheticGenerator  # noqa: E402
from v2m4.stages.camera import consistent_scales, repose_scales, search_poses  # noqa: E402
from _common import BENCH_DIR  # noqa: E402


def place_errors(cam_from_canonical: torch.Tensor, scales: torch.Tensor, removed: torch.Tensor, gt: torch.Tensor,
                 diag: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(T,) size errors and (T,) centroid displacement errors (fractions of the diagonal), relative to frame 0.

    world_from_gt_t = W0 @ diag(k_t) @ cam_from_canonical_t @ canonical_from_gt_t: a perfect search and re-pose make
    it the same similarity for every t. Its scale against frame 0's is the size error; where it puts frame t's true
    centroid, against where frame 0's similarity puts it, is the place error."""
    C = cam_from_canonical.double()
    W0 = torch.linalg.inv(C[0])
    S = torch.diag_embed(torch.cat([scales.double()[:, None].expand(-1, 3), torch.ones(len(C), 1).double()], 1))
    X = W0 @ S @ C @ removed.double()
    s = torch.linalg.det(X[:, :3, :3]).abs() ** (1 / 3)
    c = gt.double().mean(1)
    at = (X[:, :3, :3] @ c[..., None])[..., 0] + X[:, :3, 3]
    at0 = (X[0, :3, :3] @ c[..., None])[..., 0] + X[0, :3, 3]
    return s / s[0] - 1, (at - at0).norm(dim=-1) / s[0] / diag


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", default=None, help="comma-separated ids (default: every p* item)")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    dev = torch.device(a.device)
    cfg = PipelineConfig.preset(a.preset).camera
    rows = []
    head = {"machine": machine_description(a.device), "device": a.device, "backend": a.backend, "preset": a.preset,
            "resolution": a.resolution, "frames": a.frames, "commit": git_commit(), "date": time.strftime("%Y-%m-%d")}
    print("| item | seed | size_err_max % | pos_err_raw_max % | pos_err_max % | pos_err_last % | depth_diag | sec |")
    print("|---|---|---|---|---|---|---|---|")
    items = a.items.split(",") if a.items else [i for i in list_items(BENCH_DIR) if i.startswith("p")]
    for item_id in items:
        item = load_selected_item(item_id, a.frames, a.resolution, BENCH_DIR)
        gen = SyntheticGenerator(item, seed=0)
        meshes = [gen.generate(item.frames.rgba[t], t).to(dev) for t in range(len(item.frames))]
        removed = torch.stack([gen.removed_transform(t) for t in range(len(item.frames))])
        diag = float((item.gt_vertices[0].max(0).values - item.gt_vertices[0].min(0).values).norm())
        ctx = R.context(a.backend, dev)
        for seed in (int(s) for s in a.seeds.split(",")):
            t0 = time.perf_counter()
            found = search_poses(meshes, item.frames, cfg, ctx, generator=torch.Generator().manual_seed(seed))
            sec = time.perf_counter() - t0
            C = found.cameras.cam_from_world.cpu()
            k_area = consistent_scales(meshes).cpu()
            k = repose_scales(meshes, C, item.frames.times, cfg)
            size, raw = place_errors(C, k_area, removed, item.gt_vertices, diag)
            _, pos = place_errors(C, k, removed, item.gt_vertices, diag)
            cam = item.camera.cam_from_world[0].double()
            depth = float(((cam[:3, :3] @ item.gt_vertices[0].double().mean(0)) + cam[:3, 3]).norm()) / diag
            row = {"item": item_id, "seed": seed, "size_err_max": float(size.abs().max()),
                   "pos_err_raw_max": float(raw.max()), "pos_err_max": float(pos.max()),
                   "pos_err_last": float(pos[-1]), "depth_diag": depth, "sec": sec,
                   "size_err": [round(float(x), 5) for x in size], "pos_err": [round(float(x), 5) for x in pos]}
            rows.append(row)
            if a.out:  # after every row, so a run cut short keeps what it measured
                Path(a.out).write_text(json.dumps({**head, "rows": rows}, indent=1))
            print(f"| {item_id} | {seed} | {100 * row['size_err_max']:.2f} | {100 * row['pos_err_raw_max']:.2f} | "
                  f"{100 * row['pos_err_max']:.2f} | {100 * row['pos_err_last']:.2f} | {depth:.2f} | {sec:.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()
