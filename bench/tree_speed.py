"""The bundled demo's stage seconds under two source trees (an older commit's and this one), in turn on one
machine: each run a fresh process with its own empty Triton cache, so each pays what a first run on a fresh
machine pays. Claim measured: the post-generation pipeline per input frame and the registration of the 24-frame
demo on the device, at the paper preset, against the commit the change started from.

    git archive fc0c053 v2m4 examples | tar -x -C /tmp/old
    python bench/tree_speed.py --trees /tmp/old . --order 0 1 0 --name demo_gpu_trees
    python bench/tree_speed.py --one TREE         # one run under TREE: one JSON line (what the loop runs)

``--record LOG --labels ...``: the table from the JSON lines of runs made earlier by ``--one`` (a device call's
log), in their order, instead of running them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one(tree: str, device: str, backend: str, preset: str) -> dict:
    sys.path.insert(0, str(Path(tree).resolve()))
    from dataclasses import replace

    import v2m4.pipeline as P
    from v2m4.config import PipelineConfig
    from v2m4.generators import make_generator
    from v2m4.io.frames import read_frames
    cfg = PipelineConfig.preset(preset, device=device, backend=backend).with_joint_registration()
    demo = Path(tree) / "examples" / "demo"
    frames = read_frames(demo / "frames", max_size=cfg.resolution)
    with tempfile.TemporaryDirectory() as tmp:
        res = P.reconstruct(frames, make_generator(f"synthetic:{demo}", len(frames)), cfg, run_dir=tmp, log="quiet")
        t0 = time.perf_counter()
        P.write_outputs(res, frames, tmp, replace(cfg, output=replace(cfg.output, preview=False)), log="quiet")
        export = time.perf_counter() - t0
    sec = dict(res.report["seconds"])
    sec["export"] = export
    post = sum(v for k, v in sec.items() if k not in ("generate", "keyframes", "report"))
    return {"tree": tree, "v2m4": P.__file__, "stage_seconds": {k: round(v, 2) for k, v in sec.items()},
            "registration_parts": [round(x, 2) for x in res.registration.seconds],
            "post_generation_s": round(post, 2), "per_frame": round(post / len(frames), 3),
            "iou": round(res.report["input_view"]["mask_iou"], 4)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", default=None, help="run once under this tree and print one JSON line")
    ap.add_argument("--trees", nargs="*", default=[])
    ap.add_argument("--labels", nargs="*", default=None, help="a name per tree (default: the paths)")
    ap.add_argument("--order", nargs="*", type=int, default=None, help="tree indices in run order (default 0 1 0 1)")
    ap.add_argument("--record", default=None, help="a log of --one lines to tabulate instead of running")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--backend", default="nvdiffrast")
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--machine", default=None, help="the machine's description (default: this one's)")
    ap.add_argument("--commit", default=None, help="this tree's commit (default: git's)")
    ap.add_argument("--note", default="")
    ap.add_argument("--name", default="demo_gpu_trees")
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.device, a.backend, a.preset)), flush=True)
        return 0
    if a.record:
        runs = [json.loads(line) for line in Path(a.record).read_text().splitlines() if line.startswith("{")]
    else:
        order = a.order or [0, 1, 0, 1]
        runs = []
        for i in order:
            env = dict(os.environ, TRITON_CACHE_DIR=tempfile.mkdtemp())
            out = subprocess.run([sys.executable, __file__, "--one", a.trees[i], "--device", a.device, "--backend",
                                  a.backend, "--preset", a.preset], capture_output=True, text=True, env=env, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    trees = list(dict.fromkeys(r["tree"] for r in runs))
    labels = dict(zip(trees, a.labels or trees))
    sys.path.insert(0, str(ROOT))
    from v2m4.bench import git_commit, machine_description
    out = {"machine": a.machine or machine_description(a.device), "date": datetime.date.today().isoformat(),
           "commit": a.commit or git_commit(), "preset": a.preset, "backend": a.backend, "note": a.note,
           "runs": [dict(r, label=labels[r["tree"]]) for r in runs]}
    lines = [f"# {a.name}", "", f"{out['machine']}, {out['date']}, commit {out['commit']}, {a.preset} preset, "
             f"{a.backend}; each run a fresh process with an empty Triton cache, in this order. {a.note}".rstrip(), "",
             "| run | tree | camera s | registration s | texture s | export s | post-generation s | s per frame "
             "| input-view IoU |", "|---|---|---|---|---|---|---|---|---|"]
    for k, r in enumerate(out["runs"], 1):
        s = r["stage_seconds"]
        lines.append(f"| {k} | {r['label']} | {s['camera']:.2f} | {s['register']:.2f} | {s['texture']:.2f} | "
                     f"{s['export']:.2f} | {r['post_generation_s']:.2f} | {r['per_frame']:.3f} | {r['iou']:.4f} |")
    from _common import write_table
    write_table(a.name, out, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
