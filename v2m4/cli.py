"""The `v2m4` command: a thin layer over the Python API. User mistakes exit with code 2 and one line, no traceback."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

# v2m4 run's one-clip path is in clip.py (each clip of v2m4 batch runs it too); its names stay importable from here
from .clip import FINAL_OUTPUTS, InputOptions, check_config, read_input, run_pipeline  # noqa: F401
from .errors import V2M4Error

REPO = Path(__file__).resolve().parents[1]


def config_from_args(args):
    """The run's ``PipelineConfig``: the preset (default: paper on a CUDA device, fast elsewhere) and its schedule,
    then the ``--config`` file's overrides, then each option given on the command line."""
    from .config import PipelineConfig

    preset = args.preset or ("paper" if args.device.startswith("cuda") else "fast")
    cfg = PipelineConfig.preset(preset, device=args.device, backend=args.backend, seed=args.seed)
    if args.config:
        cfg = PipelineConfig.from_file(args.config, cfg)
    kw = {}
    if args.resolution:
        kw["resolution"] = args.resolution
    if args.keyframes not in ("auto", None):
        kw["keyframes"] = _keyframe_config(args.keyframes, cfg.keyframes)
    if args.no_texture:
        kw["texture"] = None
    if args.no_appearance_refinement:
        kw["generation"] = replace(cfg.generation, refine_appearance=False)
    learned = {k: v for k, v in (("scorer", args.scorer), ("weights", args.weights), ("stereo", args.stereo))
               if v is not None}
    output = {"preview": False} if args.no_preview else {}
    if args.pca:
        output["glb_mode"] = "pca"
    if args.rig:
        output["rig_bones"] = args.rig
    if args.also:
        output["extra_exports"] = tuple(a for a in args.also.split(",") if a)
    return replace(cfg, learned=replace(cfg.learned, **learned), output=replace(cfg.output, **output), **kw)


def _keyframe_config(spec: str, base):
    if spec == "fixed":
        return base
    if spec == "all":
        return replace(base, stride=1, budget=None)
    if spec == "adaptive":
        return replace(base, mode="adaptive")
    try:
        n = int(spec)
    except ValueError:
        raise V2M4Error(f"--keyframes takes a number, auto, adaptive or all, not {spec!r}") from None
    if n < 1:
        raise V2M4Error("--keyframes must be at least 1")
    return replace(base, budget=n)


def cmd_run(args) -> int:
    out = Path(args.out)
    log = "json" if args.json_log else ("quiet" if args.quiet else "bars")
    inputs = InputOptions(masks=args.masks, fps=args.fps, remove_background=args.remove_background,
                          mask_smoothing=args.mask_smoothing)
    report = run_pipeline(args.input, out, args.generator, config_from_args(args), inputs=inputs,
                          resume=args.resume, force=args.force, log=log)
    if log != "quiet":
        iv = report["input_view"]
        print(f"wrote {out / 'animation.glb'} ({report['glb']['bytes'] / 1e6:.1f} MB, {report['glb']['targets']} "
              f"targets), {out / 'preview.mp4'} and {out / 'report.json'}; input view: mask IoU "
              f"{iv['mask_iou']:.3f}, PSNR {iv['psnr']:.1f} dB; {sum(report['seconds'].values()):.0f} s")
    return 0


def cmd_batch(args) -> int:
    """Many clips: `v2m4 run` on each (resumed where an earlier batch stopped, skipped when complete), locally or on
    Ray; OUT/summary.json and the table. Exit code 1 when a clip failed (the others still ran)."""
    from .batch import BatchOptions, plan_clips, run_batch

    if args.retries < 0 or args.keyframes_per_task < 1:
        raise V2M4Error("--retries must be at least 0 and --keyframes-per-task at least 1")
    log = "json" if args.json_log else ("quiet" if args.quiet else "bars")
    inputs = InputOptions(masks=args.masks, fps=args.fps, remove_background=args.remove_background,
                          mask_smoothing=args.mask_smoothing)
    cfg = config_from_args(args)
    check_config(cfg)
    options = BatchOptions(inputs=inputs, retries=args.retries, keyframes_per_task=args.keyframes_per_task,
                           force=args.force)
    try:
        summary = run_batch(plan_clips(args.inputs, args.generator), Path(args.out), cfg, options,
                            ray_address=args.ray, log=log)
    except KeyboardInterrupt:
        print("v2m4: interrupted; run the same command again to continue (complete clips are skipped, the others "
              "resume from their checkpoints)", file=sys.stderr)
        return 130
    if log == "bars":
        print(summary.table())
    elif log == "json":
        print(json.dumps({"stage": "batch", "summary": str(Path(args.out) / "summary.json"),
                          **{k: v for k, v in summary.to_json().items() if k != "clips"}}))
    return 1 if summary.count("failed") else 0


