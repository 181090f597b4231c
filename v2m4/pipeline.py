"""The whole pipeline, a line per stage (Fig. 2), with checkpoints.

frames -> keyframes -> generation -> camera search (+ appearance refinement, re-pose) -> registration -> texture ->
animation -> GLB + preview + report. Each stage's result is saved under ``run_dir/checkpoints`` as it finishes
(generation and refinement per frame), so ``resume=True`` continues where an interrupted run stopped; every stage
draws its randomness from its own seed, so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from . import render as R
from .camera import Camera
from .checkpoint import Checkpoints, write_json
from .config import PipelineConfig
from .errors import V2M4Error
from .progress import Log
from .stages.animate import make_animation
from .stages.camera import CameraResult, SearchState, search_cameras, search_units
from .stages.generate import checkpoint_name as gen_checkpoint, generate_keyframes, refine_keyframes
from .stages.keyframes import Keyframes, select_keyframes
from .stages.registration import RegistrationResult, register_sequence, sequence_quality
from .stages.registration.flow import video_flow
from .stages.registration.joint import register_clip
from .stages.registration.noise import NoiseEstimate, measure_noise
from .stages.lighting import render_lit
from .stages.texture import TextureResult, bake_texture, ring_views, texture_frames, unreached_fraction
from .types import Animation, Frames, Mesh

STAGES = ("keyframes", "generate", "camera", "register", "texture", "export")


@dataclass(frozen=True)
class RunResult:
    """keyframes (K,) int64: the reconstructed frames; generated_faces: each keyframe mesh's face count as the
    generator gave it (the stages work on it simplified to ``GenerationConfig.max_faces``); camera: the camera stage (its ``video_camera`` sees every
    frame); registration: the one mesh over the keyframes; texture: the texture stage (None when off); animation:
    every input frame; world_from_canonical (K, 4, 4): the similarity that re-posed each keyframe's generated mesh;
    report: what report.json records."""

    keyframes: Tensor
    generated_faces: tuple[int, ...]
    camera: CameraResult
    registration: RegistrationResult
    texture: TextureResult | None
    animation: Animation
    world_from_canonical: Tensor
    report: dict

    @property
    def video_camera(self) -> Camera:
        return self.camera.video_camera


class _Run:
    """What every stage of one run shares: device, renderer, checkpoints, log, timings and warnings."""

    def __init__(self, cfg: PipelineConfig, run_dir, resume: bool, log: str):
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise V2M4Error("--device cuda was asked for but torch sees no CUDA GPU")
        self.ctx = R.context(cfg.backend, self.device)
        self.store = Checkpoints(Path(run_dir) / "checkpoints" if run_dir else None, resume=resume)
        self.log = Log(log)
        self.seconds: dict[str, float] = {}
        self.generated_appearance = True  # set by the generation stage
        self.warnings: list[str] = []
        self._resumed = False

    @contextlib.contextmanager
    def timed(self, stage: str):
        t0 = time.perf_counter()
        yield
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0

    @contextlib.contextmanager
    def warnings_to_report(self, prefix: str):
        """What a stage warns of belongs in the report too (and is still shown)."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        for w in caught:
            self.warnings.append(f"{prefix}{w.message}")
            warnings.warn(self.warnings[-1], w.category)

    def stage(self, name: str, stage: str, load, run, *, goes_on: str | None = None):
        """``store.stage``; on a resumed run, the first stage found unfinished says how it goes on: from its
        beginning, or as ``goes_on`` says (a stage that checkpoints its own progress)."""
        if self.store.resume and not self.store.has(name):
            self.resuming(stage, goes_on or f"the {stage} stage was not finished and starts again from its beginning")
        return self.store.stage(name, load, run)

    def resuming(self, stage: str, message: str) -> None:
        """Say once, on a resumed run, where it goes on: the first stage that was not finished."""
        if self.store.resume and not self._resumed:
            self._resumed = True
            self.log.event(stage=stage, message=f"resuming: {message}")

    def generator(self, offset: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.cfg.seed + offset)


