"""The `v2m4` command: a thin layer over the Python API. User mistakes exit with code 2 and one line, no traceback."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import V2M4Error

REPO = Path(__file__).resolve().parents[1]


def _add_bench(sub):
    p = sub.add_parser("bench", help="run a method on bench items and print/write the metrics table")
    p.add_argument("--method", default="naive", help="naive | camera | register | full")
    p.add_argument("--items", nargs="*", default=[], help="item ids (default: every p* item)")
    p.add_argument("--quick", action="store_true", help="6 frames at 128² (for tests and a first look)")
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", default="torch", help="torch | nvdiffrast | auto")
    p.add_argument("--preset", default=None, help="fast (CPU default) | paper (CUDA default)")
    p.add_argument("--bench-dir", default=None, help="bench data folder (default: $V2M4_BENCH_DIR or ../shared/data/bench)")
    p.add_argument("--out", default=str(REPO / "bench" / "results"), help="folder for <method>.json and .md")
    p.add_argument("--name", default=None, help="file name stem (default: the method; e.g. camera_h100)")
    p.add_argument("--seed", type=int, default=0)


def cmd_bench(args) -> int:
    from .bench import BenchSettings, format_table, run_bench, write_results

    kw = dict(method=args.method, items=tuple(args.items), device=args.device, backend=args.backend,
              preset=args.preset or ("paper" if args.device.startswith("cuda") else "fast"), seed=args.seed,
              bench_dir=args.bench_dir)
    s = BenchSettings.quick(**kw) if args.quick else BenchSettings(**kw)
    if args.resolution:
        s = BenchSettings(**{**s.__dict__, "resolution": args.resolution})
    if args.max_frames:
        s = BenchSettings(**{**s.__dict__, "max_frames": args.max_frames})

    def progress(item_id, row, partial):
        write_results(partial, args.out, args.name)  # a long run interrupted keeps the items it finished
        msg = row.get("error") or ", ".join(f"{k}={v:.3g}" for k, v in row.items() if k in ("mask_iou", "fscore2_once", "sec_per_frame"))
        print(f"  {item_id}: {msg}", file=sys.stderr, flush=True)

    result = run_bench(s, progress=progress)
    print(format_table(result))
    js, md = write_results(result, args.out, args.name)
    print(f"wrote {js} and {md}")
    return 0


def cmd_demo(args) -> int:
    """For now: the bench harness on the bundled demo item (later: the whole pipeline)."""
    from .bench import BenchSettings, format_table, run_bench, write_results

    demo = REPO / "examples"
    s = BenchSettings(method=args.method, items=("demo",), bench_dir=str(demo), resolution=128, max_frames=None,
                      device=args.device, preset="fast")
    result = run_bench(s)
    print(format_table(result))
    js, md = write_results(result, args.out)
    print(f"wrote {js} and {md}")
    return 0


def cmd_inspect(args) -> int:
    """Read an input the way `v2m4 run` will, and say what was found: the check before a long job."""
    from .io.frames import read_frames

    frames = read_frames(args.input, masks=args.masks, fps=args.fps, max_size=args.max_size)
    T, H, W, _ = frames.rgba.shape
    cover = float((frames.mask > 0.5).float().mean())
    print(f"{args.input}: {T} frames, {W}x{H}, {frames.fps:g} fps, object covers {100 * cover:.1f}% of the pixels")
    if cover >= 0.999:
        print("no alpha channel or masks: give --masks DIR or remove the background first")
    if args.meshes:
        from .generators.mesh_folder import MeshFolderGenerator

        gen = MeshFolderGenerator(args.meshes, T)
        print(f"{args.meshes}: {len(gen.files)} meshes, one per frame")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="v2m4", description="Video to animated 3D mesh (V2M4).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    _add_bench(sub)
    i = sub.add_parser("inspect", help="read a video or frame folder (and a mesh folder) and summarise it")
    i.add_argument("input", help="video file or folder of frames")
    i.add_argument("--masks", default=None, help="folder with one mask per frame")
    i.add_argument("--meshes", default=None, help="folder with one mesh per frame (the `meshes` generator)")
    i.add_argument("--fps", type=float, default=None)
    i.add_argument("--max-size", type=int, default=None)
    d = sub.add_parser("demo", help="run on the bundled demo item and say where the outputs are")
    d.add_argument("--method", default="camera", help="bench method to run on the demo (default: camera)")
    d.add_argument("--device", default="cpu")
    d.add_argument("--out", default="v2m4-demo")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"bench": cmd_bench, "demo": cmd_demo, "inspect": cmd_inspect}[args.cmd](args)
    except V2M4Error as exc:
        print(f"v2m4: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("v2m4: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
