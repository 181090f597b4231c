"""Where the post-generation stages of the bundled demo spend their time: the camera search's parts (global
searches, local swarms, refinements, scores, centring) and the registration's CUDA-graph captures, each wrapped in
a timer (with a device synchronisation on CUDA, so the times are the parts' own), counted and summed. Inclusive
times: a global search's time contains the scores and centring it calls.

    python bench/profile_stages.py --device cuda --backend nvdiffrast      # paper preset
    python bench/profile_stages.py                                          # CPU, fast preset

Prints one JSON object (``--out`` also writes it); a diagnostic, not a table.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import v2m4.pipeline as P  # noqa: E402
from v2m4 import _graphs  # noqa: E402
from v2m4.bench import git_commit, machine_description  # noqa: E402
from v2m4.config import PipelineConfig  # noqa: E402
from v2m4.generators import make_generator  # noqa: E402
from v2m4.io.frames import read_frames  # noqa: E402
from v2m4.stages.camera import search as S  # noqa: E402
from v2m4.stages.camera import stage as CS  # noqa: E402

TOTALS: dict[str, list] = defaultdict(lambda: [0, 0.0])
EACH: dict[str, list] = {}  # the seconds of each capture and warm-up step, in order


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(module, name: str, label: str, dev: torch.device) -> None:
    real = getattr(module, name)

    @functools.wraps(real)
    def wrapper(*args, **kw):
        _sync(dev)
        t0 = time.perf_counter()
        try:
            return real(*args, **kw)
        finally:
            _sync(dev)
            TOTALS[label][0] += 1
            TOTALS[label][1] += time.perf_counter() - t0
    setattr(module, name, wrapper)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--preset", default=None, help="fast | paper (default: paper on CUDA, fast on the CPU)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    dev = torch.device(a.device)
    preset = a.preset or ("paper" if dev.type == "cuda" else "fast")
    cfg = PipelineConfig.preset(preset, device=a.device, backend=a.backend).with_joint_registration()
    # the camera search's parts (module-level names the search looks up at call time)
    for name in ("_global_search", "_local_search", "refine_pose", "refine_poses", "score_poses", "mask_iou_poses", "_global_frame",
                 "_flush", "backward_pass"):
        timed(S, name, f"camera.{name}", dev)
    timed(S, "center_poses", "camera.center_poses", dev)
    timed(CS, "search_poses", "camera.search_poses", dev)
    timed(CS, "repose_scales", "camera.repose_scales", dev)
    timed(P, "refine_keyframes", "camera.refine_keyframes", dev)
    timed(P, "_search_cameras", "camera._search_cameras", dev)
    # every capture of a registration step (graph count and time), every reset
    real_call, real_reset = _graphs.StepGraphs.__call__, _graphs.StepGraphs.reset

    def call(self, key, body):
        fresh = self.enabled and key not in self.graphs
        if not fresh:
            return real_call(self, key, body)
        _sync(dev)
        t0 = time.perf_counter()
        out = real_call(self, key, body)
        _sync(dev)
        label = "graphs.capture" if key in self.graphs else "graphs.warmup_step"
        TOTALS[label][0] += 1
        TOTALS[label][1] += time.perf_counter() - t0
        EACH.setdefault(label, []).append(round(time.perf_counter() - t0, 3))
        return out

    def reset(self):
        TOTALS["graphs.reset"][0] += 1
        return real_reset(self)
    _graphs.StepGraphs.__call__, _graphs.StepGraphs.reset = call, reset

    demo = ROOT / "examples" / "demo"
    frames = read_frames(demo / "frames", max_size=cfg.resolution)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = P.reconstruct(frames, make_generator(f"synthetic:{demo}", len(frames)), cfg, run_dir=tmp,
                               log="quiet")
        wall = time.perf_counter() - t0
    rep = result.report
    out = {"machine": machine_description(a.device), "backend": a.backend, "preset": preset, "commit": git_commit(),
           "wall": round(wall, 2), "stage_seconds": {k: round(v, 2) for k, v in rep["seconds"].items()},
           "registration_parts_seconds": [round(s, 2) for s in result.registration.seconds],
           "camera_global": [bool(x) for x in result.camera.global_search.tolist()],
           "camera_seconds": [round(float(x), 2) for x in result.camera.seconds],
           "parts": {k: {"calls": n, "seconds": round(s, 3)} for k, (n, s) in sorted(TOTALS.items())},
           "graphs_each": EACH}
    print(json.dumps(out, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
