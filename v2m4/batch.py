"""Many clips: one output folder per clip, as ``v2m4 run`` writes it, a summary table, and an overall progress bar.

Each clip runs the one-clip path of ``v2m4 run`` (``clip.run_pipeline``) with ``resume`` on, so a clip that an
earlier batch left unfinished continues from its checkpoints, and a clip whose outputs are complete is skipped. A
clip that fails is tried again (``BatchOptions.retries`` times, from its checkpoints) and then reported with its
error; it never stops the others. Locally the clips run one after another in this process, and Ray is not
imported; with a Ray address, ``v2m4.cluster`` spreads them (and each clip's keyframe generation) over a cluster.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .checkpoint import jsonable, write_json
from .clip import (FINAL_OUTPUTS, BatchOptions, Clip, ClipResult, describe, figures_of,  # noqa: F401 (the API's
                   record_failure, run_clip)                                             # names, from here too)
from .errors import V2M4Error
from .progress import Log

STAMP = "batch.json"        # in each clip's folder: what the clip is made from, so that a changed config is noticed
SUMMARY = "summary.json"    # in the batch's output folder


@dataclass(frozen=True)
class BatchSummary:
    """Every clip's result, in input order; executor: "local" or "ray"; seconds: the batch's wall time;
    startup_seconds: of it, the executor's start (connecting to or starting Ray)."""

    clips: tuple[ClipResult, ...]
    executor: str
    seconds: float
    startup_seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(c.status == status for c in self.clips)

    def to_json(self) -> dict:
        return {"executor": self.executor, "seconds": round(self.seconds, 2),
                "startup_seconds": round(self.startup_seconds, 2),
                **{s: self.count(s) for s in ("done", "skipped", "failed")},
                "clips": [asdict(c) for c in self.clips]}

    def table(self) -> str:
        """The summary as a Markdown table, a row per clip."""
        rows = ["| clip | status | attempts | frames | keyframes | mask IoU | PSNR | seconds | error |",
                "|---|---|---|---|---|---|---|---|---|"]
        for c in self.clips:
            f = c.figures
            iou = f"{f['mask_iou']:.3f}" if f.get("mask_iou") is not None else ""
            psnr = f"{f['psnr']:.1f}" if f.get("psnr") is not None else ""
            rows.append(f"| {c.name} | {c.status} | {c.attempts} | {f.get('frames', '')} | {f.get('keyframes', '')} "
                        f"| {iou} | {psnr} | {c.seconds:.1f} | {(c.error or '').replace('|', '/')} |")
        rows.append(f"\n{self.count('done')} done, {self.count('skipped')} skipped, {self.count('failed')} failed "
                    f"in {self.seconds:.0f} s ({self.executor})")
        return "\n".join(rows)


def plan_clips(inputs: list[str], generator: str) -> list[Clip]:
    """A clip per input, named after it (a folder named ``frames`` takes its parent's name, as in a bench item);
    ``{name}``, ``{input}`` and ``{parent}`` in ``generator`` stand for the clip's name, input and the input's
    folder. Two inputs of one name are refused: they would share an output folder."""
    clips, seen = [], {}
    for raw in inputs:
        p = Path(raw)
        name = p.stem if p.is_file() else (p.resolve().parent.name if p.name == "frames" else p.name)
        if not name:
            raise V2M4Error(f"cannot name an output folder after input {raw!r}")
        if name in seen:
            raise V2M4Error(f"inputs {seen[name]} and {raw} would both write OUT/{name}: rename one of them")
        seen[name] = raw
        spec = (generator.replace("{name}", name).replace("{input}", str(p))
                .replace("{parent}", str(p.resolve().parent)))
        clips.append(Clip(str(p), name, spec))
    if not clips:
        raise V2M4Error("v2m4 batch needs at least one input")
    return clips


def stamp(clip: Clip, cfg, options: BatchOptions) -> dict:
    """What a clip's outputs and checkpoints are made from: a clip folder made from anything else is not resumed."""
    return jsonable({"input": str(Path(clip.input).resolve()), "generator": clip.generator,
                     "inputs": asdict(options.inputs), "config": asdict(cfg)})


