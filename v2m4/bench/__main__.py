"""`python -m v2m4.bench` (also `v2m4-bench`): run a method on bench items and print/write its metrics table.
User mistakes exit with code 2 and one line, no traceback."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import V2M4Error

REPO = Path(__file__).resolve().parents[2]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="v2m4-bench", description="Run a method on bench items and score it.")
    p.add_argument("--method", default="naive", help="naive | camera | register | full | full_genref | "
                   "true_pose (the ceiling: the generator's meshes at their true poses)")
    p.add_argument("--items", nargs="*", default=[], help="item ids (default: every p* item)")
    p.add_argument("--quick", action="store_true", help="6 frames at 128² (for tests and a first look)")
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", default="torch", help="torch | nvdiffrast | auto")
    p.add_argument("--preset", default=None, help="fast (CPU default) | paper (CUDA default); switches: "
                   "-cold (no warm start), -back/-noback (camera backward pass on/off)")
    p.add_argument("--config", default=None, help="JSON file of config overrides on the preset")
    p.add_argument("--bench-dir", default=None, help="bench data folder (default: $V2M4_BENCH_DIR)")
    p.add_argument("--out", default=str(REPO / "bench" / "results"), help="folder for <name>.json and .md")
    p.add_argument("--name", default=None, help="file name stem (default: the method; e.g. camera_h200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--generated-faces", type=int, default=None,
                   help="the synthetic generator's faces per mesh (default: its own, about 3,000)")
    p.add_argument("--colourless", action="store_true", help="the synthetic generator's meshes without colour (as "
                   "a shape-only generator gives them)")
    p.add_argument("--generator-noise", type=float, default=None, help="the synthetic generator's shape noise "
                   "amplitude, in units of the object's size (default: its own, 0.01)")
    p.add_argument("--novel-views", type=int, default=8, help="views around the object per frame for the nv_* "
                   "columns (0: none)")
    p.add_argument("--rig", type=int, nargs="?", const=-1, default=0, metavar="BONES", help="pipeline methods: fit "
                   "a rig to the output and score it (rig_* columns); alone: the default bone count of v2m4 run --rig")
    p.add_argument("--actionbench", type=int, default=0, metavar="POINTS", help="add ActionBench's cd_3d, cd_4d "
                   "and cd_m with this many alignment points (its protocol: 10000; 500 on a CPU; 0: none)")
    p.add_argument("--keep-runs", default=None, metavar="DIR", help="pipeline methods: keep each item's run folder "
                   "in DIR/<item> and resume from it when it is there (delete a stage's checkpoint to re-run that "
                   "stage and what follows it alone)")
    return p


def main(argv: list[str] | None = None) -> int:
    from . import BenchSettings, format_table, run_bench, write_results

    args = build_parser().parse_args(argv)
    try:
        overrides = None
        if args.config:
            try:
                overrides = json.loads(Path(args.config).read_text())
            except (OSError, ValueError) as exc:
                raise V2M4Error(f"cannot read config {args.config}: {exc}") from None
        kw = dict(method=args.method, items=tuple(args.items), device=args.device, backend=args.backend,
                  preset=args.preset or ("paper" if args.device.startswith("cuda") else "fast"), seed=args.seed,
                  bench_dir=args.bench_dir, overrides=overrides, generated_faces=args.generated_faces,
                  colourless=args.colourless, generator_noise=args.generator_noise,
                  novel_views=args.novel_views, actionbench_points=args.actionbench, rig_bones=args.rig)
        s = BenchSettings.quick(**kw) if args.quick else BenchSettings(**kw)
        if args.resolution:
            s = BenchSettings(**{**s.__dict__, "resolution": args.resolution})
        if args.max_frames:
            s = BenchSettings(**{**s.__dict__, "max_frames": args.max_frames})

        def progress(item_id, row, partial):
            write_results(partial, args.out, args.name)  # a long run interrupted keeps the items it finished
            msg = row.get("error") or ", ".join(f"{k}={v:.3g}" for k, v in row.items()
                                                if k in ("mask_iou", "fscore2_once", "sec_per_frame"))
            print(f"  {item_id}: {msg}", file=sys.stderr, flush=True)

        result = run_bench(s, progress=progress, keep_runs=args.keep_runs)
    except V2M4Error as exc:
        print(f"v2m4-bench: error: {exc}", file=sys.stderr)
        return 2
    print(format_table(result))
    js, md = write_results(result, args.out, args.name)
    print(f"wrote {js} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
