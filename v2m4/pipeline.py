"""The whole pipeline, stage by stage, with checkpoints (the architecture's floor 4).

frames -> keyframes -> generator (per keyframe) -> camera search + re-pose -> registration -> texture ->
animation (interpolation) -> GLB + preview + report. Each stage writes its output under ``run_dir/checkpoints``
before the next starts, and generation checkpoints every frame, so ``resume=True`` continues where an interrupted
run stopped; every stage draws its randomness from its own seed, so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import platform
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from . import render as R
from .camera import Camera
from .errors import V2M4Error
from .stages.keyframes import KeyframeConfig, budget_keyframes, select_keyframes
from .types import Animation, Frames, Mesh, Sequence, atomic_save_npz

STAGES = ("keyframes", "generate", "camera", "register", "texture", "export")


@dataclass(frozen=True)
class PipelineConfig:
    preset: str = "fast"                       # "fast" (CPU) or "paper" (GPU): every stage's preset
    keyframes: KeyframeConfig = KeyframeConfig()
    n_keyframes: int | None = None             # a keyframe budget instead of the stride (ours)
    device: str = "cpu"
    backend: str = "torch"
    seed: int = 0
    preview: bool = True
    preview_resolution: int = 256
    preview_normals: bool = False
    glb_mode: str = "targets"                  # "targets" (one per keyframe) or "pca" (compact)
    video_supervision: bool | None = None      # texture supervision override (None: the preset's)
    texture: bool = True                       # Sec. 4.4; False: no texture stage, the rest mesh keeps the first
                                               # keyframe's generated vertex colours (the bench's `register`)
    extra_exports: tuple[str, ...] = ()        # any of "obj", "ply" (a file per frame), "usd"
    scorer: str = "auto"                       # Sec. 4.1: "auto" (DreamSim when its weights are here, else the
                                               # weight-free scorer), "dreamsim", "lpips", "silhouette-colour"
    weights: str | None = None                 # folder of the scorer's weights (default: its standard cache)
    stereo: str = "auto"                       # Alg. 1 stereo prior: "auto" (DUSt3R when importable), "off", or
                                               # the path of a DUSt3R checkout
    refine_appearance: bool = True             # Sec. 4.2: regenerate each keyframe with its negative condition
                                               # optimised against the frame (generators with the hook: TRELLIS)


@dataclass
class RunResult:
    """animation: every input frame; camera: the video camera; world_from_canonical (K, 4, 4): the similarity
    that re-posed each keyframe's generated mesh (for pose scoring); extras: the stages' own figures (the bench's
    method columns); report: what report.json records."""

    animation: Animation
    camera: Camera
    report: dict = field(default_factory=dict)
    world_from_canonical: torch.Tensor | None = None
    extras: dict = field(default_factory=dict)


class _Log:
    """Progress for people (tqdm bars), or JSON lines for scripts, or nothing."""

    def __init__(self, mode: str = "bars"):
        self.mode = mode

    def event(self, **kw):
        if self.mode == "json":
            print(json.dumps(kw), flush=True)
        elif self.mode == "bars" and kw.get("message"):
            print(kw["message"], flush=True)

    def bar(self, total: int, desc: str):
        if self.mode != "bars":
            return None
        from tqdm import tqdm
        return tqdm(total=total, desc=desc, unit="frame", leave=False)


def _interrupt_hook(stage: str, done: int) -> None:
    """Test hook: V2M4_TEST_INTERRUPT=stage:n stops the run (as Ctrl-C would) after n units of that stage."""
    spec = os.environ.get("V2M4_TEST_INTERRUPT", "")
    if spec and spec.split(":")[0] == stage and done >= int(spec.split(":")[1]):
        raise KeyboardInterrupt(f"test interrupt after {stage}:{done}")


def _valid(mesh: Mesh) -> str | None:
    if mesh.faces.numel() == 0 or mesh.vertices.shape[0] < 3:
        return "it has no faces"
    if not bool(torch.isfinite(mesh.vertices).all()):
        return "it has non-finite vertices"
    if float((mesh.vertices.amax(0) - mesh.vertices.amin(0)).norm()) <= 0:
        return "it is degenerate (all vertices coincide)"
    return None


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


def reconstruct(frames: Frames, generator, cfg: PipelineConfig = PipelineConfig(), *,
                run_dir: str | os.PathLike | None = None, resume: bool = False, log: str = "bars") -> RunResult:
    """Video frames + a generator -> the animated asset (and, with run_dir, every output file)."""
    from .methods.camera import camera_config
    from .methods.full import texture_config, texture_stage
    from .methods.register import registration_config
    from .stages.animate import make_animation
    from .stages.camera_search import search_cameras
    from .stages.registration import register_sequence

    L = _Log(log)
    check_frames(frames)
    dev = torch.device(cfg.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise V2M4Error("--device cuda was asked for but torch sees no CUDA GPU")
    ctx = R.context(cfg.backend, dev)
    ck = Path(run_dir) / "checkpoints" if run_dir else None
    if ck:
        ck.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    warn: list[str] = []

    def have(name):
        return resume and ck is not None and (ck / name).exists()

    # 1. keyframes
    t0 = time.perf_counter()
    if have("keyframes.json"):
        key = torch.tensor(json.loads((ck / "keyframes.json").read_text())["keyframes"])
    else:
        if cfg.n_keyframes:
            from .stages.keyframes import adaptive_keyframes
            key = adaptive_keyframes(frames, cfg.n_keyframes) if cfg.keyframes.mode == "adaptive" else \
                budget_keyframes(len(frames), cfg.n_keyframes)
        else:
            key = select_keyframes(frames, cfg.keyframes)
        if ck:
            _atomic_text(ck / "keyframes.json", json.dumps({"keyframes": key.tolist()}))
    seconds["keyframes"] = time.perf_counter() - t0
    L.event(stage="keyframes", keyframes=key.tolist(), message=f"{len(key)} keyframes of {len(frames)} frames")

    # 2. one generated mesh per keyframe (checkpointed per frame)
    t0 = time.perf_counter()
    generated: dict[int, Mesh] = {}
    bar = L.bar(len(key), "generate")
    for n, t in enumerate(key.tolist()):
        f = ck / f"gen_{t:05d}.npz" if ck else None
        if f is not None and have(f.name):
            generated[t] = Mesh.load(f)
        else:
            try:
                m = generator.generate(frames.rgba[t], t)
                why = _valid(m)
            except V2M4Error as exc:  # a broken mesh file or the like: that frame only
                m, why = None, str(exc)
            if why:
                warn.append(f"frame {t}: generated mesh skipped ({why}); it is interpolated from its neighbours")
                warnings.warn(warn[-1])
                m = Mesh(torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.int64))
            if f is not None:
                m.save(f)
            generated[t] = m
        if bar:
            bar.update(1)
        _interrupt_hook("generate", n + 1)
    if bar:
        bar.close()
    key = torch.tensor([t for t in key.tolist() if generated[t].faces.numel() > 0])
    if len(key) == 0:
        raise V2M4Error("the generator produced no usable mesh for any keyframe" + (f" ({warn[0]})" if warn else ""))
    meshes = [generated[t].to(dev) for t in key.tolist()]
    kframes = frames.select(key)
    seconds["generate"] = time.perf_counter() - t0

    # 3. camera search and re-pose
    t0 = time.perf_counter()
    learned = None
    if have("camera.npz"):
        d = _load(ck / "camera.npz")
        cams = Camera(d["K"].to(dev), d["cam_from_world"].to(dev), tuple(int(x) for x in d["resolution"]))
        scales = d["scales"]
        glob = d.get("global_search", torch.zeros(len(meshes))).bool()
        search_sec = d.get("search_seconds", torch.zeros(0))
    else:
        ccfg = camera_config(cfg.preset)
        g = torch.Generator().manual_seed(cfg.seed + 1)
        scorer, stereo, learned = _learned_parts(cfg, dev)
        if learned["unavailable"]:
            L.event(stage="camera", message="learned parts unavailable, using the weight-free path: "
                    + "; ".join(learned["unavailable"]))
        L.event(stage="camera", message=f"camera search (scorer: {learned['scorer']})")
        found = search_cameras(meshes, kframes, ccfg, ctx, generator=g, scorer=scorer, stereo=stereo)
        del scorer, stereo  # each model lives for its stage only
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        if ck:
            _atomic_text(ck / "learned.json", json.dumps(learned))
        cams = found.cameras
        from .stages.camera_search import repose_scales
        scales = repose_scales(meshes, cams.cam_from_world, frames.times[key], ccfg)
        glob, search_sec = found.global_search.cpu().bool(), torch.tensor(found.seconds, dtype=torch.float64)
        if ck:
            atomic_save_npz(ck / "camera.npz", K=cams.K, cam_from_world=cams.cam_from_world,
                            resolution=torch.tensor(cams.resolution), scales=scales, global_search=glob,
                            search_seconds=search_sec)
    _interrupt_hook("camera", 1)
    appearance = _refine_appearance(generator, meshes, kframes, key, cams, cfg, ck, L, warn)
    from .stages.camera_search import repose
    world_from_cam = cams.world_from_cam[0]
    posed = [repose(m, cams.cam_from_world[k], world_from_cam, scale=float(scales[k])) for k, m in enumerate(meshes)]
    reposed = [m for m, _ in posed]
    world_from_canonical = torch.stack([M for _, M in posed]).cpu()
    video_cam = cams[0]
    seconds["camera"] = time.perf_counter() - t0
    extras = {"global_search_frac": float(glob.float().mean())}
    if bool(glob.any()) and len(search_sec) == len(glob):
        extras["sec_global_frame"] = float(search_sec[glob].mean())
    if bool((~glob).any()) and len(search_sec) == len(glob):
        extras["sec_warm_frame"] = float(search_sec[~glob].mean())

    # 4. registration
    t0 = time.perf_counter()
    if have("registration.npz"):
        seq = Sequence.load(ck / "registration.npz")
        seq = Sequence(seq.rest.to(dev), seq.vertices.to(dev), seq.times)
        reg_extra = json.loads((ck / "registration.json").read_text())
    else:
        L.event(stage="register", message="registration")
        rcfg = replace(registration_config(cfg.preset), seed=cfg.seed + 2)
        bar = L.bar(len(reposed) - 1, "register")
        # what registration warns of (a rest mesh it could not remesh folds more) belongs in the report too
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = register_sequence(reposed, rcfg, ctx, times=frames.times[key],
                                    progress=(lambda d, tot: bar.update(1)) if bar else None,
                                    video=(video_cam, kframes.mask.to(dev)))
        if bar:
            bar.close()
        for w in caught:
            warn.append(f"registration: {w.message}")
            warnings.warn(warn[-1], w.category)
        seq = res.sequence
        reg_extra = {"chamfer": res.chamfer, "flipped": res.flipped, "retried": res.retried, "seconds": res.seconds}
        if ck:
            seq.save(ck / "registration.npz")
            _atomic_text(ck / "registration.json", json.dumps(reg_extra))
    _interrupt_hook("register", 1)
    seconds["register"] = time.perf_counter() - t0
    from .methods.register import sequence_quality
    extras.update(sequence_quality(seq.vertices, seq.rest))
    if reg_extra["chamfer"]:
        import statistics
        extras.update(chamfer_generated=statistics.median(reg_extra["chamfer"]),
                      chamfer_generated_max=max(reg_extra["chamfer"]),
                      sec_per_pair=statistics.mean(reg_extra["seconds"]),
                      retried_pairs=float(sum(reg_extra["retried"])))

    # 5. texture
    t0 = time.perf_counter()
    if not cfg.texture:
        textured = seq.rest.to(dev)
        vmap = torch.arange(textured.vertices.shape[0], device=dev)
        unreached = None
    elif have("texture.npz"):
        d = _load(ck / "texture.npz")
        textured = Mesh.from_arrays({k: v.numpy() for k, v in d.items()}, "tex_").to(dev)
        vmap = d["vmap"].to(dev)
        unreached = d["unreached"].bool()
    else:
        L.event(stage="texture", message="texture")
        tcfg = texture_config(cfg.preset)
        if cfg.video_supervision is not None:
            tcfg = replace(tcfg, video_supervision=cfg.video_supervision)
        g = torch.Generator().manual_seed(cfg.seed + 3)
        tex = texture_stage(kframes, reposed, seq.rest, seq.vertices, video_cam, tcfg, ctx, g)
        textured, vmap, unreached = tex.mesh, tex.vmap, tex.unreached
        if ck:
            atomic_save_npz(ck / "texture.npz", **textured.arrays("tex_"), vmap=vmap, unreached=unreached)
    seconds["texture"] = time.perf_counter() - t0

    # 6. animation
    anim = make_animation(textured, seq.vertices.to(textured.vertices)[:, vmap], key, len(frames), frames.fps)
    if learned is None and ck is not None and (ck / "learned.json").exists():  # resumed after the camera stage
        learned = json.loads((ck / "learned.json").read_text())
    report = {"frames": len(frames), "fps": frames.fps, "keyframes": key.tolist(), "seconds": seconds,
              "learned": learned, "appearance": appearance,
              "warnings": warn, "registration": reg_extra, "config": _jsonable(asdict(cfg))}
    report["input_view"] = input_view_metrics(anim, frames, video_cam, ctx)
    if cfg.texture:
        from .stages.texture import ring_views, unreached_fraction
        report["unreached_frac"] = unreached_fraction(textured, unreached, ring_views(textured, 8, 256), ctx)
        vs = texture_config(cfg.preset).video_supervision if cfg.video_supervision is None else cfg.video_supervision
        extras.update(unreached_frac=report["unreached_frac"], texture_size=float(textured.texture.shape[0]),
                      video_supervision=float(vs))
    report["stage_figures"] = dict(extras)
    return RunResult(animation=anim, camera=video_cam, report=report, world_from_canonical=world_from_canonical,
                     extras=extras)


def _refine_appearance(generator, meshes: list, kframes: Frames, key, cams: Camera, cfg: PipelineConfig, ck, L,
                       warn: list) -> str:
    """Sec. 4.2 between the camera search and the re-pose: each keyframe's mesh regenerated (same seed, same
    voxels, so the found camera still holds) with the appearance optimised against the frame. Replaces meshes[k]
    in place; checkpointed per frame. Returns what happened, for the report."""
    if not cfg.refine_appearance:
        return "off"
    refine = getattr(generator, "refine", None)
    name = getattr(generator, "name", type(generator).__name__)
    if refine is None:
        L.event(stage="appearance", message=f"appearance refinement (Sec. 4.2) skipped: the {name} generator has "
                "no hook for it (TRELLIS has)")
        return f"skipped: the {name} generator has no hook"
    bar = L.bar(len(meshes), "appearance")
    for k, t in enumerate(key.tolist()):
        f = ck / f"refined_{t:05d}.npz" if ck else None
        if f is not None and f.is_file():
            meshes[k] = Mesh.load(f).to(meshes[k].vertices.device)
        else:
            m = refine(kframes.rgba[k], t, cams[k])
            why = _valid(m)
            if why:
                warn.append(f"frame {t}: refined mesh rejected ({why}); the generated one is kept")
                warnings.warn(warn[-1])
            else:
                meshes[k] = m.to(meshes[k].vertices.device)
                if f is not None:
                    meshes[k].save(f)
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    return "refined"


def _learned_parts(cfg: PipelineConfig, dev) -> tuple[object, object, dict]:
    """The camera search's scorer and stereo prior as configured, and what was used / unavailable (for the log,
    once, and the report)."""
    from .learned import LearnedUnavailable, resolve_scorer
    scorer, notes = resolve_scorer(cfg.scorer, dev, weights=cfg.weights)
    stereo = None
    if cfg.stereo != "off":
        import importlib.util
        from .learned.pointmap import load_dust3r
        from .stages.stereo_prior import StereoPrior
        checkout = None if cfg.stereo == "auto" else cfg.stereo
        if checkout is None and importlib.util.find_spec("dust3r") is None:
            notes.append("DUSt3R stereo prior: dust3r is not importable (give --stereo PATH of a DUSt3R checkout)")
        else:
            try:
                stereo = StereoPrior(load_dust3r(dev, checkout=checkout))
            except LearnedUnavailable as exc:
                if checkout is not None:
                    raise
                notes.append(f"DUSt3R stereo prior: {exc}")
    return scorer, stereo, {"scorer": scorer.name, "stereo": "dust3r" if stereo else None, "unavailable": notes}


def input_view_metrics(anim: Animation, frames: Frames, camera: Camera, ctx, chunk: int = 16) -> dict:
    """Median mask IoU, masked PSNR and SSIM of every frame of the animation against the input, from its camera."""
    import statistics

    from .metrics.image import mask_iou, masked_psnr, ssim
    ious, psnrs, ssims = [], [], []
    with torch.no_grad():
        for s in range(0, len(anim), chunk):
            v = anim.vertices[s: s + chunk].to(anim.mesh.vertices)
            n = v.shape[0]
            cams = Camera(camera.K.expand(n, 3, 3), camera.cam_from_world.expand(n, 4, 4), camera.resolution)
            r = R.render(ctx, anim.mesh, cams, channels=("rgb", "mask"), vertices=v)
            ref = frames.rgba[s: s + n].to(v.device)
            ious += mask_iou(r["mask"], ref[..., 3]).tolist()
            psnrs += masked_psnr(r["rgb"], ref[..., :3], ref[..., 3]).tolist()
            union = torch.maximum(r["mask"], ref[..., 3])
            ssims += ssim(r["rgb"] * r["mask"][..., None], ref[..., :3] * ref[..., 3:], union).tolist()
    return {"mask_iou": statistics.median(ious), "psnr": statistics.median(psnrs), "ssim": statistics.median(ssims)}


def write_outputs(result: RunResult, frames: Frames, out_dir: str | os.PathLike, cfg: PipelineConfig, *,
                  log: str = "bars") -> dict:
    """animation.glb, preview.mp4 and report.json in out_dir (each written atomically)."""
    from .export.gltf import write_glb
    from .export.preview import write_preview
    from .export.validate import validate_glb, validator_available

    out = Path(out_dir)
    t0 = time.perf_counter()
    stats = write_glb(out / "animation.glb", result.animation, mode=cfg.glb_mode)
    result.animation.save(out / "checkpoints" / "animation.npz")
    report = dict(result.report)
    report["glb"] = stats
    if validator_available() is None:
        v = validate_glb(out / "animation.glb")
        report["glb"]["validator"] = {k: v[k] for k in ("errors", "warnings", "infos", "hints")}
    if cfg.preview:
        ctx = R.context(cfg.backend, cfg.device)
        write_preview(out / "preview.mp4", result.animation, frames, result.camera, ctx=ctx,
                      resolution=cfg.preview_resolution, normals=cfg.preview_normals)
    for fmt in cfg.extra_exports:
        if fmt in ("obj", "ply"):
            from .export.meshes import write_mesh_folder
            report.setdefault("exports", {})[fmt] = str(len(write_mesh_folder(out / f"meshes_{fmt}", result.animation,
                                                                               fmt=fmt))) + " files"
        elif fmt == "usd":
            from .export.usd import write_usd
            report.setdefault("exports", {})["usd"] = write_usd(out / "animation.usda", result.animation,
                                                                 fps=frames.fps)
        else:
            raise V2M4Error(f"unknown export {fmt!r}; choose obj, ply or usd")
    report["seconds"]["export"] = time.perf_counter() - t0
    report["versions"] = versions()
    _atomic_text(out / "report.json", json.dumps(_jsonable(report), indent=1))
    return report


def versions() -> dict:
    import numpy

    from . import __version__
    return {"v2m4": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version(), "machine": platform.machine()}


def _load(path) -> dict:
    import numpy as np
    with np.load(path, allow_pickle=False) as d:
        return {k: torch.as_tensor(d[k]) for k in d.files}


def _atomic_text(path: Path, text: str) -> None:
    from .types import atomic_write_bytes
    atomic_write_bytes(path, text.encode())


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, float) and x != x:
        return None
    return x