def reconstruct(frames: Frames, generator, cfg: PipelineConfig = PipelineConfig(), *,
                run_dir: str | os.PathLike | None = None, resume: bool = False, log: str = "bars") -> RunResult:
    """Video frames + a generator -> the animated asset (with run_dir, checkpoints too; see ``write_outputs``)."""
    check_frames(frames)
    run = _Run(cfg, run_dir, resume, log)
    with run.timed("keyframes"):
        key = run.store.stage("keyframes.json", Keyframes.load,
                              lambda: Keyframes(select_keyframes(frames, cfg.keyframes))).indices
    run.log.event(stage="keyframes", keyframes=key.tolist(), message=f"{len(key)} keyframes of {len(frames)} frames")
    done = sum(run.store.has(gen_checkpoint(t)) for t in key.tolist())
    if done < len(key):
        run.resuming("generate", f"{done} of {len(key)} keyframes' meshes were generated; generating the rest")
    with run.timed("generate"), run.log.bar(len(key), "generate") as bar:
        gen = generate_keyframes(frames, key, generator, cfg.generation, store=run.store, bar=bar)
    run.warnings += gen.warnings
    run.generated_appearance = gen.has_appearance
    if not gen.has_appearance:
        run.log.event(stage="generate", message="the generator gave no appearance (no vertex colours or texture): "
                      "the camera search compares silhouettes and shading only, and the texture comes from the video")
    key, kframes = gen.keyframes, frames.select(gen.keyframes)
    meshes = [m.to(run.device) for m in gen.meshes]
    with run.timed("camera"):
        cams = run.store.stage("camera.npz", CameraResult.load,
                               lambda: _search_cameras(run, meshes, kframes, frames.times[key])).to(run.device)
        refined = refine_keyframes(generator, meshes, kframes, key, cams.cameras, cfg.generation, store=run.store,
                                   log=run.log)
        run.warnings += refined.warnings
        reposed, world_from_canonical = cams.repose(list(refined.meshes))
    with run.timed("register"):
        fit = cfg.joint is not None and run.store.has("registration_fit.pt")
        reg = run.stage("registration.npz", "registration", RegistrationResult.load,
                        lambda: _register(run, reposed, frames, key, cams.video_camera,
                                          _Samples(generator, list(refined.meshes), world_from_canonical)),
                        goes_on="the whole-clip registration continues from its last saved step" if fit else None)
    fitted = key if cfg.joint is None else torch.arange(len(frames))  # the frames registration gave positions
    seq = reg.sequence
    seq = type(seq)(seq.rest.to(run.device), seq.vertices.to(run.device), seq.times)
    keyseq = seq if cfg.joint is None else type(seq)(seq.rest, seq.vertices[key.to(run.device)], seq.times[key])
    # the texture's video views: frames the whole-clip registration fitted, where configured, else the keyframes
    texseq, texframes, first = keyseq, kframes, 0
    if cfg.texture is not None and cfg.texture.video_frames > 0 and cfg.texture.video_supervision and \
            cfg.joint is not None:
        idx = texture_frames(len(frames), int(key[0]), cfg.texture)
        texseq = type(seq)(seq.rest, seq.vertices[idx.to(run.device)], seq.times[idx])
        texframes, first = frames.select(idx), int((idx == int(key[0])).nonzero()[0, 0])
    with run.timed("texture"):
        tex = None if cfg.texture is None else run.stage(
            "texture.npz", "texture", TextureResult.load,
            lambda: _texture(run, texframes, reposed, texseq, cams.video_camera, first))
    textured = seq.rest if tex is None else tex.mesh.to(run.device)
    vmap = torch.arange(seq.rest.vertices.shape[0], device=run.device) if tex is None else tex.vmap.to(run.device)
    anim = make_animation(textured, seq.vertices.to(textured.vertices)[:, vmap], fitted, len(frames), frames.fps)
    result = RunResult(key, gen.generated_faces, cams, reg, tex, anim, world_from_canonical, {})
    with run.timed("report"):
        report = _report(run, frames, result, refined.status)
    report["seconds"] = dict(run.seconds)
    return replace(result, report=report)


def _search_cameras(run: _Run, meshes: list[Mesh], kframes: Frames, times: Tensor) -> CameraResult:
    scorer, stereo, notes = _learned_parts(run.cfg, run.device)
    if notes:
        run.log.event(stage="camera", message="learned parts unavailable, using the weight-free path: "
                      + "; ".join(notes))
    run.log.event(stage="camera", message=f"camera search (scorer: {scorer.name})")
    # each keyframe's pose is checkpointed as it is settled, so that a resumed run continues with the next one
    name, K = "camera_search.npz", len(meshes)
    start = run.store.load(name, SearchState.load)
    run.resuming("camera", "the camera search starts from its beginning" if start is None else
                 f"the camera search continues after {len(start.poses)} of {K} keyframes"
                 + (f" and {start.backward} of {K - 1} of its backward pass" if start.backward else ""))

    def settled(state: SearchState) -> None:
        run.store.save(name, state)
        bar.to(state.settled)
    # a unit per keyframe, and one more per keyframe the backward pass revisits
    with run.log.bar(search_units(K, run.cfg.camera), "camera", unit="keyframe",
                     initial=0 if start is None else start.settled) as bar:
        found = search_cameras(meshes, kframes, times, run.cfg.camera, run.ctx, generator=run.generator(1),
                               scorer=scorer, stereo=stereo, unavailable=tuple(notes), checkpoint=settled,
                               start=start)
    del scorer, stereo  # each model lives for its stage only
    if run.device.type == "cuda":
        torch.cuda.empty_cache()
    return found


