import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DEMO_DIR = REPO / "examples"

torch.set_num_threads(min(2, torch.get_num_threads()))


def full_bench_dir():
    p = Path(os.environ.get("V2M4_BENCH_DIR") or REPO.parent / "shared" / "data" / "bench")
    return p if (p / "p01_fox_walk" / "meta.json").is_file() else None


needs_bench = pytest.mark.skipif(full_bench_dir() is None,
                                 reason="the full bench data (../shared/data/bench or $V2M4_BENCH_DIR) is not here")
