"""What the bench programs share: where the benchmark items live.

The library takes that folder from its caller or $V2M4_BENCH_DIR and knows no default; these programs run in the
project's checkout, so they default to ``../shared/data/bench`` beside the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(os.environ.get("V2M4_BENCH_DIR") or ROOT.parent / "shared" / "data" / "bench")
