"""`v2m4 bench`: run a method on bench items and score it with weight-free metrics (the paper's Table 2 setting).

The pipeline sees only the frames and, through the synthetic generator, per-frame meshes derived from the ground
truth; the ground truth is used for scoring alone. Metrics (each the item's median over frames unless the name
says otherwise):

  mask_iou, psnr, ssim     input view: renders through the method's video camera against the input frames
  clip_sim, lpips, dreamsim, fvd
                           learned input-view metrics (paper Table 2) where their models are installed, else
                           "n/a: not installed" / "n/a: no weights" (v2m4/metrics/learned.py)
  chamfer_once, fscore1_once, fscore2_once
                           against the ground truth after ONE similarity alignment at the first frame (drift counts);
                           Chamfer-L2 in units of the ground truth's bounding-box diagonal (squared), F-score at 1%
                           and 2% of that diagonal
  chamfer_per_frame, fscore2_per_frame
                           the same after aligning every frame on its own (shape quality alone)
  fscore2_once_first, fscore2_once_last
                           the first and last frame's F-score@2% (aligned once): drift shows as a drop
  topology_constant        1 if every output frame has the same vertices count, faces and connectivity
  jitter                   mean norm of the acceleration over the output's vertices, once-aligned (outputs
                           without one topology: the output vertex nearest each ground-truth vertex), fraction of
                           the diagonal per frame^2; jitter_gt is the same over the ground truth's vertices. Each
                           vertex counts as stored: copies split at UV seams or per face count apiece
                           (bench/jitter_weights.py)
  sec_per_frame            method wall time per frame (the synthetic generator's time is gen_sec_per_frame)
  mask_iou_true_pose       methods that re-pose (camera): the input-view mask IoU of the generated meshes placed
                           by the transform the synthetic generator removed, through the true camera; what a
                           perfect camera search would score, since the generator's decimation and noise change
                           the silhouette

The method ``true_pose`` is that placement scored in full: not a method (it reads what the generator removed) but
the ceiling of every re-posing one. Its rows say what the metrics allow at perfect cameras: an item whose first
frame is a sphere has no orientation for the one alignment to fix, and a small error of that alignment, from the
generator's noise, grows with the distance the object travels.

Results go to bench/results/<method>.json (shape: {"method", "date", "machine", "device", "settings", "items"})
and a Markdown table beside it.
"""

from __future__ import annotations

import datetime
import importlib
import json
import math
import os
import platform
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from .. import render as R
from ..config import PipelineConfig
from ..errors import V2M4Error
from ..types import Mesh

METHODS = {
    "naive": "v2m4.bench.methods.naive",
    "camera": "v2m4.bench.methods.camera",
    "register": "v2m4.pipeline:reconstruct",     # camera + registration: the pipeline without its texture stage
    "full": "v2m4.pipeline:reconstruct",         # camera + registration + texture: the whole pipeline
    "full_genref": "v2m4.pipeline:reconstruct",  # the same with the paper's texture supervision alone
    "true_pose": "v2m4.bench:true_pose_output",   # not a method: the generator's meshes at their true poses
    "register_seq": "v2m4.pipeline:reconstruct",   # `register` with keyframe pairs registered in a chain (the
                                                    # paper's schedule): the whole-clip fit's baseline
    "full_seq": "v2m4.pipeline:reconstruct",       # `full` likewise
}


def _no_texture(cfg: PipelineConfig) -> PipelineConfig:
    return replace(cfg, texture=None)


def _generated_reference(cfg: PipelineConfig) -> PipelineConfig:
    return replace(cfg, texture=replace(cfg.texture, video_supervision=False))


# methods that are the whole pipeline, run and written as `v2m4 run` runs and writes it (``_bench_pipeline``);
# `register` too, so that it and `full` differ by the texture stage alone (same frames, meshes, seeds and cameras)
PIPELINE_METHODS = {"register": _no_texture, "full": lambda cfg: cfg, "full_genref": _generated_reference,
                    "register_seq": lambda cfg: _no_texture(cfg.with_pairwise_registration()),
                    "full_seq": lambda cfg: cfg.with_pairwise_registration()}

