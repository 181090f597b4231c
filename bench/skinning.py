"""Skinned export (experimental): skinning decomposition of each bench item's vertex sequence, written as a
skinned GLB, validated, with its reconstruction error.

The sequence decomposed is the ground truth's (24 frames evenly spread), so the figure is the decomposition's own
error, apart from every other stage. Writes bench/results/skinning.json.

    python bench/skinning.py [--bones 16]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from v2m4.data.bench import list_items, load_item, vertex_colors  # noqa: E402
from v2m4.export.gltf import write_skinned_glb  # noqa: E402
from v2m4.export.skinning import decompose, to_gltf  # noqa: E402
from v2m4.export.validate import validate_glb, validator_available  # noqa: E402
from v2m4.types import Mesh  # noqa: E402
from _common import BENCH_DIR  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bones", type=int, default=16)
    ap.add_argument("--frames", type=int, default=24)
    a = ap.parse_args()
    rows = {}
    for item_id in [i for i in list_items(BENCH_DIR) if i.startswith("p")]:
        n = len(load_item(item_id, bench_dir=BENCH_DIR).frames)
        sel = sorted({round(i * (n - 1) / (a.frames - 1)) for i in range(a.frames)})
        item = load_item(item_id, frames=sel, resolution=(64, 64), bench_dir=BENCH_DIR)
        gt = item.gt_vertices
        sk = decompose(gt[0], gt, n_bones=a.bones)
        r = {"vertices": int(gt.shape[1]), "frames": int(gt.shape[0]), "bones": a.bones,
             "rmse_frac_diag": round(sk.rmse, 6), "max_err_frac_diag": round(sk.max_err, 6),
             "seconds": round(sk.seconds, 2)}
        with tempfile.TemporaryDirectory() as tmp:
            mesh = Mesh(gt[0], item.faces.long(), vertex_colors=vertex_colors(item))
            # frame times (the clips loop, so the ground truth's own sample times wrap around)
            times = torch.tensor(sel, dtype=torch.float64).numpy() / item.frames.fps
            stats = write_skinned_glb(f"{tmp}/s.glb", mesh, to_gltf(sk), times)
            r["glb_bytes"] = stats["bytes"]
            if validator_available() is None:
                v = validate_glb(f"{tmp}/s.glb")
                r["validator_errors"], r["validator_warnings"] = v["errors"], v["warnings"]
        rows[item_id] = r
        print(item_id, r, flush=True)
    out = {"date": datetime.date.today().isoformat(), "machine": f"{platform.machine()} CPU",
           "torch": torch.__version__, "items": rows}
    (ROOT / "bench" / "results" / "skinning.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