@dataclass(frozen=True)
class _Samples:
    """What measuring the generator's noise needs: the generator, the keyframes' meshes (canonical frame) and their
    found poses (K, 4, 4)."""

    generator: object
    meshes: list[Mesh]
    world_from_canonical: Tensor


def _register(run: _Run, reposed: list[Mesh], frames: Frames, key: Tensor, video_camera: Camera, samples: _Samples
              ) -> RegistrationResult:
    """Every frame of the clip at once (``PipelineConfig.joint``, the default), or keyframe pairs in a chain."""
    joint = run.cfg.joint
    run.log.event(stage="register", message="registration" + (" of the whole clip" if joint else ""))
    total = joint.steps() if joint is not None else len(reposed) - 1
    with run.log.bar(total, "register", unit="step" if joint else "pair") as bar, \
            run.warnings_to_report("registration: "):
        # a rest mesh that could not be remeshed folds more: registration warns, and the report says so
        if joint is not None:
            state = run.store.path("registration_fit.pt")  # the fit's own progress, so --resume goes on mid-fit
            if state is not None and state.exists() and not run.store.resume:
                state.unlink()
            flow = video_flow(frames.rgba) if joint.w_flow > 0 and len(frames) > 1 else None
            noise = None
            if joint.noise_samples > 0 and joint.temporal_weights:
                noise = run.store.stage("noise.json", NoiseEstimate.load, lambda: _noise(run, samples, frames, key))
            return register_clip(reposed, key, frames.mask.to(run.device), video_camera, joint, run.ctx,
                                 generator=run.generator(2), times=frames.times,
                                 progress=lambda d, tot: bar.to(d, tot), state=state, flow=flow, noise=noise)
        return register_sequence(reposed, run.cfg.registration, run.ctx, generator=run.generator(2),
                                 times=frames.times[key], progress=lambda d, tot: bar.to(d),
                                 video=(video_camera, frames.select(key).mask.to(run.device)))


def _noise(run: _Run, samples: _Samples, frames: Frames, key: Tensor) -> NoiseEstimate:
    """The generator's shape noise on this clip (``registration.noise``), which bounds the temporal smoothing."""
    n = min(run.cfg.joint.noise_samples, len(key))
    run.log.event(stage="register", message=f"the generator's noise: {n} keyframes generated again with other noise")
    return measure_noise(samples.generator, frames.rgba, key, samples.meshes, samples.world_from_canonical,
                         samples=n, max_faces=run.cfg.generation.max_faces, rng=run.generator(4))


def _texture(run: _Run, frames: Frames, reposed: list[Mesh], seq, video_camera: Camera, first: int
             ) -> TextureResult:
    run.log.event(stage="texture", message=f"texture from {len(frames)} frames of video")
    with run.log.bar(run.cfg.texture.iters, "texture", unit="step") as bar:
        return bake_texture(frames, reposed, seq, video_camera, run.cfg.texture, run.ctx, generator=run.generator(3),
                            progress=lambda done, total: bar.to(done), first=first)


