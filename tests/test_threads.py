"""Importing v2m4 before torch shortens the spin of torch's idle OpenMP workers (``v2m4.OMP_SPIN_TURNS``); a user's
own OpenMP setting, or torch loaded first, is left as it is."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
