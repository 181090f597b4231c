import os
from pathlib import Path

import pytest

XDIST_WORKER = bool(os.environ.get("PYTEST_XDIST_WORKER"))
if XDIST_WORKER:
    # the suite's processes (pytest-xdist, one per core) each compute on one thread: two processes of two threads on
    # two cores wait on each other's spinning threads (on 2 cores: 515 s against 166 s). Set before torch is
    # imported, so that its OpenMP pool and the subprocesses the tests start take it too
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEMO_DIR = REPO / "examples"
# every stage at its smallest: exercises each code path of a whole run in seconds (the fast preset's fields, fewer)
TINY_CONFIG = REPO / "tests" / "tiny_config.json"


def tiny_config(**overrides):
    """``PipelineConfig.fast()`` shrunk by TINY_CONFIG (what ``v2m4 run --config TINY_CONFIG`` runs)."""
    import json

    from v2m4.config import PipelineConfig
    return PipelineConfig.fast(**overrides).with_overrides(json.loads(TINY_CONFIG.read_text()))

torch.set_num_threads(1 if XDIST_WORKER else min(2, torch.get_num_threads()))

# The CPU's compiled kernels (numba, cached beside their modules) are compiled on first use. On a fresh checkout
# every worker and every `v2m4` process the tests start would compile them until one has written the cache; one
# process started first, on the controller, compiles each once while the workers start and collect.
WARM = """
from dataclasses import replace
import torch, trimesh
from v2m4 import render as R
from v2m4.camera import orbit_camera
from v2m4.stages.registration.joint import JointConfig, register_clip
from v2m4.types import Mesh
tm = trimesh.creation.box(extents=(0.4, 0.5, 1.2)).subdivide()
m = Mesh(torch.tensor(tm.vertices, dtype=torch.float32), torch.tensor(tm.faces))
cam = orbit_camera(torch.tensor([1.5]), torch.zeros(1), torch.tensor([3.0]), torch.zeros(1, 3), fov_deg=40,
                   resolution=(32, 32))
ctx = R.context("torch", "cpu")
masks = R.render(ctx, m, cam, channels=("mask",))["mask"].expand(3, -1, -1)
cfg = replace(JointConfig.fast(), iters=2, global_iters=2, render_res=32, view_pool=4, key_views=2, global_views=2,
              chamfer_points=200, remesh_rest=False, temporal_weights=(), unfold_iters=1, place_pieces=False)
register_clip([m, m], torch.tensor([0, 2]), masks, cam, cfg, ctx, generator=torch.Generator().manual_seed(0),
              times=torch.arange(3.0))
"""
_warm = None


def pytest_configure(config):
    global _warm
    if XDIST_WORKER or os.environ.get("V2M4_TEST_NO_WARM") or any((REPO / "v2m4").rglob("*.nbi")):
        return  # a worker, asked not to, or compiled already (numba keeps an index beside each cached kernel)
    import subprocess
    import sys

    _warm = subprocess.Popen([sys.executable, "-c", WARM], cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})


def pytest_unconfigure(config):
    if _warm is not None and _warm.poll() is None:
        _warm.kill()  # a short session ended first: numba writes each kernel's cache whole or not at all


def full_bench_dir():
    p = Path(os.environ.get("V2M4_BENCH_DIR") or REPO.parent / "shared" / "data" / "bench")
    return p if (p / "p01_fox_walk" / "meta.json").is_file() else None


needs_bench = pytest.mark.skipif(full_bench_dir() is None,
                                 reason="the full bench data (../shared/data/bench or $V2M4_BENCH_DIR) is not here")


def write_pngs(folder, n, size=(8, 6), mode="RGBA", names=None, value_step=10):
    """n small constant images (value i * value_step) in folder."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        a = np.full((size[1], size[0], len(mode)), i * value_step, np.uint8)
        Image.fromarray(a[..., 0] if mode == "L" else a, mode).save(folder / (names[i] if names else f"f{i}.png"))


def bad_frames_input(tmp_path, case):
    """A broken frames input of the named kind: missing, empty, single, sizes, video (corrupt video file)."""
    import numpy as np
    from PIL import Image

    path = tmp_path / case
    if case == "empty":
        path.mkdir()
    elif case == "single":
        write_pngs(path, 1)
    elif case == "sizes":
        write_pngs(path, 2)
        Image.fromarray(np.zeros((5, 5, 4), np.uint8)).save(path / "f9.png")
    elif case == "video":
        path = tmp_path / "clip.mp4"
        path.write_bytes(b"\x00not a video at all")
    return path


@pytest.fixture
def interrupt_after(monkeypatch):
    """``with interrupt_after(prefix, n):`` a run inside stops, as Ctrl-C would, right after it has saved its n-th
    checkpoint whose name starts with ``prefix`` (``gen_`` per generated frame, ``camera``, ``registration``...)."""
    import contextlib

    from v2m4.checkpoint import Checkpoints

    @contextlib.contextmanager
    def arm(prefix: str, n: int):
        saved = []
        original = Checkpoints.save

        def save(self, name, result):
            original(self, name, result)
            if name.startswith(prefix):
                saved.append(name)
                if len(saved) >= n:
                    raise KeyboardInterrupt(f"test interrupt after {name}")

        with monkeypatch.context() as m:
            m.setattr(Checkpoints, "save", save)
            yield
    return arm


def bend(v: torch.Tensor, k: float) -> torch.Tensor:
    """Rotate every point with z > 0 about the x axis by k * z radians: a smooth bend of the upper half."""
    ang = k * v[:, 2].clamp(min=0)
    y, z = v[:, 1], v[:, 2]
    out = v.clone()
    out[:, 1] = torch.where(z > 0, y * torch.cos(ang) - z * torch.sin(ang), y)
    out[:, 2] = torch.where(z > 0, y * torch.sin(ang) + z * torch.cos(ang), z)
    return out
