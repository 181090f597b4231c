"""Two bench tables of the same method and settings, compared figure by figure at the printed precision (4
significant digits, as the Markdown tables print them); timings aside. Used to show that a behaviour-preserving
change left every figure as it was.

    python bench/compare_tables.py bench/results/A.json bench/results/B.json [--name structure_register]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMING = ("sec_", "gen_sec")


def printed(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def compare(a: dict, b: dict) -> dict:
    rows = {}
    for item in sorted(set(a["items"]) | set(b["items"])):
        if item not in a["items"] or item not in b["items"]:
            rows[item] = {"missing in": "before" if item not in a["items"] else "after"}
            continue
        ra, rb = a["items"][item], b["items"][item]
        keys = sorted(k for k in set(ra) & set(rb) if not k.startswith(TIMING))
        diff = {k: (ra.get(k), rb.get(k)) for k in keys if printed(ra.get(k)) != printed(rb.get(k))}
        rows[item] = {"figures": len(keys), "different": {k: [printed(x), printed(y)] for k, (x, y) in diff.items()},
                      "only before": sorted(set(ra) - set(rb)), "only after": sorted(set(rb) - set(ra))}
    return rows


def report_figures(report: dict) -> dict:
    """A run's report.json as one bench-like row: its input-view figures, the stages' own figures (timings aside),
    the unreached share and the GLB's size and validation."""
    row = {f"input_view_{k}": v for k, v in report["input_view"].items()}
    row.update({k: v for k, v in report.get("stage_figures", {}).items()})
    row["unreached_frac"] = report.get("unreached_frac")
    row["keyframes"] = str(report["keyframes"])
    row.update({f"glb_{k}": v for k, v in report.get("glb", {}).items() if k in ("targets", "bytes")})
    return row


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--name", default=None, help="also write bench/results/<name>.json")
    ap.add_argument("--reports", action="store_true", help="the two files are runs' report.json (one row each)")
    a = ap.parse_args()
    A, B = json.loads(Path(a.before).read_text()), json.loads(Path(a.after).read_text())
    if a.reports:
        A = {"method": "v2m4 run", "items": {"run": report_figures(A)}}
        B = {"method": "v2m4 run", "items": {"run": report_figures(B)}}
    rows = compare(A, B)
    out = {"before": {k: A.get(k) for k in ("method", "commit", "date", "machine", "settings")},
           "after": {k: B.get(k) for k in ("method", "commit", "date", "machine", "settings")}, "items": rows}
    if a.reports:
        out["rows"] = {"before": A["items"]["run"], "after": B["items"]["run"]}
    for item, r in rows.items():
        if "missing in" in r:
            print(f"{item}: missing in {r['missing in']}")
            continue
        print(f"{item}: {r['figures']} figures, {len(r['different'])} different at the printed digit"
              + (f": {r['different']}" if r["different"] else "")
              + (f"; new columns {r['only after']}" if r["only after"] else "")
              + (f"; dropped columns {r['only before']}" if r["only before"] else ""))
    if a.name:
        (ROOT / "bench" / "results" / f"{a.name}.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