def _report(run: _Run, frames: Frames, result: RunResult, appearance: str) -> dict:
    reg, cams, tex = result.registration, result.camera, result.texture
    report = {"frames": len(frames), "fps": frames.fps, "keyframes": result.keyframes.tolist(),
              "seconds": dict(run.seconds), "learned": cams.learned(), "appearance": appearance,
              "generated_appearance": "vertex colours or texture" if run.generated_appearance else
              "none: the camera search compared silhouettes and shading only; the texture is the video's",
              "warnings": list(run.warnings), "generated_faces": list(result.generated_faces),
              "registration": reg.figures(),
              "config": asdict(run.cfg)}
    # a step per frame of the input-view figures (each frame rendered), one for the stages' figures
    with run.log.bar(len(frames) + 1, "report", unit="step") as bar:
        report["input_view"] = input_view_metrics(result.animation, frames, result.video_camera, run.ctx,
                                                  progress=lambda done, total: bar.to(done),
                                                  light=None if tex is None else tex.light)
        report["input_view_frames"] = {"mask_iou": report["input_view"].pop("mask_iou_frames")}  # the viewer's plot
        figures = stage_figures(result)
        if tex is not None:
            report["unreached_frac"] = unreached_fraction(tex.mesh.to(run.device), tex.unreached,
                                                          ring_views(tex.mesh.to(run.device), 8, 256), run.ctx)
            figures.update(unreached_frac=report["unreached_frac"], texture_size=float(tex.mesh.texture.shape[0]),
                           video_supervision=float(run.cfg.texture.video_supervision))
        report["stage_figures"] = figures
        bar.update(1)
    return report


def stage_figures(result: RunResult) -> dict[str, float]:
    """The stages' own figures: how often the camera search went global and its time per frame, the collapse
    measures of the registered sequence, and its fit to the generated meshes."""
    glob, secs = result.camera.global_search, result.camera.seconds
    out = {"global_search_frac": float(glob.float().mean())}
    if bool(glob.any()) and len(secs) == len(glob):
        out["sec_global_frame"] = float(secs[glob].mean())
    if bool((~glob).any()) and len(secs) == len(glob):
        out["sec_warm_frame"] = float(secs[~glob].mean())
    seq, reg = result.registration.sequence, result.registration
    out.update(sequence_quality(seq.vertices, seq.rest.vertices, seq.rest.faces))
    if reg.chamfer:
        out.update(chamfer_generated=statistics.median(reg.chamfer), chamfer_generated_max=max(reg.chamfer),
                   sec_per_pair=statistics.mean(reg.seconds), retried_pairs=float(sum(reg.retried)))
    if reg.pieces_moved:  # the whole-clip fit's own figures (the chain places no pieces and smooths nothing)
        out["pieces_moved"] = float(sum(reg.pieces_moved))
        out["temporal_weight"] = reg.temporal_weight
        out["temporal_between"] = float(reg.temporal_between)
        out["noise_weight"] = reg.noise_weight
        out["restarted_keyframes"] = float(sum(reg.restarted))
    return out


def _learned_parts(cfg: PipelineConfig, dev) -> tuple[object, object, list[str]]:
    """The camera search's scorer and stereo prior as configured, and what could not be loaded (said once)."""
    from .learned import LearnedUnavailable, resolve_scorer
    scorer, notes = resolve_scorer(cfg.learned.scorer, dev, weights=cfg.learned.weights)
    stereo = None
    if cfg.learned.stereo != "off":
        import importlib.util
        from .learned.pointmap import load_dust3r
        from .stages.stereo_prior import StereoPrior
        checkout = None if cfg.learned.stereo == "auto" else cfg.learned.stereo
        if checkout is None and importlib.util.find_spec("dust3r") is None:
            notes.append("DUSt3R stereo prior: dust3r is not importable (give --stereo PATH of a DUSt3R checkout)")
        else:
            try:
                stereo = StereoPrior(load_dust3r(dev, checkout=checkout))
            except LearnedUnavailable as exc:
                if checkout is not None:
                    raise
                notes.append(f"DUSt3R stereo prior: {exc}")
    return scorer, stereo, notes


def check_frames(frames: Frames) -> None:
    empty = [i for i in range(len(frames)) if float(frames.mask[i].max()) <= 0.5]
    if len(empty) == len(frames):
        raise V2M4Error("every frame is fully transparent: there is no object to reconstruct")
    if empty:
        shown = ", ".join(map(str, empty[:8])) + (" ..." if len(empty) > 8 else "")
        raise V2M4Error(f"{len(empty)} frame(s) are fully transparent (frames {shown}); remove them or fix the masks")
    if float((frames.mask > 0.5).float().mean()) >= 0.999:
        raise V2M4Error("the frames have no alpha channel or masks: give --masks DIR, or add --remove-background "
                        "(needs rembg: pip install rembg)")