# column order of the table; methods may add extras after these
COLUMNS = ["mask_iou", "psnr", "ssim", "chamfer_once", "fscore1_once", "fscore2_once", "chamfer_per_frame",
           "fscore2_per_frame", "fscore2_once_first", "fscore2_once_last", "topology_constant", "jitter",
           "jitter_gt", "sec_per_frame", "gen_sec_per_frame"]


@dataclass(frozen=True)
class BenchSettings:
    method: str = "naive"
    items: tuple[str, ...] = ()          # empty: every rendered item (p*)
    resolution: int = 256                # frames are resized to this (square) resolution
    max_frames: int | None = None        # keep at most this many frames, evenly spread over the clip
    device: str = "cpu"
    backend: str = "torch"
    preset: str = "fast"                 # the stages' preset: "fast" (CPU) or "paper" (``PipelineConfig.preset``)
    overrides: dict | None = None        # config overrides on the preset (``PipelineConfig.with_overrides``)
    generated_faces: int | None = None   # the synthetic generator's mesh density (None: its default)
    colourless: bool = False             # the synthetic generator's meshes without colour (a shape-only generator)
    generator_noise: float | None = None # the synthetic generator's shape noise amplitude (None: its default)
    seed: int = 0
    n_points: int = 5000                 # surface samples per mesh for Chamfer / F-score
    novel_views: int = 8                 # views around the object per frame for the nv_* columns (0: none)
    rig_bones: int = 0                   # pipeline methods: also fit a rig of this many bones (-1: the default, as
                                         # many as the fit needs) to the animation and
                                         # score it against the morph animation (rig_* columns; 0: none)
    actionbench_points: int = 0          # alignment points of the cd_3d / cd_4d / cd_m columns (0: none; the
                                         # protocol's 10,000 is hours on a CPU; 500 costs ~40 s an item there)
    bench_dir: str | None = None

    @staticmethod
    def quick(**kw) -> "BenchSettings":
        """Few frames at 128²: for tests and a first look."""
        return BenchSettings(**{"resolution": 128, "max_frames": 6, **kw})


def pipeline_config(settings: BenchSettings) -> PipelineConfig:
    """The pipeline's config for these settings: the preset and its overrides, every selected frame a keyframe."""
    from ..stages.keyframes import KeyframeConfig

    cfg = PipelineConfig.preset(settings.preset, device=settings.device, backend=settings.backend,
                                seed=settings.seed, resolution=settings.resolution)
    cfg = cfg.with_overrides(settings.overrides or {})
    keys = KeyframeConfig(budget=settings.max_frames) if settings.max_frames else KeyframeConfig(stride=1)
    return replace(cfg, keyframes=keys, output=replace(cfg.output, preview=False))


def load_method(name: str):
    if name not in METHODS:
        raise V2M4Error(f"unknown bench method {name!r}; choose from {', '.join(METHODS)}")
    try:
        module, _, func = METHODS[name].partition(":")
        return getattr(importlib.import_module(module), func or "run")
    except ModuleNotFoundError as exc:
        raise V2M4Error(f"bench method {name!r} is not available in this build ({exc.name} is missing)") from None


def _frame_selection(n: int, max_frames: int | None) -> list[int]:
    from ..stages.keyframes import budget_keyframes
    return budget_keyframes(n, max_frames or n).tolist()


