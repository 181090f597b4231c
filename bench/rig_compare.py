"""Rig decomposition: ours (``v2m4.export.skinning.decompose``) against py-dem-bones (Dem Bones' SSDR through its
``solve_skinning``), and our error by bone count (the evidence for ``v2m4.export.rig.DEFAULT_BONES``).

Inputs (offline): every bench item's ground-truth vertex sequence, subsampled to --frames frames; and with
--registered ITEMS, our own registered animation of those items (``v2m4.pipeline.reconstruct`` with the synthetic
generator and the tests' tiny config at --res px on the same frames). Errors are the hierarchical rig's
(``rig_errors``) against the sequence decomposed: RMS and max vertex error as fractions of its bounding-box
diagonal; seconds are the decomposition + hierarchy. Writes bench/results/rig_compare.json and .md.

    V2M4_BENCH_DIR=/work/shared/data/bench python bench/rig_compare.py [--registered p04_riggedfigure]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from v2m4.data.bench import list_items, load_item, vertex_colors  # noqa: E402
from v2m4.export.rig import fit_rig, rig_errors, write_rigged_glb  # noqa: E402
from v2m4.export.skinning import skin_vertices  # noqa: E402
from v2m4.export.validate import validate_glb, validator_available  # noqa: E402
from v2m4.types import Animation, Mesh  # noqa: E402
from _common import BENCH_DIR  # noqa: E402


def frames_of(item_id: str, n: int) -> list[int]:
    total = len(load_item(item_id, bench_dir=BENCH_DIR).frames)
    return sorted({round(i * (total - 1) / (n - 1)) for i in range(n)})


def measure(anim: Animation, bones: int, method: str, validate: bool) -> dict:
    mesh = anim.mesh.to("cpu")
    try:
        rig = fit_rig(mesh.vertices, anim.vertices.cpu(), n_bones=bones, faces=mesh.faces, method=method)
    except Exception as e:  # noqa: BLE001 (the comparison records why a method failed)
        return {"error": f"{type(e).__name__}: {e}"[:300]}
    r = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in rig_errors(anim, rig).items()}
    w = rig.skinning.weights
    r["influences_max"] = int((w > 1e-9).sum(1).max())
    r["influences_mean"] = round(float((w > 1e-9).sum(1).double().mean()), 2)
    r["depth"] = max(_depth(rig.parents, b) for b in range(len(rig.parents)))
    if validate:
        with tempfile.TemporaryDirectory() as tmp:
            r["glb_bytes"] = write_rigged_glb(f"{tmp}/r.glb", mesh, rig, anim.times.cpu().numpy())["bytes"]
            if validator_available() is None:
                v = validate_glb(f"{tmp}/r.glb")
                r["validator_errors"], r["validator_warnings"] = v["errors"], v["warnings"]
        from v2m4.export.rig import rig_vertices
        r["hier_vs_flat_max"] = float((rig_vertices(rig) - skin_vertices(rig.skinning, rig.rest)).abs().max())
    return r


def _depth(parents, b):
    d = 0
    while parents[b] >= 0:
        b, d = parents[b], d + 1
    return d


def gt_animation(item_id: str, n: int) -> Animation:
    sel = frames_of(item_id, n)
    item = load_item(item_id, frames=sel, resolution=(64, 64), bench_dir=BENCH_DIR)
    gt = item.gt_vertices.float()
    mesh = Mesh(gt[0], item.faces.long(), vertex_colors=vertex_colors(item))
    return Animation(mesh, gt, torch.tensor(sel, dtype=torch.float32) / item.frames.fps, torch.tensor([0, len(sel) - 1]))


def registered_animation(item_id: str, n: int, res: int) -> tuple[Animation, float]:
    from v2m4.config import PipelineConfig
    from v2m4.generators.synthetic import SyntheticGenerator
    from v2m4.pipeline import reconstruct

    sel = frames_of(item_id, n)
    item = load_item(item_id, frames=sel, bench_dir=BENCH_DIR)
    cfg = PipelineConfig.from_file(ROOT / "tests" / "tiny_config.json", PipelineConfig.preset("fast"))
    cfg = cfg.with_overrides({"resolution": res})
    t0 = time.perf_counter()
    result = reconstruct(item.frames, SyntheticGenerator(item, seed=0), cfg, log="quiet")
    return result.animation, time.perf_counter() - t0


def _row(label, anim, bones_list, default, skip_dem_bones):
    row = {"vertices": int(anim.vertices.shape[1]), "frames": len(anim), "ours": {}}
    for b in bones_list:
        row["ours"][str(b)] = measure(anim, b, "ours", validate=b == default)
    if not skip_dem_bones:
        row["dem_bones"] = {str(default): measure(anim, default, "dem-bones", validate=False)}
    print(label, json.dumps(row), flush=True)
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--bones", default="8,16,24,32")
    ap.add_argument("--default", type=int, default=16)
    ap.add_argument("--items", default="")
    ap.add_argument("--registered", default="p04_riggedfigure")
    ap.add_argument("--res", type=int, default=128)
    ap.add_argument("--skip-dem-bones", action="store_true")
    a = ap.parse_args()
    bones_list = [int(b) for b in a.bones.split(",")]
    items = a.items.split(",") if a.items else [i for i in list_items(BENCH_DIR) if i.startswith("p")]
    out = {"date": datetime.date.today().isoformat(), "machine": f"{platform.machine()} CPU, {platform.node()}",
           "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                    text=True).stdout.strip(),
           "torch": torch.__version__, "dem_bones": _dem_bones_version(), "frames": a.frames, "default": a.default,
           "ground_truth": {}, "registered": {}}
    for item_id in items:
        out["ground_truth"][item_id] = _row(item_id, gt_animation(item_id, a.frames), bones_list, a.default,
                                            a.skip_dem_bones)
    for item_id in [i for i in a.registered.split(",") if i]:
        anim, secs = registered_animation(item_id, a.frames, a.res)
        row = _row(f"{item_id} (registered)", anim, bones_list, a.default, a.skip_dem_bones)
        row["reconstruct_seconds"] = round(secs, 1)
        out["registered"][item_id] = row
    res = ROOT / "bench" / "results"
    (res / "rig_compare.json").write_text(json.dumps(out, indent=1) + "\n")
    (res / "rig_compare.md").write_text(markdown(out))


def _dem_bones_version() -> str:
    try:
        import py_dem_bones
        return py_dem_bones.__version__
    except Exception as e:  # noqa: BLE001
        return f"unavailable: {type(e).__name__}: {e}"


def _fmt(r: dict) -> str:
    if "error" in r:
        return f"failed: {r['error'][:60]} | | | |"
    return (f"{100 * r['rms_err']:.3f} | {100 * r['max_err']:.2f} | {r['seconds']:.1f} | "
            f"{r['influences_max']} ({r['influences_mean']}) |")


def markdown(out: dict) -> str:
    lines = [f"# Rig decomposition: ours vs py-dem-bones, and ours by bone count\n",
             f"{out['date']}, {out['machine']}, commit {out['commit']}, torch {out['torch']}, py-dem-bones "
             f"{out['dem_bones']}; {out['frames']} frames per item. Errors: the hierarchical rig against the "
             f"sequence it was fitted to, % of the bounding-box diagonal. Influences: max (mean) per vertex.\n",
             "| input | item | method | bones | RMS % | max % | seconds | influences |", "|---|---|---|---|---|---|---|---|"]
    for kind in ("ground_truth", "registered"):
        for item_id, row in out[kind].items():
            for b, r in row["ours"].items():
                lines.append(f"| {kind} | {item_id} | ours | {b} | {_fmt(r)}")
            for b, r in row.get("dem_bones", {}).items():
                lines.append(f"| {kind} | {item_id} | py-dem-bones | {b} | {_fmt(r)}")
    lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
