"""One clip, as `v2m4 run` runs it and `v2m4 batch` runs each of its clips (here or in a Ray task): read and check
the input, make the generator, check the config, prepare the output folder, reconstruct, write the outputs; and
what a batch says of one clip (``Clip``, ``BatchOptions``, ``ClipResult``). User mistakes raise ``V2M4Error``
before the output folder is touched."""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path

from .errors import V2M4Error


def prepare_out(out: Path, *, force: bool, resume: bool) -> None:
    """The output folder, made; refused when it holds something, unless resuming or forced (which clears it)."""
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


@dataclass(frozen=True)
class InputOptions:
    """How ``v2m4 run`` reads its input: masks folder, frame rate of a frame folder, background removal."""

    masks: str | None = None
    fps: float | None = None
    remove_background: bool = False
    mask_smoothing: int = 0          # temporal median radius (frames) of the masks background removal makes


def read_input(input_path, inputs: InputOptions, max_size: int):
    """The frames ``v2m4 run`` reconstructs, checked; and what the report says of the background."""
    from .io.frames import read_frames
    from .pipeline import check_frames

    frames = read_frames(input_path, masks=inputs.masks, fps=inputs.fps, max_size=max_size)
    background = {"method": "input alpha" if inputs.masks is None else "--masks"}
    if inputs.remove_background:
        from .io.background import remove_background as rb
        frames = rb(frames, temporal_radius=inputs.mask_smoothing)
        background = {"method": "rembg:u2net", "temporal_median_radius": inputs.mask_smoothing}
    check_frames(frames)
    return frames, background


def check_config(cfg) -> None:
    """Everything about a config that can fail before any work: optional packages and paths it names."""
    bad = [a for a in cfg.output.extra_exports if a not in ("obj", "ply", "usd")]
    if bad:
        raise V2M4Error(f"--also takes obj, ply and usd, not {', '.join(bad)}")
    if "usd" in cfg.output.extra_exports:
        try:
            import pxr  # noqa: F401
        except ImportError:
            raise V2M4Error("--also usd needs usd-core: pip install usd-core") from None
    if cfg.output.preview:
        try:
            import av  # noqa: F401  (a dependency, yet absent from some images: say so before the work, not after)
        except ImportError:
            raise V2M4Error("the preview video needs PyAV: pip install av (or add --no-preview)") from None
    from .learned import check_scorer
    check_scorer(cfg.learned.scorer, weights=cfg.learned.weights)
    stereo = cfg.learned.stereo
    if stereo not in ("auto", "off") and not (Path(stereo) / "dust3r").is_dir():
        raise V2M4Error(f"--stereo {stereo}: not a DUSt3R checkout (no dust3r/ folder in it)")


def run_pipeline(input_path, out: Path, generator_spec: str, cfg, *, inputs: InputOptions = InputOptions(),
                 resume: bool = False, force: bool = False, log: str = "bars") -> dict:
    """`v2m4 run`: read, check, reconstruct, write; returns the report. ``cfg``: a ``PipelineConfig``."""
    from .generators import make_generator
    from .pipeline import reconstruct, write_outputs

    # every input check comes before the output folder is touched: a mistake leaves nothing behind
    frames, background = read_input(input_path, inputs, cfg.resolution)
    gen = make_generator(generator_spec, len(frames), seed=cfg.seed, device=cfg.device)
    check_config(cfg)
    prepare_out(out, force=force, resume=resume)
    try:
        result = reconstruct(frames, gen, cfg, run_dir=out, resume=resume, log=log)
        result.report["background"] = background
        return write_outputs(result, frames, out, cfg, log=log)
    except OSError as exc:  # a full disk, a quota, a vanished folder: no half-written output stays behind
        remove_partial_outputs(out)
        raise V2M4Error(f"could not write to {out}: {exc.strerror or exc} (checkpoints are kept: free space and "
                        f"run again with --resume)") from None


FINAL_OUTPUTS = ("animation.glb", "preview.mp4", "report.json", "meshes_obj", "meshes_ply", "animation.usda",
                 "animation_texture.png", "animation_rigged.glb", "viewer.html")


def remove_partial_outputs(out: Path) -> None:
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


@dataclass(frozen=True)
class Clip:
    """One input of a batch: its frames (a video file or a frame folder), the name of its output folder, and its
    generator spec with the placeholders filled in."""

    input: str
    name: str
    generator: str


@dataclass(frozen=True)
class BatchOptions:
    """How every clip of a batch is read and run. ``retries``: attempts after a clip's first failure;
    ``keyframes_per_task``: keyframes per generation task on Ray (each task loads the generator once, so fewer,
    larger tasks pay fewer model loads and more spread the keyframes over more GPUs); ``force``: redo every clip
    from scratch."""

    inputs: InputOptions = InputOptions()
    retries: int = 1
    keyframes_per_task: int = 8
    force: bool = False


@dataclass(frozen=True)
class ClipResult:
    """status: "done" (ran now), "skipped" (complete before) or "failed"; attempts: runs tried now (0 when
    skipped); seconds: wall time of those runs; error: the last attempt's error, one line; figures: the run's
    report figures (frames, keyframes, input-view mask IoU and PSNR, seconds of its stages)."""

    name: str
    input: str
    out: str
    status: str
    attempts: int = 0
    seconds: float = 0.0
    error: str | None = None
    figures: dict = field(default_factory=dict)


def figures_of(out_dir: Path) -> dict:
    """The summary's figures of a finished run, from its report.json."""
    import json

    rep = json.loads((out_dir / "report.json").read_text())
    iv = rep.get("input_view", {})
    return {"frames": rep.get("frames"), "keyframes": len(rep.get("keyframes", [])), "mask_iou": iv.get("mask_iou"),
            "psnr": iv.get("psnr"), "stage_seconds": {k: round(v, 2) for k, v in rep.get("seconds", {}).items()}}


def describe(exc: BaseException) -> str:
    """A failure in one line: a ``V2M4Error``'s message as it is, anything else with its type."""
    cause = getattr(exc, "cause", None)  # a Ray task's error wraps the exception the task raised
    if isinstance(cause, BaseException):
        exc = cause
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if isinstance(exc, V2M4Error) else f"{type(exc).__name__}: {text}".rstrip(": ")


def record_failure(out_dir: Path, exc: BaseException) -> None:
    """The whole traceback beside the clip's outputs (the summary keeps one line)."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        (out_dir / "error.txt").write_text(text)
    except OSError:  # best effort (a full disk may be the clip's failure): the summary's line still names the error
        return


def run_clip(clip: Clip, out: Path, cfg, options: BatchOptions, *, log: str = "quiet") -> dict:
    """One attempt at one clip: ``v2m4 run INPUT -o OUT/NAME --resume`` with the batch's options; its figures."""
    d = out / clip.name
    run_pipeline(clip.input, d, clip.generator, cfg, inputs=options.inputs, resume=True, log=log)
    (d / "error.txt").unlink(missing_ok=True)
    return figures_of(d)