def cmd_demo(args) -> int:
    """The whole pipeline on the bundled demo item (24 frames of the Khronos fox, the synthetic generator)."""
    from .config import PipelineConfig

    demo = REPO / "examples" / "demo"
    out = Path(args.out)
    preset = "paper" if args.device.startswith("cuda") else "fast"
    report = run_pipeline(demo / "frames", out, f"synthetic:{demo}", PipelineConfig.preset(preset, device=args.device),
                          force=True, log="quiet" if args.quiet else "bars")
    iv = report["input_view"]
    print(f"demo done in {sum(report['seconds'].values()):.0f} s: {out / 'animation.glb'}, {out / 'preview.mp4'}, "
          f"{out / 'report.json'} (input view: mask IoU {iv['mask_iou']:.3f}, PSNR {iv['psnr']:.1f} dB)")
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


def cmd_view(args) -> int:
    """Open OUT/viewer.html (written by every run) in the default web browser, and say where it is."""
    import webbrowser

    page = Path(args.out) / "viewer.html"
    if not page.is_file():
        raise V2M4Error(f"{page} does not exist: give the output folder of a `v2m4 run` (runs write viewer.html)")
    print(page.resolve())
    if not args.no_browser and not webbrowser.open(page.resolve().as_uri()):
        print("no web browser could be started here: open the file above in one", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="v2m4", description="Video to animated 3D mesh (V2M4).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("inspect", help="read a video or frame folder (and a mesh folder) and summarise it")
    i.add_argument("input", help="video file or folder of frames")
    i.add_argument("--masks", default=None, help="folder with one mask per frame")
    i.add_argument("--meshes", default=None, help="folder with one mesh per frame (the `meshes` generator)")
    i.add_argument("--fps", type=float, default=None)
    i.add_argument("--max-size", type=int, default=None)
    d = sub.add_parser("demo", help="run the whole pipeline on the bundled demo item and say where the outputs are")
    d.add_argument("--device", default="cpu")
    d.add_argument("--out", default="v2m4-demo")
    d.add_argument("--quiet", action="store_true")
    v = sub.add_parser("view", help="open a run's viewer.html (input video and animated mesh on one timeline)")
    v.add_argument("out", help="output folder of a run")
    v.add_argument("--no-browser", action="store_true", help="only print the page's path")
    r = sub.add_parser("run", help="video (or frame folder) -> animated GLB, preview and report")
    r.add_argument("input", help="video file (mp4/webm/gif/...) or folder of frames (RGBA, or RGB with --masks)")
    r.add_argument("-o", "--out", required=True, help="output folder")
    _add_run_options(r)
    r.add_argument("--resume", action="store_true", help="continue an interrupted run in OUT")
    r.add_argument("--force", action="store_true", help="overwrite a non-empty OUT")
    b = sub.add_parser("batch", help="many clips: one output folder each (as `run`), a summary table; locally or "
                       "on a Ray cluster")
    b.add_argument("inputs", nargs="+", metavar="INPUT", help="video files or frame folders (a folder named "
                   "frames/ gives its parent's name to its output folder)")
    b.add_argument("-o", "--out", required=True, help="output folder: OUT/NAME per clip, OUT/summary.json")
    b.add_argument("--ray", default=None, metavar="ADDRESS", help="run on Ray: a cluster's address (auto, "
                   "HOST:PORT, ray://HOST:PORT) or local (start one here); needs pip install 'v2m4[cluster]'")
    b.add_argument("--keyframes-per-task", type=int, default=8, help="with --ray: keyframes per generation task "
                   "(each task loads the generator once)")
    b.add_argument("--retries", type=int, default=1, help="attempts after a clip's first failure (default 1)")
    b.add_argument("--force", action="store_true", help="redo every clip from scratch, complete or not")
    _add_run_options(b, generator_help=" ({name}, {input} and {parent} stand for each clip's name, input and "
                     "its folder, e.g. meshes:generated/{name})")
    return ap


def _add_run_options(r, generator_help: str = "") -> None:
    """The options of one reconstruction, shared by `run` and `batch` (read by ``config_from_args``)."""
    from .export.rig import AUTO_BONES, DEFAULT_BONES, MAX_BONES, TARGET_MAX, TARGET_RMS

    r.add_argument("--generator", default="trellis", help="trellis[:MODEL_OR_FOLDER] | hunyuan[:MODEL_OR_FOLDER] | "
                   "meshes:DIR | synthetic:ITEM_DIR" + generator_help)
    r.add_argument("--masks", default=None, help="folder with one mask per frame")
    r.add_argument("--fps", type=float, default=None)
    r.add_argument("--device", default="cpu", help="cpu | cuda")
    r.add_argument("--backend", default="torch", help="torch | nvdiffrast (CUDA, non-commercial licence)")
    r.add_argument("--preset", default=None, help="fast (CPU default) | paper (CUDA default); suffixes: "
                   "-cold (no warm start), -back/-noback (camera backward pass on/off)")
    r.add_argument("--keyframes", default="auto", help="auto (paper stride from the fps) | adaptive | N | all")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--config", default=None, help="JSON file of config overrides applied to the preset, e.g. "
                   '{"camera": {"n_particles": 100}, "texture": {"size": 512}} (see v2m4.config.PipelineConfig)')
    r.add_argument("--scorer", default=None, help="camera-search scorer: auto (DreamSim when its weights are "
                   "here, else weight-free) | dreamsim | lpips | silhouette-colour")
    r.add_argument("--weights", default=None, help="folder (DreamSim) or file (LPIPS VGG-16) of the scorer's weights")
    r.add_argument("--no-appearance-refinement", action="store_true",
                   help="skip Sec. 4.2 (regenerating each keyframe with its appearance fitted to the frame; "
                        "TRELLIS only, other generators skip it with a notice)")
    r.add_argument("--no-texture", action="store_true",
                   help="skip Sec. 4.4: the mesh keeps the first keyframe's generated vertex colours")
    r.add_argument("--stereo", default=None, help="stereo prior: auto (DUSt3R when importable) | off | PATH of a "
                   "DUSt3R checkout")
    r.add_argument("--also", default="", help="more exports, comma-separated: obj, ply (a mesh per frame), usd")
    r.add_argument("--resolution", type=int, default=None, help="working size (frames are downscaled to it)")
    r.add_argument("--quiet", action="store_true")
    r.add_argument("--json-log", action="store_true", help="progress as JSON lines (for scripts)")
    r.add_argument("--no-preview", action="store_true")
    r.add_argument("--pca", action="store_true", help="compact GLB (PCA morph basis)")
    r.add_argument("--rig", type=int, nargs="?", const=AUTO_BONES, default=None, metavar="BONES",
                   help=f"also OUT/animation_rigged.glb, a skinned mesh in one bone hierarchy fitted to the "
                        f"animation; BONES fixes the count (default: {DEFAULT_BONES}, more up to {MAX_BONES} where the "
                        f"rig's error would exceed {100 * TARGET_RMS:.0f}%% RMS or {100 * TARGET_MAX:.0f}%% at worst of the "
                        f"object's size)")  # %-formatted
    r.add_argument("--remove-background", action="store_true", help="cut the object out with rembg (optional extra)")
    r.add_argument("--mask-smoothing", type=int, default=0, help="temporal median radius (frames) of the masks "
                   "--remove-background makes (1 removes one-frame flicker, thins fast edges); 0: off")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"batch": cmd_batch, "demo": cmd_demo, "inspect": cmd_inspect, "run": cmd_run,
                "view": cmd_view}[args.cmd](args)
    except V2M4Error as exc:
        print(f"v2m4: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("v2m4: interrupted; the finished stages are checkpointed: run the same command with --resume to "
              "continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
