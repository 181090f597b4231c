"""The export columns of a bench result, per item, as bench/results/export.json: validator errors and warnings
(Khronos gltf-validator) of the per-keyframe-targets GLB and of the PCA GLB, the round-trip error through the
independent reader (fraction of the bounding-box diagonal, worst keyframe) and both file sizes.

The figures are the ones `python -m v2m4.bench --method full` measured on the output of the whole pipeline (the
best method here); this program only selects them, so that the export's table stands on its own.

    python bench/export_table.py [--source bench/results/full.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLS = ["validator_errors", "validator_warnings", "validator_errors_pca", "validator_warnings_pca", "roundtrip_err",
        "glb_bytes", "glb_bytes_pca", "pca_targets", "topology_constant"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default=str(ROOT / "bench" / "results" / "full.json"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    a = ap.parse_args()
    src = json.loads(Path(a.source).read_text())
    items = {i: {c: r[c] for c in COLS if c in r} if "error" not in r else {"error": r["error"]}
             for i, r in src["items"].items()}
    res = {k: src[k] for k in ("date", "machine", "device", "commit", "settings") if k in src}
    res.update(method="export (from " + src["method"] + ")", source=Path(a.source).name, items=items)
    ok = [r for r in items.values() if "error" not in r]
    res["all_validator_clean"] = bool(ok) and all(r.get(c, 1) == 0 for r in ok for c in COLS[:4])
    res["max_roundtrip_err"] = max((r.get("roundtrip_err", float("inf")) for r in ok), default=None)
    lines = ["| item | " + " | ".join(COLS) + " |", "|---|" + "---|" * len(COLS)]
    for i, r in items.items():
        lines.append(f"| {i} | " + " | ".join(str(r.get(c, "")) for c in COLS) + " |")
    md = (f"**export** (columns of `{res['source']}`, method {src['method']}) on {src['machine']}, {src['date']}, "
          f"commit {src.get('commit', '')}; all validator-clean: {res['all_validator_clean']}; worst round trip "
          f"{res['max_roundtrip_err']} of the diagonal\n\n" + "\n".join(lines) + "\n")
    out = Path(a.out)
    (out / "export.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / "export.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
