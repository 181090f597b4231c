"""What the bench's `jitter` column weighs: each vertex once, however the mesh is split, against each surface
position once (vertices split at UV seams or per face welded) and against the surface's area.

`metrics.geometry.vertex_jitter` is the mean over a mesh's vertices of the acceleration's norm. A vertex split
into copies (the ground-truth assets split theirs per face or per UV chart; the textured output splits its own at
its atlas seams) counts once per copy, and a finely tessellated part counts more than a coarse one of the same
area. This program scores the same sequences three ways: per vertex (the column), per welded position (copies
that share every frame's position counted once), and area-weighted (each vertex weighted by a third of its faces'
area at the first frame: the mean over the surface, whatever its tessellation). For the ground truth at the bench's
frames; and for kept `full` runs (``--runs``), the output once-aligned as the column scores it, both as written
(textured, split at its seams) and as registered (the untextured mesh the `register` method scores).

    python -m v2m4.bench --method full --items ITEM --resolution 256 --max-frames 12 --keep-runs runs/
    python bench/jitter_weights.py [--runs runs/ --items ITEM,...]
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from v2m4.bench import BenchSettings, git_commit, load_selected_item, machine_description, run_item  # noqa: E402
from v2m4.data.bench import list_items  # noqa: E402
from v2m4.geometry import face_areas  # noqa: E402
from v2m4.metrics import geometry as G  # noqa: E402
from _common import write_table  # noqa: E402


def three_ways(v: torch.Tensor, faces: torch.Tensor) -> dict[str, float]:
    """v (T, V, 3) in diagonal units, faces (F, 3): jitter per vertex, per welded position, area-weighted."""
    acc = (v[2:] - 2 * v[1:-1] + v[:-2]).norm(dim=-1)  # (T - 2, V)
    V = v.shape[1]
    _, first = _welded(v)
    a = face_areas(v[0], faces)
    w = torch.zeros(V, dtype=v.dtype).index_add_(0, faces.reshape(-1), (a / 3).repeat_interleave(3))
    return {"per_vertex": round(G.vertex_jitter(v), 6), "welded": round(G.vertex_jitter(v[:, first]), 6),
            "area": round(float((acc * w).sum(1).mean() / w.sum()), 6), "vertices": V, "positions": len(first)}


def _welded(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(inverse, first) of the vertices of v (T, V, 3) that share every frame's position: each vertex's index among
    the distinct trajectories, and each trajectory's first vertex."""
    _, first, inv = np.unique(v.transpose(0, 1).reshape(v.shape[1], -1).numpy(), axis=0, return_index=True,
                              return_inverse=True)
    return torch.from_numpy(inv.reshape(-1)), torch.from_numpy(first)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default=None, help="the folder given to the bench's --keep-runs (optional)")
    ap.add_argument("--items", default=None, help="comma-separated item ids (default: every item)")
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--max-frames", type=int, default=12)
    ap.add_argument("--name", default="jitter_weights")
    a = ap.parse_args()
    items = a.items.split(",") if a.items else list_items()
    rows = {}
    for item_id in items:
        item = load_selected_item(item_id, a.max_frames, a.resolution)
        gt = item.gt_vertices.double()
        diag = float((gt[0].max(0).values - gt[0].min(0).values).norm())
        row = {"gt": three_ways(gt / diag, item.faces.long())}
        run = Path(a.runs) / item_id / "run" if a.runs else None
        if run is not None and run.is_dir():
            s = BenchSettings(method="full", items=(item_id,), resolution=a.resolution, max_frames=a.max_frames)
            _, _, _, res = run_item(item_id, s, run, resume=True)
            key = res.keyframes.long().tolist()
            anim = res.animation
            textured = [anim.frame(t) for t in key]
            # the once-alignment the column uses (its seed and samples), as a similarity in world units
            _, world = G.sequence_geometry([m.vertices.float() for m in textured], [m.faces for m in textured],
                                           item.gt_vertices.float(), item.faces, per_frame=False)
            v = torch.stack([G.apply(world.double(), m.vertices.double()) for m in textured]) / diag
            faces = textured[0].faces.long()
            row["output_textured"] = three_ways(v, faces)
            # the registered mesh before its atlas split it: each position once, the faces re-indexed onto them
            inv, first = _welded(v)
            row["output_welded_mesh"] = three_ways(v[:, first], inv[faces])
        rows[item_id] = row
        print(item_id, row, flush=True)
    out = {"program": "bench/jitter_weights.py", "date": datetime.date.today().isoformat(),
           "machine": machine_description("cpu"), "commit": git_commit(), "resolution": a.resolution,
           "max_frames": a.max_frames, "items": rows}
    lines = [f"**jitter, three weightings** on {out['machine']}, {out['date']}, commit {out['commit']}; "
             f"{a.max_frames} frames evenly spread; fraction of the first frame's diagonal per frame²\n",
             "| item | sequence | vertices / positions | per vertex (the column) | per welded position | "
             "area-weighted |", "|---|---|---|---|---|---|"]
    for item_id, row in rows.items():
        for k, r in row.items():
            lines.append(f"| {item_id} | {k} | {r['vertices']} / {r['positions']} | {r['per_vertex']:.4f} | "
                         f"{r['welded']:.4f} | {r['area']:.4f} |")
    write_table(a.name, out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
