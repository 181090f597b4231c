"""How well can any depth rule place the frames? Translation error at perfect camera rotations and directions,
with each frame's depth left to a rule, as the camera search leaves it.

A generator normalises each mesh into a unit cube, and one view cannot tell size from distance, so the camera
search fixes a mesh's orientation and its direction from the camera but not its depth. The re-pose picks the depth
by a rule (``repose_scales``: equal surface areas, then depths smoothed over time). This program gives every
frame its true camera rotation and direction (the generator's removed similarity made rigid: the mesh keeps its
canonical size and the image is unchanged) and measures ``trans_err_med`` (the line the camera search's translation
error is held to) for:

- ``rule``: what the pipeline does (``consistent_scales`` then ``steady_depths``);
- ``area_only``: equal surface areas alone; ``none``: the generator's unit-cube sizes;
- ``still_<point>``: one depth for a point of each mesh, the object in place (the bounding-box centre, the surface
  centroid, the vertex mean, the canonical origin), whatever the rule would have chosen.

A figure above the line for every rule is the data's, not the search's: no single-view depth rule of these
reaches it at perfect cameras.

    python bench/depth_ceiling.py --out bench/results/depth_ceiling.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from v2m4.bench import git_commit, load_selected_item, machine_description  # noqa: E402
from v2m4.config import PipelineConfig  # noqa: E402
from v2m4.data.bench import list_items  # noqa: E402
from v2m4.generators.synthetic import SyntheticGenerator  # noqa: E402
from v2m4.geometry import surface_centroid  # noqa: E402
from v2m4.metrics.pose import pose_errors  # noqa: E402
from v2m4.stages.camera import repose_scales  # noqa: E402
from _common import BENCH_DIR  # noqa: E402


def rigid_true_cameras(item, gen, T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(cam_from_canonical (T, 4, 4) rigid at the true rotation and direction, removed (T, 4, 4) float64)."""
    G = torch.stack([gen.removed_transform(t) for t in range(T)]).double()
    C = item.camera.cam_from_world.double()
    C = C[0] if C.dim() == 3 else C
    M = C @ torch.linalg.inv(G)
    s = torch.det(M[:, :3, :3]).abs() ** (1 / 3)
    M[:, :3, :] /= s[:, None, None]  # scaling the camera frame about its centre leaves the image unchanged
    return M, G


def errors(item_id: str, frames: int) -> dict[str, float]:
    item = load_selected_item(item_id, frames, 128, BENCH_DIR)
    T = len(item.frames)
    gen = SyntheticGenerator(item, seed=0)
    meshes = [gen.generate(item.frames.rgba[t], t) for t in range(T)]
    M, G = rigid_true_cameras(item, gen, T)

    def err(k: torch.Tensor) -> float:
        W = M.clone()
        W[:, :3, :] *= k[:, None, None]
        return pose_errors(W, G, item.gt_vertices)["trans_err_med"]

    fast = PipelineConfig.fast().camera
    out = {"rule": err(repose_scales(meshes, M, item.frames.times, fast)),
           "area_only": err(repose_scales(meshes, M, item.frames.times, dataclasses.replace(fast, steady_depth=False))),
           "none": err(repose_scales(meshes, M, item.frames.times,
                                     dataclasses.replace(fast, steady_depth=False, consistent_scale=False)))}
    points = {"bbox_centre": torch.stack([(m.vertices.max(0).values + m.vertices.min(0).values) / 2 for m in meshes]),
              "surface_centroid": torch.stack([surface_centroid(m.vertices, m.faces) for m in meshes]),
              "vertex_mean": torch.stack([m.vertices.mean(0) for m in meshes]),
              "origin": torch.zeros(T, 3)}
    for name, p in points.items():
        cam = (M[:, :3, :3] @ p.double()[..., None])[..., 0] + M[:, :3, 3]
        y = cam.norm(dim=-1).log()
        out[f"still_{name}"] = err((y.mean() - y).exp())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", default=None, help="comma-separated ids (default: every p* item)")
    ap.add_argument("--frames", default="8,12", help="comma-separated frame counts (evenly spread keyframes)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    head = {"machine": machine_description("cpu"), "commit": git_commit(), "date": time.strftime("%Y-%m-%d"),
            "metric": "trans_err_med at true camera rotations and directions, depth by each rule"}
    items = a.items.split(",") if a.items else [i for i in list_items(BENCH_DIR) if i.startswith("p")]
    rows = []
    cols = None
    for frames in (int(f) for f in a.frames.split(",")):
        for item_id in items:
            row = errors(item_id, frames)
            if cols is None:
                cols = list(row)
                print("| item | frames | " + " | ".join(cols) + " |")
                print("|---|---|" + "---|" * len(cols))
            rows.append({"item": item_id, "frames": frames, **row})
            print(f"| {item_id} | {frames} | " + " | ".join(f"{100 * row[c]:.2f}%" for c in cols) + " |", flush=True)
            if a.out:
                Path(a.out).write_text(json.dumps({**head, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
