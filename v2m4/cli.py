"""The `v2m4` command: a thin layer over the Python API. User mistakes exit with code 2 and one line, no traceback."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import V2M4Error

REPO = Path(__file__).resolve().parents[1]


def _add_bench(sub):
    p = sub.add_parser("bench", help="run a method on bench items and print/write the metrics table")
    p.add_argument("--method", default="naive", help="naive | camera | register | full | full_genref | "
                   "true_pose (the ceiling: the generator's meshes at their true poses)")
    p.add_argument("--items", nargs="*", default=[], help="item ids (default: every p* item)")
    p.add_argument("--quick", action="store_true", help="6 frames at 128² (for tests and a first look)")
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", default="torch", help="torch | nvdiffrast | auto")
    p.add_argument("--preset", default=None, help="fast (CPU default) | paper (CUDA default); suffixes: "
                   "-cold (no warm start), -back/-noback (camera backward pass on/off)")
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


def make_generator(spec: str, n_frames: int, *, seed: int = 0, device: str = "cpu"):
    """--generator: synthetic:ITEM_DIR (a bench-format item's ground truth, for tests and demos), meshes:DIR (one
    mesh per frame from any tool), or trellis (the paper's generator; needs its package and weights)."""
    kind, _, arg = spec.partition(":")
    if kind == "synthetic":
        from .data.bench import load_item
        from .generators.synthetic import SyntheticGenerator
        if not arg:
            raise V2M4Error("--generator synthetic:ITEM_DIR needs the item folder (with meta.json and gt_mesh.npz)")
        item = load_item(arg)
        if len(item.frames) != n_frames:
            raise V2M4Error(f"synthetic item {arg} has {len(item.frames)} frames but the input has {n_frames}")
        return SyntheticGenerator(item, seed=seed)
    if kind == "meshes":
        from .generators.mesh_folder import MeshFolderGenerator
        if not arg:
            raise V2M4Error("--generator meshes:DIR needs the folder of per-frame meshes")
        return MeshFolderGenerator(arg, n_frames)
    if kind == "trellis":
        from .generators.trellis import DEFAULT_MODEL, TrellisGenerator
        return TrellisGenerator(arg or DEFAULT_MODEL, device=device, seed=seed)
    raise V2M4Error(f"unknown generator {spec!r}; choose synthetic:ITEM_DIR, meshes:DIR or trellis")


def _prepare_out(out: Path, *, force: bool, resume: bool) -> None:
    if out.exists() and not out.is_dir():
        raise V2M4Error(f"output {out} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not (force or resume):
        raise V2M4Error(f"output folder {out} is not empty; add --force to overwrite it or --resume to continue")
    if force and not resume and out.exists():
        import shutil
        for name in ("checkpoints",) + FINAL_OUTPUTS:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def run_pipeline(input_path, out: Path, generator_spec: str, *, masks=None, fps=None, device="cpu",
                 backend="torch", preset=None, keyframes="auto", resolution=None, resume=False, force=False,
                 log="bars", preview=True, glb_mode="targets", remove_background=False, seed=0, n_points=5000,
                 video_supervision=None, also=(), scorer="auto", weights=None, stereo="auto",
                 mask_smoothing=0, refine_appearance=True, texture=True) -> dict:
    """`v2m4 run`: read, check, reconstruct, write. With the synthetic generator the report also holds the bench's
    figures against its ground truth (``report["bench"]``, the same function as `v2m4 bench --method full`)."""
    from .io.frames import read_frames
    from .pipeline import PipelineConfig, reconstruct, write_outputs
    from .stages.keyframes import KeyframeConfig

    from .pipeline import check_frames

    preset = preset or ("paper" if device.startswith("cuda") else "fast")
    if preset.split("-")[0] not in ("fast", "paper", "tiny"):
        raise V2M4Error(f"unknown preset {preset!r}; choose fast or paper")
    res = resolution or (512 if preset == "paper" else 256)
    # every input check comes before the output folder is touched: a mistake leaves nothing behind
    frames = read_frames(input_path, masks=masks, fps=fps, max_size=res)
    background = None
    if remove_background:
        from .io.background import remove_background as rb
        frames = rb(frames, temporal_radius=mask_smoothing)
        background = {"method": "rembg:u2net", "temporal_median_radius": mask_smoothing}
    check_frames(frames)
    gen = make_generator(generator_spec, len(frames), seed=seed, device=device)
    kcfg, n_key = KeyframeConfig(), None
    if keyframes == "all":
        kcfg = KeyframeConfig(stride=1)
    elif keyframes not in ("auto", "fixed", None):
        if keyframes == "adaptive":
            kcfg = KeyframeConfig(mode="adaptive")
        else:
            try:
                n_key = int(keyframes)
            except ValueError:
                raise V2M4Error(f"--keyframes takes a number, auto or adaptive, not {keyframes!r}") from None
            if n_key < 1:
                raise V2M4Error("--keyframes must be at least 1")
    also = tuple(a for a in also if a)
    bad = [a for a in also if a not in ("obj", "ply", "usd")]
    if bad:
        raise V2M4Error(f"--also takes obj, ply and usd, not {', '.join(bad)}")
    if "usd" in also:
        try:
            import pxr  # noqa: F401
        except ImportError:
            raise V2M4Error("--also usd needs usd-core: pip install usd-core") from None
    from .learned import check_scorer
    check_scorer(scorer, weights=weights)
    if stereo not in ("auto", "off") and not (Path(stereo) / "dust3r").is_dir():
        raise V2M4Error(f"--stereo {stereo}: not a DUSt3R checkout (no dust3r/ folder in it)")
    _prepare_out(out, force=force, resume=resume)
    cfg = PipelineConfig(preset=preset, keyframes=kcfg, n_keyframes=n_key, device=device, backend=backend,
                         preview=preview, glb_mode=glb_mode, seed=seed, video_supervision=video_supervision,
                         extra_exports=also, scorer=scorer, weights=weights, stereo=stereo,
                         refine_appearance=refine_appearance, texture=texture)
    try:
        result = reconstruct(frames, gen, cfg, run_dir=out, resume=resume, log=log)
        result.report["background"] = background or {"method": "input alpha" if masks is None else "--masks"}
        if generator_spec.startswith("synthetic:"):
            from .bench import score_run
            result.report["bench"] = score_run(gen.item, frames, result, gen, n_points=n_points, seed=seed)
        return write_outputs(result, frames, out, cfg, log=log)
    except OSError as exc:  # a full disk, a quota, a vanished folder: no half-written output stays behind
        _remove_partial_outputs(out)
        raise V2M4Error(f"could not write to {out}: {exc.strerror or exc} (checkpoints are kept: free space and "
                        f"run again with --resume)") from None


FINAL_OUTPUTS = ("animation.glb", "preview.mp4", "report.json", "meshes_obj", "meshes_ply", "animation.usda",
                 "animation_texture.png")


def _remove_partial_outputs(out: Path) -> None:
    """Temporary files anywhere under out, and the final outputs (a run's outputs are all there or none is)."""
    import shutil
    for p in list(out.rglob("*")):
        if p.is_file() and (".part" in p.name or p.name.endswith(".tmp.npz") or p.name.startswith("tmp")):
            p.unlink(missing_ok=True)
    for name in FINAL_OUTPUTS:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists():
            p.unlink()


def cmd_run(args) -> int:
    out = Path(args.out)
    log = "json" if args.json_log else ("quiet" if args.quiet else "bars")
    report = run_pipeline(args.input, out, args.generator, masks=args.masks, fps=args.fps, device=args.device,
                          backend=args.backend, preset=args.preset, keyframes=args.keyframes,
                          resolution=args.resolution, resume=args.resume, force=args.force, log=log,
                          preview=not args.no_preview, glb_mode="pca" if args.pca else "targets",
                          remove_background=args.remove_background, seed=args.seed,
                          also=tuple(args.also.split(",")) if args.also else (), scorer=args.scorer,
                          weights=args.weights, stereo=args.stereo, mask_smoothing=args.mask_smoothing,
                          refine_appearance=not args.no_appearance_refinement, texture=not args.no_texture)
    if log != "quiet":
        iv = report["input_view"]
        print(f"wrote {out / 'animation.glb'} ({report['glb']['bytes'] / 1e6:.1f} MB, {report['glb']['targets']} "
              f"targets), {out / 'preview.mp4'} and {out / 'report.json'}; input view: mask IoU "
              f"{iv['mask_iou']:.3f}, PSNR {iv['psnr']:.1f} dB; {sum(report['seconds'].values()):.0f} s")
    return 0


def cmd_demo(args) -> int:
    """The whole pipeline on the bundled demo item (24 frames of the Khronos fox, the synthetic generator)."""
    demo = REPO / "examples" / "demo"
    out = Path(args.out)
    report = run_pipeline(demo / "frames", out, f"synthetic:{demo}", device=args.device, force=True,
                          log="quiet" if args.quiet else "bars")
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
    d = sub.add_parser("demo", help="run the whole pipeline on the bundled demo item and say where the outputs are")
    d.add_argument("--device", default="cpu")
    d.add_argument("--out", default="v2m4-demo")
    d.add_argument("--quiet", action="store_true")
    r = sub.add_parser("run", help="video (or frame folder) -> animated GLB, preview and report")
    r.add_argument("input", help="video file (mp4/webm/gif/...) or folder of frames (RGBA, or RGB with --masks)")
    r.add_argument("-o", "--out", required=True, help="output folder")
    r.add_argument("--generator", default="trellis", help="trellis[:MODEL_OR_FOLDER] | meshes:DIR | synthetic:ITEM_DIR")
    r.add_argument("--masks", default=None, help="folder with one mask per frame")
    r.add_argument("--fps", type=float, default=None)
    r.add_argument("--device", default="cpu", help="cpu | cuda")
    r.add_argument("--backend", default="torch", help="torch | nvdiffrast (CUDA, non-commercial licence)")
    r.add_argument("--preset", default=None, help="fast (CPU default) | paper (CUDA default); suffixes: "
                   "-cold (no warm start), -back/-noback (camera backward pass on/off)")
    r.add_argument("--keyframes", default="auto", help="auto (paper stride from the fps) | adaptive | N | all")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--scorer", default="auto", help="camera-search scorer: auto (DreamSim when its weights are "
                   "here, else weight-free) | dreamsim | lpips | silhouette-colour")
    r.add_argument("--weights", default=None, help="folder (DreamSim) or file (LPIPS VGG-16) of the scorer's weights")
    r.add_argument("--no-appearance-refinement", action="store_true",
                   help="skip Sec. 4.2 (regenerating each keyframe with its appearance fitted to the frame; "
                        "TRELLIS only, other generators skip it with a notice)")
    r.add_argument("--no-texture", action="store_true",
                   help="skip Sec. 4.4: the mesh keeps the first keyframe's generated vertex colours")
    r.add_argument("--stereo", default="auto", help="stereo prior: auto (DUSt3R when importable) | off | PATH of a "
                   "DUSt3R checkout")
    r.add_argument("--also", default="", help="more exports, comma-separated: obj, ply (a mesh per frame), usd")
    r.add_argument("--resolution", type=int, default=None, help="working size (frames are downscaled to it)")
    r.add_argument("--resume", action="store_true", help="continue an interrupted run in OUT")
    r.add_argument("--force", action="store_true", help="overwrite a non-empty OUT")
    r.add_argument("--quiet", action="store_true")
    r.add_argument("--json-log", action="store_true", help="progress as JSON lines (for scripts)")
    r.add_argument("--no-preview", action="store_true")
    r.add_argument("--pca", action="store_true", help="compact GLB (PCA morph basis)")
    r.add_argument("--remove-background", action="store_true", help="cut the object out with rembg (optional extra)")
    r.add_argument("--mask-smoothing", type=int, default=0, help="temporal median radius (frames) of the masks "
                   "--remove-background makes (1 removes one-frame flicker, thins fast edges); 0: off")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"bench": cmd_bench, "demo": cmd_demo, "inspect": cmd_inspect, "run": cmd_run}[args.cmd](args)
    except V2M4Error as exc:
        print(f"v2m4: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("v2m4: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
