"""Importing v2m4 before torch shortens the spin of torch's idle OpenMP workers (``v2m4.OMP_SPIN_TURNS``); a user's
own OpenMP setting, or torch loaded first, is left as it is. The compiled CPU kernels split rows over our own
threads (``v2m4._compiled``)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from v2m4 import _compiled

REPO = Path(__file__).resolve().parents[1]
SHOW = "import os, sys; {first}; print(os.environ.get('GOMP_SPINCOUNT'), v2m4.OMP_SPIN_SET)"


def _run(first: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", SHOW.format(first=first)], env={**clean, **env}, cwd=REPO,
                         capture_output=True, text=True, check=True)
    return out.stdout.split()


@pytest.mark.parametrize("first,env,expected", [
    ("import v2m4", {}, ["20000", "True"]),
    ("import v2m4", {"GOMP_SPINCOUNT": "5"}, ["5", "False"]),
    ("import v2m4", {"OMP_WAIT_POLICY": "PASSIVE"}, ["None", "False"]),
    ("import torch, v2m4", {}, ["None", "False"]),
])
def test_openmp_spin_is_set_only_where_it_can_act_and_nobody_chose(first, env, expected):
    import v2m4

    got = _run(first, **env)
    assert got == [e.replace("20000", str(v2m4.OMP_SPIN_TURNS)) for e in expected]


@pytest.mark.skipif(not _compiled.available(), reason="numba not installed")
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("n", [0, 1, 2, 7])
def test_compiled_ranges_cover_every_row_once(monkeypatch, threads, n):
    # the kernels' thread split: each row in exactly one range, whatever the rows and threads (none: one empty call)
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    hits = np.zeros(n, np.int64)
    _compiled.over_range(_count, n, (hits,))
    assert hits.tolist() == [1] * n
    out = np.zeros((n, 2))
    _compiled.over_rows(_fill, [np.ones((n, 2))], (), out)
    assert (out == 1).all()


def _count(r0, r1, hits):  # pragma: no cover - compiled
    for i in range(r0, r1):
        hits[i] += 1


def _fill(a, out):  # pragma: no cover - compiled
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            out[i, j] = a[i, j]