def input_view_metrics(anim: Animation, frames: Frames, camera: Camera, ctx, chunk: int = 16, progress=None,
                       light: Tensor | None = None) -> dict:
    """Median mask IoU, masked PSNR and SSIM of every frame of the animation against the input, from its camera;
    and the mask IoU of each frame (mask_iou_frames). progress: optional callable(done, total) in frames. light:
    the video's light the texture was taken out of (``TextureResult.light``), under which the asset is seen here
    as the video showed it (``lighting.render_lit``)."""

    from .metrics.image import mask_iou, masked_psnr, ssim
    ious, psnrs, ssims = [], [], []
    weld = R.weld_map(anim.mesh.vertices) if light is not None else None
    with torch.no_grad():
        for s in range(0, len(anim), chunk):
            v = anim.vertices[s: s + chunk].to(anim.mesh.vertices)
            n = v.shape[0]
            cams = Camera(camera.K.expand(n, 3, 3), camera.cam_from_world.expand(n, 4, 4), camera.resolution)
            r = render_lit(ctx, anim.mesh, cams, light, vertices=v, weld=weld)
            ref = frames.rgba[s: s + n].to(v.device)
            ious += mask_iou(r["mask"], ref[..., 3]).tolist()
            psnrs += masked_psnr(r["rgb"], ref[..., :3], ref[..., 3]).tolist()
            union = torch.maximum(r["mask"], ref[..., 3])
            ssims += ssim(r["rgb"] * r["mask"][..., None], ref[..., :3] * ref[..., 3:], union).tolist()
            if progress:
                progress(s + n, len(anim))
    return {"mask_iou": statistics.median(ious), "psnr": statistics.median(psnrs), "ssim": statistics.median(ssims),
            "mask_iou_frames": [round(float(v), 5) for v in ious]}


def write_outputs(result: RunResult, frames: Frames, out_dir: str | os.PathLike, cfg: PipelineConfig, *,
                  log: str = "bars") -> dict:
    """animation.glb, preview.mp4, viewer.html and report.json in out_dir (each written atomically)."""
    from .export.gltf import write_glb
    from .export.preview import write_preview
    from .export.validate import validate_glb, validator_available

    out = Path(out_dir)
    t0 = time.perf_counter()
    # a step per file, and one per frame of the preview, which renders every frame twice
    preview = len(result.animation) if cfg.output.preview else 0
    steps = 2 + preview + bool(cfg.output.rig_bones) + len(cfg.output.extra_exports)
    with Log(log).bar(steps, "export", unit="step") as bar:
        stats = write_glb(out / "animation.glb", result.animation, mode=cfg.output.glb_mode)
        result.animation.save(out / "checkpoints" / "animation.npz")
        report = dict(result.report)
        report["glb"] = stats
        if validator_available() is None:
            v = validate_glb(out / "animation.glb")
            report["glb"]["validator"] = {k: v[k] for k in ("errors", "warnings", "infos", "hints")}
        bar.update(1)
        if preview:
            ctx = R.context(cfg.backend, cfg.device)
            write_preview(out / "preview.mp4", result.animation, frames, result.video_camera, ctx=ctx,
                          resolution=cfg.output.preview_resolution, normals=cfg.output.preview_normals,
                          progress=lambda done, total: bar.to(1 + done),
                          light=None if result.texture is None else result.texture.light)
        if cfg.output.rig_bones:
            from .export.rig import write_rig
            report["rig"] = write_rig(out / "animation_rigged.glb", result.animation, cfg.output.rig_bones)
            bar.update(1)
        for fmt in cfg.output.extra_exports:
            if fmt in ("obj", "ply"):
                from .export.meshes import write_mesh_folder
                n = len(write_mesh_folder(out / f"meshes_{fmt}", result.animation, fmt=fmt))
                report.setdefault("exports", {})[fmt] = f"{n} files"
            elif fmt == "usd":
                from .export.usd import write_usd
                report.setdefault("exports", {})["usd"] = write_usd(out / "animation.usda", result.animation,
                                                                     fps=frames.fps)
            else:
                raise V2M4Error(f"unknown export {fmt!r}; choose obj, ply or usd")
            bar.update(1)
        from .export.viewer import write_viewer
        try:
            write_viewer(out, camera=result.video_camera, times=result.animation.times.cpu().numpy(), frames=frames,
                         report=report)
        except V2M4Error as exc:  # an install without the viewer's script loses the page, not the run
            report.setdefault("warnings", []).append(str(exc))
            warnings.warn(str(exc))
        bar.update(1)
    report["seconds"]["export"] = time.perf_counter() - t0
    report["versions"] = versions()
    write_json(out / "report.json", report, indent=1)
    return report


def versions() -> dict:
    import numpy

    from . import __version__
    return {"v2m4": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version(), "machine": platform.machine()}
