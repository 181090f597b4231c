"""What the bench programs share: where the benchmark items live.

The library takes that folder from its caller or $V2M4_BENCH_DIR and knows no default; these programs run in the
project's checkout, so they default to ``../shared/data/bench`` beside the repository.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(os.environ.get("V2M4_BENCH_DIR") or ROOT.parent / "shared" / "data" / "bench")
RESULTS = ROOT / "bench" / "results"


def write_table(name: str, out: dict, lines: list[str]) -> None:
    """A program's table: ``out`` as bench/results/<name>.json, ``lines`` as <name>.md (and printed)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=1) + "\n")
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
