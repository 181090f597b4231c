"""Registration speed per pair: one pair of a bench item, registered at a preset, per backend.

Claim measured: CPU seconds per pair at the `fast` preset; H100 seconds per pair at the paper's settings (target
<= 1 s). The pair is frames 0 and 3 of p01 (of 12 evenly spread), re-posed exactly (the generator's recorded
transform undone), so the timing is registration alone. Rows of other devices already in the JSON are kept.

    python bench/registration_speed.py --device cpu --preset fast
    python bench/registration_speed.py --device cuda --preset paper --backends torch nvdiffrast
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from v2m4 import render as R  # noqa: E402
from v2m4.bench import git_commit  # noqa: E402
from v2m4.data.bench import load_item  # noqa: E402
from v2m4.generators.synthetic import SyntheticGenerator  # noqa: E402
from v2m4.stages.registration import RegistrationConfig, register_sequence  # noqa: E402
from _common import BENCH_DIR  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def pair(item_id: str, device):
    item = load_item(item_id, frames=[0, 12], resolution=(64, 64), bench_dir=BENCH_DIR)
    gen = SyntheticGenerator(item, seed=0)
    out = []
    for t in range(2):
        m = gen.generate(None, t)
        M = torch.linalg.inv(gen.removed_transform(t).double()).float()
        out.append(m.with_vertices(m.vertices @ M[:3, :3].T + M[:3, 3]).to(device))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--backends", nargs="*", default=["torch"])
    ap.add_argument("--item", default="p01_fox_walk")
    ap.add_argument("--out", default=str(RESULTS / "registration_speed.json"))
    a = ap.parse_args()
    dev = torch.device(a.device)
    cfg = RegistrationConfig.paper() if a.preset == "paper" else RegistrationConfig.fast()
    meshes = pair(a.item, dev)
    machine = torch.cuda.get_device_name() if dev.type == "cuda" else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    rows = []
    for backend in a.backends:
        ctx = R.context(backend, dev)
        register_sequence(meshes, RegistrationConfig.fast(), ctx,  # warm-up (JIT builds, allocator)
                          generator=torch.Generator().manual_seed(0))
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        res = register_sequence(meshes, cfg, ctx, generator=torch.Generator().manual_seed(0))
        if dev.type == "cuda":
            torch.cuda.synchronize()
        secs = time.perf_counter() - t0
        rows.append({"device": a.device, "machine": machine, "backend": backend, "preset": a.preset,
                     "item": a.item, "vertices": int(res.sequence.rest.vertices.shape[0]),
                     "iters": cfg.global_iters + cfg.local_iters, "views": [cfg.global_views, cfg.local_views],
                     "render_res": cfg.render_res, "sec_per_pair": round(secs, 3),
                     "sec_per_iter_ms": round(1000 * secs / (cfg.global_iters + cfg.local_iters), 2),
                     "chamfer": round(res.chamfer[0], 6), "flipped": res.flipped[0], "retried": res.retried[0],
                     "date": datetime.date.today().isoformat(), "torch": torch.__version__,
                     "commit": git_commit() or "unknown (no git here)"})
    print("| device | backend | preset | V | iters | views | res | s/pair | ms/iter | chamfer |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['machine']} | {r['backend']} | {r['preset']} | {r['vertices']} | {r['iters']} | {r['views']} | "
              f"{r['render_res']} | {r['sec_per_pair']} | {r['sec_per_iter_ms']} | {r['chamfer']} |")
    out = Path(a.out)
    old = json.loads(out.read_text())["rows"] if out.exists() else []
    keep = [r for r in old if (r["device"].split(":")[0], r["backend"], r["preset"]) not in
            {(x["device"].split(":")[0], x["backend"], x["preset"]) for x in rows}]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": keep + rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
