"""Texture-stage variants on one set of registered runs: the same camera search and registration (kept runs of a
`full` table, resumed), the texture baked again under each variant's config, every run scored. The novel-view
columns then differ only by the texture, and ``nv_psnr_texture_bound`` (a perfect texture on that geometry) says how
far any texture could take ``nv_psnr``.

Claim measured: which texture changes raise ``nv_psnr`` (median over items, and no item down by more than 0.3 dB)
without lowering the input view's ``psnr`` by more than 0.3 dB on any item.

    python -m v2m4.bench --method full --resolution 256 --max-frames 12 --keep-runs /tmp/keep_full
    python bench/texture_variants.py --keep /tmp/keep_full \\
        --variant 'agree=texture.agree_tol=0.03' --variant 'multi=texture.multi_keyframes="all"'
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import BENCH_DIR  # noqa: E402
from v2m4.bench import BenchSettings, run_bench  # noqa: E402

RESULTS = ROOT / "bench" / "results"
COLUMNS = ("psnr", "ssim", "nv_psnr", "nv_psnr_shared", "nv_psnr_texture_bound", "nv_ssim", "nv_mask_iou", "mask_iou",
           "unreached_frac", "sec_texture_per_frame")
# a stage's checkpoints from the texture on: removed so the resumed run bakes and scores again
LATER = ("texture.npz", "animation.npz")


def parse_variant(text: str) -> tuple[str, dict]:
    """'name=stage.field=JSON,stage.field=JSON' -> (name, {"stage": {"field": value}})."""
    name, _, rest = text.partition("=")
    over: dict = {}
    for part in filter(None, rest.split(",")):
        key, _, value = part.partition("=")
        stage, _, field = key.partition(".")
        over.setdefault(stage, {})[field] = json.loads(value)
    return name, over


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", default=None, help="kept runs of a `full` table (its --keep-runs folder)")
    ap.add_argument("--variant", action="append", default=[], help="name=stage.field=JSON[,...] (repeatable)")
    ap.add_argument("--items", nargs="*", default=None)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--max-frames", type=int, default=12)
    ap.add_argument("--out", default=str(RESULTS / "texture_variants.json"))
    ap.add_argument("--merge", nargs="*", default=None, help="outputs of runs over parts of the items, merged into "
                    "--out (nothing is run)")
    a = ap.parse_args()
    if a.merge:
        write(merge(a.merge), a.out)
        return 0
    if not a.keep:
        ap.error("--keep is needed unless --merge is given")
    keep = Path(a.keep)
    items = a.items or sorted(p.name for p in keep.iterdir() if (p / "run" / "checkpoints").is_dir())
    variants = [("base", {})] + [parse_variant(v) for v in a.variant]
    tables = {}
    for name, over in variants:
        with tempfile.TemporaryDirectory() as tmp:
            for item in items:
                shutil.copytree(keep / item, Path(tmp) / item)
                for f in LATER:
                    (Path(tmp) / item / "run" / "checkpoints" / f).unlink(missing_ok=True)
            s = BenchSettings(method="full", items=tuple(items), resolution=a.resolution, max_frames=a.max_frames,
                              overrides=over or None, bench_dir=str(BENCH_DIR))
            tables[name] = run_bench(s, keep_runs=tmp,
                                     progress=lambda i, r, p: print(f"  {name} {i}: nv_psnr={r.get('nv_psnr')}",
                                                                    file=sys.stderr, flush=True))
    out = {"program": "bench/texture_variants.py", "commit": tables["base"]["commit"], "date": tables["base"]["date"],
           "machine": tables["base"]["machine"], "kept_runs": str(keep),
           "settings": {"resolution": a.resolution, "max_frames": a.max_frames},
           "variants": {name: {"overrides": over, "items": {i: {c: r.get(c) for c in COLUMNS}
                                                             for i, r in tables[name]["items"].items()}}
                        for name, over in variants}}
    write(summarise(out), a.out)
    return 0


def summarise(out: dict) -> dict:
    """Each variant's medians and its differences from the base, item by item, added to ``out``."""
    base = out["variants"]["base"]["items"]
    items = sorted(base)
    for v in out["variants"].values():
        rows = v["items"]
        d_nv = [rows[i]["nv_psnr"] - base[i]["nv_psnr"] for i in items]
        d_in = [rows[i]["psnr"] - base[i]["psnr"] for i in items]
        # a column an older output lacks (input SSIM before 98d304b) has no median
        v.update({"median": {c: statistics.median(vals) for c in COLUMNS
                             if (vals := [r[c] for r in rows.values() if r.get(c) is not None])},
                  "nv_psnr_median_gain_db": round(statistics.median(d_nv), 3),
                  "nv_psnr_worst_item_db": round(min(d_nv), 3), "psnr_worst_item_db": round(min(d_in), 3)})
    return out


def merge(paths: list[str]) -> dict:
    """One output from runs over parts of the items (side by side) or with other variants of the same kept runs
    (each run bakes its own base)."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    out = dict(parts[0], kept_runs=[p["kept_runs"] for p in parts])
    out["variants"] = {}
    for p in parts:
        for name, v in p["variants"].items():
            out["variants"].setdefault(name, {"overrides": v["overrides"], "items": {}})["items"].update(v["items"])
    return summarise(out)


def write(out: dict, path: str) -> None:
    base = out["variants"]["base"]["items"]
    items = sorted(base)
    Path(path).write_text(json.dumps(out, indent=1) + "\n")
    lines = [f"**texture variants** on the kept runs of one `full` table, {out['machine']}, {out['date']}, commit "
             f"{out['commit']}\n",
             "| variant | overrides | nv_psnr median | gain (median of items) | worst item | input psnr worst item | "
             "nv_psnr_shared median | texture bound median |", "|---|---|---|---|---|---|---|---|"]
    for name, v in out["variants"].items():
        m = v["median"]
        lines.append(f"| {name} | `{json.dumps(v['overrides'])}` | {m['nv_psnr']:.2f} | "
                     f"{v['nv_psnr_median_gain_db']:+.2f} | {v['nv_psnr_worst_item_db']:+.2f} | "
                     f"{v['psnr_worst_item_db']:+.2f} | {m['nv_psnr_shared']:.2f} | {m['nv_psnr_texture_bound']:.2f} |")
    lines += ["", "Per item, base: nv_psnr, the texture bound and the headroom between them (dB)", "",
              "| item | nv_psnr | texture bound | headroom | nv_mask_iou |", "|---|---|---|---|---|"]
    for i in items:
        r = base[i]
        lines.append(f"| {i} | {r['nv_psnr']:.2f} | {r['nv_psnr_texture_bound']:.2f} | "
                     f"{r['nv_psnr_texture_bound'] - r['nv_psnr']:+.2f} | {r['nv_mask_iou']:.3f} |")
    for name, v in out["variants"].items():
        if name == "base":
            continue
        lines += ["", f"Per item, {name} against base (dB; IoU and unreached share as they are)", "",
                  "| item | nv_psnr | input psnr | nv_mask_iou | unreached_frac | texture s a frame |",
                  "|---|---|---|---|---|---|"]
        for i in items:
            r, b = v["items"][i], base[i]
            lines.append(f"| {i} | {r['nv_psnr'] - b['nv_psnr']:+.2f} | {r['psnr'] - b['psnr']:+.2f} | "
                         f"{r['nv_mask_iou']:.3f} | {r['unreached_frac']:.4f} (base {b['unreached_frac']:.4f}) | "
                         f"{r['sec_texture_per_frame']:.3f} (base {b['sec_texture_per_frame']:.3f}) |")
    Path(path).with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
