"""Colourless generated meshes against coloured ones: the camera search and registration when the generator gives
shape only (Hunyuan3D-2's shape stage), from two `register` tables of one commit, the synthetic generator with and
without its colours (``--colourless``; the geometry is the same draw for draw).

Claim measured: rotation median within 2 degrees of the coloured run on at least 8 of 10 items, input-view mask
IoU within 0.02.

    python -m v2m4.bench --method register --resolution 256 --max-frames 8 --novel-views 0 --name register_coloured
    python -m v2m4.bench --method register --resolution 256 --max-frames 8 --novel-views 0 --colourless \\
        --name register_colourless
    python bench/colourless.py          # -> bench/results/colourless.json and .md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
COLUMNS = ("rot_err_med_deg", "mask_iou", "mask_iou_all", "fscore2_once", "trans_err_med")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--coloured", default=str(RESULTS / "register_coloured.json"))
    ap.add_argument("--colourless", default=str(RESULTS / "register_colourless.json"))
    a = ap.parse_args()
    col, bare = (json.loads(Path(p).read_text()) for p in (a.coloured, a.colourless))
    if col.get("commit") != bare.get("commit"):
        sys.exit(f"the two tables are of different commits ({col.get('commit')} and {bare.get('commit')})")
    rows, ok_rot, ok_iou = {}, 0, 0
    items = sorted(set(col["items"]) & set(bare["items"]))
    for item in items:
        c, b = col["items"][item], bare["items"][item]
        row = {k: {"coloured": c.get(k), "colourless": b.get(k)} for k in COLUMNS}
        d_rot = b["rot_err_med_deg"] - c["rot_err_med_deg"]
        d_iou = b["mask_iou"] - c["mask_iou"]
        row.update(rot_diff_deg=round(d_rot, 3), iou_diff=round(d_iou, 4), rot_within_2deg=abs(d_rot) <= 2.0,
                   iou_within_0_02=abs(d_iou) <= 0.02)
        ok_rot += row["rot_within_2deg"]
        ok_iou += row["iou_within_0_02"]
        rows[item] = row
    out = {"program": "bench/colourless.py", "commit": col.get("commit"), "date": bare.get("date"),
           "machine": bare.get("machine"), "settings": bare.get("settings"), "items": rows,
           "summary": {"items": len(items), "rotation_within_2deg": ok_rot, "iou_within_0_02": ok_iou}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "colourless.json").write_text(json.dumps(out, indent=1) + "\n")
    lines = [f"**colourless generated meshes** (`register`, synthetic generator with and without colours) on "
             f"{out['machine']}, {out['date']}, commit {out['commit']}\n",
             "| item | rot med ° coloured | colourless | diff | mask IoU coloured | colourless | diff | "
             "F@2% once coloured | colourless |", "|---|---|---|---|---|---|---|---|---|"]
    for item, r in rows.items():
        f = r["fscore2_once"]
        lines.append(f"| {item} | {r['rot_err_med_deg']['coloured']:.3g} | {r['rot_err_med_deg']['colourless']:.3g} | "
                     f"{r['rot_diff_deg']:+.3g} | {r['mask_iou']['coloured']:.4f} | {r['mask_iou']['colourless']:.4f} | "
                     f"{r['iou_diff']:+.4f} | {f['coloured']:.4f} | {f['colourless']:.4f} |")
    lines.append(f"\nRotation median within 2° of the coloured run: {ok_rot} of {len(items)} items; mask IoU within "
                 f"0.02: {ok_iou} of {len(items)}.")
    (RESULTS / "colourless.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