def _render_outputs(ctx, meshes: list[Mesh], camera, light=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Renders (T, H, W, 3) and masks (T, H, W) of each output mesh through the method's camera; under the
    video's light (``stages.lighting.relight``) where the method took one out of its texture."""
    from ..stages.lighting import render_lit

    rgb, mask = [], []
    with torch.no_grad():
        for m in meshes:  # one mesh per frame, topology may differ: one call per frame
            out = render_lit(ctx, m, camera, light)
            rgb.append(out["rgb"][0])
            mask.append(out["mask"][0])
    return torch.stack(rgb), torch.stack(mask)


def _true_pose_iou(item, generator, generated: list[Mesh]) -> float:
    """Median input-view mask IoU of the generated meshes put back where the generator took them from."""
    from ..metrics import image as I

    out = true_pose_output(item, generator, [m.to(torch.device("cpu")) for m in generated])
    _, mask = _render_outputs(R.context("torch", torch.device("cpu")), out.meshes, out.camera)
    return statistics.median(I.mask_iou(mask, item.frames.rgba[..., 3]).tolist())


def score_item(item, sel, frames, out, *, n_points: int, seed: int, novel_views: int = 0,
               actionbench_points: int = 0, per_frame: bool = True) -> dict[str, float]:
    """The weight-free metrics of one method output (one mesh per frame) against the ground truth of the item's
    frames ``sel`` (see module docstring); with ``novel_views`` > 0 the novel-view columns too, with
    ``actionbench_points`` > 0 ActionBench's cd_3d / cd_4d / cd_m at that many alignment points."""
    from ..metrics import geometry as G
    from ..metrics import image as I

    gt_vertices, gt_faces = item.gt_vertices[sel], item.faces
    ctx = R.context("torch", out.meshes[0].vertices.device)
    rgb, mask = _render_outputs(ctx, out.meshes, out.camera, out.light)
    ref = frames.rgba.to(rgb.device)
    res: dict[str, float] = {}
    res["mask_iou"] = statistics.median(I.mask_iou(mask, ref[..., 3]).tolist())
    res["psnr"] = statistics.median(I.masked_psnr(rgb, ref[..., :3], ref[..., 3]).tolist())
    union = torch.maximum(mask, ref[..., 3])
    res["ssim"] = statistics.median(I.ssim(rgb * mask[..., None], ref[..., :3] * ref[..., 3:], union).tolist())
    from ..metrics.learned import learned_metrics
    res.update(learned_metrics(rgb, mask, ref, device=rgb.device)[0])  # "n/a: ..." where a model is missing
    pred_v = [m.vertices.detach().cpu() for m in out.meshes]
    pred_f = [m.faces.cpu() for m in out.meshes]
    geo, once = G.sequence_geometry(pred_v, pred_f, gt_vertices.cpu(), gt_faces.cpu(), n_points=n_points, seed=seed,
                                    per_frame=per_frame)
    res.update(geo)
    if novel_views > 0:
        res.update(_novel_view(item, gt_vertices, out.meshes, once, novel_views, frames.rgba.shape[1:3]))
    if actionbench_points > 0:
        from ..metrics.actionbench import actionbench_scores
        res.update(actionbench_scores(pred_v, pred_f, gt_vertices.cpu(), gt_faces.cpu(),
                                      align_points=actionbench_points, pred_points=20 * actionbench_points,
                                      gt_points=20 * actionbench_points, chamfer_queries=10 * actionbench_points))
    return res


def _novel_view(item, gt_vertices, meshes: list[Mesh], once: torch.Tensor, views: int, resolution) -> dict:
    """nv_mask_iou, nv_psnr, nv_ssim: the output once-aligned onto the ground truth (as the geometry columns), both
    seen from ``views`` cameras around the ground truth at every frame (``metrics.novel_view``)."""
    from ..data.bench import render_ground_truth
    from ..metrics.geometry import apply
    from ..metrics.novel_view import framing, novel_view_scores

    ctx = R.context("torch", torch.device("cpu"))
    gt = gt_vertices.cpu().float()

    def ours(t, cams):
        m = meshes[t].to(torch.device("cpu"))
        with torch.no_grad():
            o = R.render(ctx, m, cams, channels=("rgb", "mask"), vertices=apply(once, m.vertices.float()))
        return o["rgb"], o["mask"]

    def truth(t, cams):
        with torch.no_grad():
            return render_ground_truth(item, gt[t], cams, ctx)

    centres, radius = framing(gt)
    return novel_view_scores(ours, truth, centres, radius, views=views, resolution=tuple(resolution))


def score_run(item, frames, result, generator, *, n_points: int = 5000, seed: int = 0, novel_views: int = 0,
              actionbench_points: int = 0) -> dict[str, float]:
    """The bench's columns for a whole-pipeline run (``v2m4.pipeline.RunResult``) on a bench item whose frames
    (all of them, at the run's resolution) are ``frames``. The standard columns score the keyframes, the frames
    every other method is scored on; ``*_all`` columns score every frame, interpolated ones included."""
    from ..metrics.pose import pose_errors
    from .methods import MethodOutput
    from .exports import export_checks

    anim = result.animation
    key = result.keyframes.tolist()  # the generated keyframes (a whole-clip fit gives every frame positions)
    kt = torch.tensor(key)
    light = None if result.texture is None else result.texture.light
    out = MethodOutput(meshes=[anim.frame(t) for t in key], camera=result.video_camera, light=light)
    scores = score_item(item, kt, frames.select(kt), out, n_points=n_points, seed=seed, novel_views=novel_views,
                        actionbench_points=actionbench_points)
    if len(key) < len(anim):
        everyone = MethodOutput(meshes=[anim.frame(t) for t in range(len(anim))], camera=result.video_camera,
                                light=light)
        s_all = score_item(item, slice(None), frames, everyone, n_points=n_points, seed=seed, per_frame=False)
        scores.update({f"{k}_all": s_all[k] for k in ("mask_iou", "psnr", "ssim", "fscore2_once", "jitter")})
    if result.world_from_canonical is not None:
        removed = torch.stack([generator.removed_transform(t) for t in key])
        scores.update(pose_errors(result.world_from_canonical.cpu(), removed.cpu(), item.gt_vertices[kt].cpu()))
    scores.update(result.report["stage_figures"])
    try:
        scores.update(export_checks(anim.mesh, [anim.vertices[t] for t in key], frames.select(kt)))
    except (ImportError, V2M4Error) as exc:  # the reconstruction's figures stand without the export's
        import warnings
        warnings.warn(f"export checks skipped: {exc}")
    return {k: (round(float(v), 6) if isinstance(v, (int, float)) and math.isfinite(float(v)) else v)
            for k, v in scores.items()}


def run_item(item_id: str, settings: BenchSettings, run_dir: Path, *, resume: bool = False):
    """A whole-pipeline method (``settings.method``) on the item's frames with the synthetic generator, its run
    kept in ``run_dir`` (resumed from its checkpoints with ``resume``): (frames, generator, config, RunResult)."""
    from ..data.bench import item_dir, load_item
    from ..io.frames import read_frames
    from ..pipeline import reconstruct

    path = item_dir(item_id, settings.bench_dir)
    fps = float(json.loads((path / "meta.json").read_text())["fps"])
    # overrides of a stage the preset has off (joint) go on after the method's own switches, which turn it on;
    # the others before, so a stage the method turns off (the texture of `register`) may carry them
    over = settings.overrides or {}
    base = pipeline_config(replace(settings, overrides=None))
    late = {k: v for k, v in over.items() if isinstance(v, dict) and getattr(base, k, 0) is None}
    early = {k: v for k, v in over.items() if k not in late}
    cfg = PIPELINE_METHODS[settings.method](pipeline_config(replace(settings, overrides=early or None)))
    cfg = cfg.with_overrides(late)
    frames = read_frames(path / "frames", fps=fps, max_size=cfg.resolution)
    gen = synthetic_generator(load_item(path), settings)
    return frames, gen, cfg, reconstruct(frames, gen, cfg, run_dir=run_dir, resume=resume, log="quiet")


def _bench_pipeline(item_id: str, settings: BenchSettings, keep_runs: Path | None = None) -> dict[str, float]:
    """A whole-pipeline method on the item's frames with the synthetic generator, written as `v2m4 run` writes
    (so the export is timed too), then scored (``score_run``). keep_runs: a folder where each item's run folder is
    kept (``keep_runs/<item>``) and resumed from when it exists, so that a later stage can be re-run alone after its
    checkpoint is removed (its stage seconds then count only what ran)."""
    import contextlib
    import tempfile

    from ..pipeline import write_outputs

    where = contextlib.nullcontext(keep_runs / item_id) if keep_runs else tempfile.TemporaryDirectory()
    with where as tmp:
        run_dir = Path(tmp) / "run"
        frames, gen, cfg, result = run_item(item_id, settings, run_dir,
                                            resume=keep_runs is not None and run_dir.exists())
        row = score_run(gen.item, frames, result, gen, n_points=settings.n_points, seed=settings.seed,
                        novel_views=settings.novel_views, actionbench_points=settings.actionbench_points)
        report = write_outputs(result, frames, run_dir, cfg, log="quiet")
    if settings.rig_bones:
        row.update(_rig_columns(result.animation, settings.rig_bones))
    k = len(report["keyframes"])
    row["generated_faces"] = statistics.mean(report["generated_faces"])
    sec = report["seconds"]
    # the method's stages: not the generator, nor the files and the report's figures (the bench scores separately)
    row["sec_per_frame"] = round(sum(v for s, v in sec.items() if s not in ("generate", "export", "report")) / k, 6)
    row["gen_sec_per_frame"] = round(sec["generate"] / k, 6)
    for s_, v in sec.items():
        if s_ not in ("generate", "keyframes", "report"):
            row[f"sec_{s_}_per_frame"] = round(v / k, 6)
    return row


def _rig_columns(animation, bones: int) -> dict[str, float]:
    """``v2m4 run --rig BONES`` on the output's animation (``export.rig.write_rig``): the rig against the morph
    animation (rig_rms_err, rig_max_err: fractions of its bounding-box diagonal), fit seconds, GLB bytes and the
    validator's errors and warnings where it is installed."""
    import tempfile

    from ..export.rig import write_rig

    with tempfile.TemporaryDirectory() as tmp:
        r = write_rig(Path(tmp) / "rigged.glb", animation, bones)
    row = {"rig_bones": r["bones"], "rig_rms_err": r["rms_err"], "rig_max_err": r["max_err"],
           "sec_rig": r["seconds"], "rig_glb_bytes": r["bytes"]}
    if "validator" in r:
        row.update(rig_validator_errors=r["validator"]["errors"], rig_validator_warnings=r["validator"]["warnings"])
    return row


def synthetic_generator(item, settings: BenchSettings):
    """The synthetic generator over an item's ground truth, at the settings' seed, mesh density and noise."""
    from ..generators.synthetic import SyntheticConfig, SyntheticGenerator

    kw = {} if settings.generated_faces is None else {"target_faces": settings.generated_faces}
    if settings.generator_noise is not None:
        kw["noise_amplitude"] = settings.generator_noise
    return SyntheticGenerator(item, seed=settings.seed, config=SyntheticConfig(**kw, colours=not settings.colourless))


def load_selected_item(item_id: str, max_frames: int | None, resolution: int, bench_dir=None):
    """A bench item with at most ``max_frames`` frames evenly spread over its clip, at resolution² pixels."""
    from ..data.bench import load_item

    probe = load_item(item_id, bench_dir=bench_dir)
    sel = _frame_selection(len(probe.frames), max_frames)
    return load_item(item_id, frames=sel, resolution=(resolution, resolution), bench_dir=bench_dir)


def true_pose_output(item, generator, generated: list[Mesh]):
    """The ``true_pose`` row's output: each generated mesh moved by the inverse of the similarity the synthetic
    generator removed (into the ground truth's world), seen through the true camera. No re-posing method can do
    better on the geometry columns, since the meshes are the generator's."""
    from .methods import MethodOutput
    from ..metrics.geometry import apply

    world_from_canonical = torch.stack([torch.linalg.inv(generator.removed_transform(t).double())
                                        for t in range(len(generated))])
    meshes = [m.with_vertices(apply(M.to(m.vertices), m.vertices)) for m, M in zip(generated, world_from_canonical)]
    return MethodOutput(meshes=meshes, camera=item.camera.to(generated[0].vertices.device),
                        world_from_canonical=world_from_canonical.float())


def bench_item(item_id: str, settings: BenchSettings, keep_runs: Path | None = None) -> dict[str, float]:
    if settings.method in PIPELINE_METHODS:
        return _bench_pipeline(item_id, settings, keep_runs)
    item = load_selected_item(item_id, settings.max_frames, settings.resolution, settings.bench_dir)
    device = torch.device(settings.device)
    gen = synthetic_generator(item, settings)
    t0 = time.perf_counter()
    generated = [gen.generate(item.frames.rgba[t], t).to(device) for t in range(len(item.frames))]
    t_gen = time.perf_counter() - t0
    run = load_method(settings.method)
    ctx = R.context(settings.backend, device)
    g = torch.Generator().manual_seed(settings.seed)
    t0 = time.perf_counter()
    if settings.method == "true_pose":
        out = run(item, gen, generated)
    else:
        out = run(item.frames, generated, config=pipeline_config(settings), ctx=ctx, generator=g)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t_method = time.perf_counter() - t0
    scores = score_item(item, slice(None), item.frames, out, n_points=settings.n_points, seed=settings.seed,
                        novel_views=settings.novel_views, actionbench_points=settings.actionbench_points)
    if out.world_from_canonical is not None:
        from ..metrics.pose import pose_errors

        removed = torch.stack([gen.removed_transform(t) for t in range(len(item.frames))])
        scores.update(pose_errors(out.world_from_canonical.cpu(), removed.cpu(), item.gt_vertices.cpu()))
        scores["mask_iou_true_pose"] = _true_pose_iou(item, gen, generated)
    scores.update(out.extras)
    T = len(item.frames)
    scores["sec_per_frame"] = t_method / T
    scores["gen_sec_per_frame"] = t_gen / T
    for k, v in out.stage_seconds.items():
        scores[f"sec_{k}_per_frame"] = v / T
    return {k: (round(float(v), 6) if isinstance(v, (int, float)) and math.isfinite(float(v)) else v)
            for k, v in scores.items()}


def machine_description(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"{platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def git_commit() -> str:
    """Short hash of this checkout's HEAD, with "+local changes" when tracked files differ from it; without git (the
    device machine's copy of the tree has none), $V2M4_COMMIT as the caller states it, else ""."""
    here = Path(__file__).resolve().parent

    def git(*args):
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, cwd=here).stdout.strip()
        except OSError:
            return ""
    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return os.environ.get("V2M4_COMMIT", "")
    return commit + ("+local changes" if commit and git("status", "--porcelain", "--untracked-files=no") else "")


def run_bench(settings: BenchSettings, *, progress=None, keep_runs: str | os.PathLike | None = None) -> dict:
    """Every selected item through the method, scored. keep_runs: pipeline methods keep (and resume) each item's
    run folder there (``_bench_pipeline``); the table's head names it."""
    from ..data.bench import list_items

    load_method(settings.method)  # fail before any work on an unknown or unavailable method
    commit = git_commit()
    items = list(settings.items) or [i for i in list_items(bench_dir=settings.bench_dir) if i.startswith("p")]
    if not items:
        raise V2M4Error("no bench items found; set V2M4_BENCH_DIR or pass --bench-dir")
    results: dict[str, dict] = {}
    head = {"method": settings.method, "date": datetime.date.today().isoformat(),
            "machine": machine_description(settings.device), "device": settings.device, "commit": commit,
            "settings": asdict(settings)}
    keep = None if keep_runs is None else Path(keep_runs)
    if keep is not None:
        head["runs_kept_in"] = str(keep)
    for item_id in items:
        try:
            results[item_id] = bench_item(item_id, settings, keep)
        except V2M4Error:
            raise
        except Exception as exc:  # a failed item records its error, never a silent NaN (style.md Sec. 10)
            results[item_id] = {"error": f"{type(exc).__name__}: {exc}"}
        if progress:
            progress(item_id, results[item_id], {**head, "items": dict(results)})
    return {**head, "items": results}


def format_table(result: dict) -> str:
    items = result["items"]
    extra = sorted({k for r in items.values() for k in r if k not in COLUMNS and k != "error"})
    cols = [c for c in COLUMNS if any(c in r for r in items.values())] + extra
    lines = [f"| item | {' | '.join(cols)} |", "|---|" + "---|" * len(cols)]
    for item_id, r in items.items():
        if "error" in r:
            lines.append(f"| {item_id} | error: {r['error']} |")
            continue
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append("" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v)))
        lines.append(f"| {item_id} | {' | '.join(cells)} |")
    head = (f"**{result['method']}** on {result['machine']} ({result['device']}), {result['date']}, commit "
            f"{result.get('commit', '')}; settings: {json.dumps(result['settings'])}\n\n")
    return head + "\n".join(lines) + "\n"


def write_results(result: dict, out_dir: str | Path, name: str | None = None) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = name or result["method"]
    js, md = out_dir / f"{name}.json", out_dir / f"{name}.md"
    js.write_text(json.dumps(result, indent=1) + "\n")
    md.write_text(format_table(result))
    return js, md