def is_complete(out_dir: Path, cfg) -> bool:
    """Whether a run's outputs are all there: report.json is written last, after the GLB, preview and rig."""
    need = ["report.json", "animation.glb", "checkpoints/animation.npz"]
    need += ["preview.mp4"] if cfg.output.preview else []
    need += ["animation_rigged.glb"] if cfg.output.rig_bones else []
    return all((out_dir / n).exists() for n in need)


def prepare_clip(clip: Clip, out: Path, cfg, options: BatchOptions) -> ClipResult | None:
    """Before a clip runs: a ``skipped`` result when its outputs are complete; otherwise its folder ready to run in
    (emptied with ``force``, stamped) and None. A folder made from another input, generator or config is refused
    rather than resumed: its checkpoints would mix two runs."""
    import json
    import shutil

    d = out / clip.name
    want = stamp(clip, cfg, options)
    if options.force and d.exists():
        for name in ("checkpoints", STAMP, "error.txt") + FINAL_OUTPUTS:
            p = d / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    if (d / STAMP).is_file():
        if json.loads((d / STAMP).read_text()) != want:
            raise V2M4Error(f"{d} was made from another input, generator or config: remove it or add --force")
        if is_complete(d, cfg):
            return ClipResult(clip.name, clip.input, str(d), "skipped", figures=figures_of(d))
    elif d.exists() and any(d.iterdir()):
        raise V2M4Error(f"{d} is not empty and holds no batch run: remove it, or add --force to overwrite it")
    d.mkdir(parents=True, exist_ok=True)
    write_json(d / STAMP, want, indent=1)
    return None


def run_batch(clips: list[Clip], out, cfg, options: BatchOptions = BatchOptions(), *, ray_address: str | None = None,
              log: str = "bars") -> BatchSummary:
    """Every clip into ``out/NAME``, ``out/summary.json`` rewritten as each clip ends; the summary. ``cfg``: the
    ``PipelineConfig`` of every clip. ``ray_address``: None runs here, one clip after another; an address (or
    "local") runs on Ray (``v2m4.cluster``), which must then be installed."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise V2M4Error(f"output {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    progress = Log(log)
    results: dict[str, ClipResult] = {}
    todo: list[Clip] = []
    for clip in clips:
        try:
            done = prepare_clip(clip, out, cfg, options)
        except V2M4Error as exc:
            done = ClipResult(clip.name, clip.input, str(out / clip.name), "failed", error=str(exc))
        if done is None:
            todo.append(clip)
        else:
            results[clip.name] = done

    def summary(executor: str, startup: float) -> BatchSummary:
        return BatchSummary(tuple(results[c.name] for c in clips if c.name in results), executor,
                            time.perf_counter() - t0, startup)

    executor = "local" if ray_address is None else "ray"
    startup = [0.0]  # seconds to connect to Ray, once known
    with progress.bar(len(clips), "batch", unit="clip") as bar:
        bar.update(len(results))

        def finished(r: ClipResult) -> None:  # called from one thread at a time
            results[r.name] = r
            write_json(out / SUMMARY, summary(executor, startup[0]).to_json(), indent=1)
            progress.event(stage="batch", clip=r.name, status=r.status, attempts=r.attempts, error=r.error,
                           message=f"{r.name}: {r.status}" + (f" ({r.error})" if r.error else ""))
            bar.update(1)

        if ray_address is None:
            for clip in todo:
                finished(_run_locally(clip, out, cfg, options))
        elif todo:
            from .cluster import run_on_ray
            run_on_ray(todo, out, cfg, options, ray_address, finished, lambda s: startup.__setitem__(0, s))
    result = summary(executor, startup[0])
    write_json(out / SUMMARY, result.to_json(), indent=1)
    return result


def _run_locally(clip: Clip, out: Path, cfg, options: BatchOptions) -> ClipResult:
    t0 = time.perf_counter()
    error = None
    for attempt in range(1, options.retries + 2):
        try:
            figures = run_clip(clip, out, cfg, options)
            return ClipResult(clip.name, clip.input, str(out / clip.name), "done", attempt,
                              time.perf_counter() - t0, figures=figures)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 -- one clip's failure, whatever it is, must not stop the others
            error = describe(exc)
            record_failure(out / clip.name, exc)
    return ClipResult(clip.name, clip.input, str(out / clip.name), "failed", attempt, time.perf_counter() - t0,
                      error=error)
