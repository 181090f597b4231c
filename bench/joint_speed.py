"""Whole-clip registration of the bundled demo, timed and profiled: seconds of each of its parts, wall time per step
of the joint fit, and the share of that time the GPU is busy (the profiler's kernel intervals, merged, over the
fit's wall window). Claim measured: registration of the 24-frame demo, and the
whole post-generation pipeline per input frame, on the device at the paper preset.

    python bench/joint_speed.py                                  # CPU, fast preset (no GPU-busy column)
    python bench/joint_speed.py --device cuda --backend nvdiffrast

The demo runs once end to end (the timed run: the pipeline's own stage seconds; the post-generation total is camera,
appearance, registration, texture and export, without the report's evaluation figures, listed apart); the arguments
registration was called with are kept; registration is then run again up to its joint fit, and the fit alone runs
``--profile-steps`` steps under the profiler, after as many unprofiled (the profiler's own overhead makes that run's
wall time longer: its busy share is a lower bound). Rows go to bench/results/registration_speed.json beside the
pairwise rows (rows of the same device, preset and method are replaced).
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import v2m4.pipeline as P  # noqa: E402
from v2m4.bench import git_commit, machine_description  # noqa: E402
from v2m4.config import PipelineConfig  # noqa: E402
from v2m4.generators import make_generator  # noqa: E402
from v2m4.io.frames import read_frames  # noqa: E402
from v2m4.stages.registration import joint as J  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def merged_busy(intervals: list[tuple[float, float]], lo: float, hi: float) -> float:
    """Length of the union of intervals clipped to [lo, hi]."""
    busy, end = 0.0, lo
    for a, b in sorted(intervals):
        a, b = max(a, end), min(b, hi)
        if b > a:
            busy += b - a
            end = b
    return busy


_STATIC = None  # the fit's own default (static on CUDA with JointConfig.cuda_graphs); --dynamic: False

_SYNCS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy")


def _fit_args(args: tuple, kw: dict, cfg: J.JointConfig) -> dict:
    """The arguments ``register_clip`` hands its joint fit (``_fit_clip``), by parameter name: registration is run
    up to the fit (rest, targets, global alignment) and stopped there."""
    captured = {}
    real_fit = J._fit_clip
    signature = inspect.signature(real_fit)

    def grab(*a, **k):
        bound = signature.bind(*a, **k)
        captured.update(bound.arguments)
        return bound.arguments["x0"].detach()

    kw = dict(kw, generator=torch.Generator().manual_seed(0), progress=None, state=None)
    J._fit_clip = grab
    try:
        J.register_clip(*args[:4], cfg, *args[5:], **kw)
    finally:
        J._fit_clip = real_fit
    return captured


def _clip_fit(a: dict) -> "J._ClipFit":
    """The fit's problem (``_ClipFit``) built from ``_fit_args``, its step's path as ``_STATIC`` says."""
    names = [n for n in inspect.signature(J._ClipFit).parameters if n != "static"]
    return J._ClipFit(**{n: a[n] for n in names}, static=_STATIC)


def profile(args: tuple, kw: dict, cfg: J.JointConfig, steps: int, device: torch.device) -> dict:
    """The joint fit alone, ``steps`` steps (the video's term on from half-way, as in the schedule), under
    torch.profiler; its window is a record_function around the fit."""
    a = _fit_args(args, kw, cfg)
    short = replace(cfg, iters=steps)
    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda"
                                                     else [])
    fit_args = dict(a, cfg=short, progress=None, state=None)
    J._fit_clip(**fit_args)  # warm-up outside the profile (allocator, kernels' first launch)
    with torch.profiler.profile(activities=acts) as prof:
        with torch.profiler.record_function("joint_fit"):
            J._fit_clip(**fit_args)
            if device.type == "cuda":
                torch.cuda.synchronize()
    events = prof.events()
    win = [e for e in events if e.name == "joint_fit"]
    lo, hi = win[0].time_range.start, win[0].time_range.end
    # the record_function's own range is on the GPU's timeline too, spanning the window: it is not a kernel
    kernels = [(e.time_range.start, e.time_range.end) for e in events
               if e.device_type == torch.autograd.DeviceType.CUDA and e.name != "joint_fit"]
    busy = merged_busy(kernels, lo, hi)
    # host waits on the device (each one drains the GPU's queue: the host cannot run ahead of it)
    waits = [e for e in events if e.name in _SYNCS and lo <= e.time_range.start <= hi]
    # where the time goes over the profiled fit steps:
    # operators by their own host time, kernels by GPU time (milliseconds)
    avg = prof.key_averages()
    host = sorted(avg, key=lambda e: e.self_cpu_time_total, reverse=True)[:12]
    top = {"host_ms": {e.key: round(e.self_cpu_time_total / 1000, 1) for e in host}}
    if device.type == "cuda":
        dev_t = sorted(avg, key=lambda e: getattr(e, "self_device_time_total", 0), reverse=True)[:12]
        top["gpu_ms"] = {e.key: round(e.self_device_time_total / 1000, 1) for e in dev_t}
    return {"top": top, "profiled_steps": steps, "profiled_wall_ms_per_step": round((hi - lo) / 1000 / steps, 2),
            "gpu_ms_per_step": round(busy / 1000 / steps, 2),
            "gpu_busy_fraction": round(busy / (hi - lo), 3) if device.type == "cuda" else None,
            "kernels_per_step": round(sum(1 for a, b in kernels if lo <= a <= hi) / steps, 1),
            "host_waits_per_step": round(len(waits) / steps, 1),
            "host_wait_ms_per_step": round(sum(e.time_range.end - e.time_range.start for e in waits) / 1000 / steps, 2)}


def step_parts(args: tuple, kw: dict, cfg: J.JointConfig, steps: int, device: torch.device) -> dict:
    """Where a joint step's time goes: registration again up to the fit, whose problem (``_ClipFit``) is then
    stepped ``steps`` times at the end of its schedule (every term on), each part timed alone, the device
    synchronised around it: the solve u -> x, the ARAP rotations, each loss term's forward and its backward (a
    gradient of u alone), the optimiser step. Milliseconds per step, medians; "step" is a whole step timed with
    one synchronisation, as the fit runs it."""
    from v2m4.optim import UniformAdam

    fit = _clip_fit(_fit_args(args, kw, cfg))
    opt = UniformAdam([fit.u], lr=cfg.lr, per_row=True)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def timed(f):
        sync()
        t0 = time.perf_counter()
        out = f()
        sync()
        return out, 1000 * (time.perf_counter() - t0)

    times: dict[str, list[float]] = {}
    its = list(range(cfg.iters - steps, cfg.iters))
    for it in its:
        x, ms = timed(fit.x)
        times.setdefault("solve", []).append(ms)
        fit.shape.turned = None
        _, ms = timed(fit.refresh)
        times.setdefault("arap_rotations", []).append(ms)
        _, ms = timed(lambda: fit.prepare(it))
        times.setdefault("prepare", []).append(ms)
        for name in fit.active(it):
            x = fit.x()
            term, ms = timed(lambda: fit.terms(it, x, only=(name,))[name])
            times.setdefault(f"{name}_forward", []).append(ms)
            _, ms = timed(lambda: torch.autograd.grad(term, fit.u))
            times.setdefault(f"{name}_backward", []).append(ms)
        _, ms = timed(lambda: fit.terms(it, x))
        times.setdefault("forward_all", []).append(ms)
        fit.u.grad = torch.zeros_like(fit.u)
        _, ms = timed(opt.step)
        times.setdefault("optimiser", []).append(ms)
    for it in its:  # whole steps, one synchronisation each
        _, ms = timed(lambda: fit.step(it, opt))
        times.setdefault("step", []).append(ms)
    med = {k: round(float(torch.tensor(v).median()), 2) for k, v in times.items()}
    return {"parts_ms": med, "parts_steps": steps,
            "parts_note": "forward_all: every term's forward at once; the ARAP rotations are re-solved every "
                          "arap_refresh steps, the other parts run every step"}


def host_parts(args: tuple, kw: dict, cfg: J.JointConfig, steps: int, device: torch.device) -> dict:
    """Where a step's wall time goes on the host: the fit (``_ClipFit``, its default path) stepped at the end of its
    schedule (every term on), ``steps`` steps after as many unmeasured ones (graphs captured), each part of
    ``_ClipFit.step`` timed on the host's clock with no synchronisation added, so a part that waits on the device
    counts its wait: the solve for the pre-step positions, the ARAP rotations, the step's draws and visibility
    (within it each rasteriser pass and each silhouette count; the rest is the draws' copies and the one read of
    the sizes, which waits for the device to finish what was queued), and the replay (or op-by-op step). Milliseconds
    per step, means; "step" is the wall time of the measured steps run back to back, over their number."""
    from collections import defaultdict

    from v2m4 import _graphs as G
    from v2m4.optim import UniformAdam

    fit = _clip_fit(_fit_args(args, kw, cfg))
    opt = UniformAdam([fit.u], lr=cfg.lr, per_row=True)
    spent: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    replaying = [False]  # what an op-by-op step calls inside its body is the replay's time, not a part's

    def timed(name, f):
        def run(*a, **k):
            if replaying[0]:
                return f(*a, **k)
            t0 = time.perf_counter()
            replaying[0] = name in ("replay", "arap")
            try:
                out = f(*a, **k)
            finally:
                replaying[0] = False
            spent[name] += time.perf_counter() - t0
            calls[name] += 1
            return out
        return run

    class Replay:  # a step's graphs, timed (fit.step calls fit.graphs(key, body) and fit.turns(key, body))
        def __init__(self, graphs, name):
            self.inner, self.name = graphs, name

        def __call__(self, key, body):
            return timed(self.name, self.inner)(key, body)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    its = list(range(cfg.iters - 2 * steps, cfg.iters))
    for it in its[:steps]:
        fit.step(it, opt)
    if device.type == "cuda":
        torch.cuda.synchronize()
    graphs_before = len(fit.graphs.graphs)
    real = {n: getattr(G.R, n) for n in ("visible_faces", "silhouette_crossings")}
    fit.x, fit.prepare = timed("solve", fit.x), timed("prepare", fit.prepare)
    fit.graphs, fit.turns = Replay(fit.graphs, "replay"), Replay(fit.turns, "arap")
    for n, f in real.items():
        setattr(G.R, n, timed(n, f))
    try:
        t0 = time.perf_counter()
        for it in its[steps:]:
            fit.step(it, opt)
        host = time.perf_counter() - t0
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    finally:
        for n, f in real.items():
            setattr(G.R, n, f)
    ms = {k: round(1000 * v / steps, 3) for k, v in spent.items()}
    ms["prepare_rest"] = round(ms.get("prepare", 0.0) - ms.get("visible_faces", 0.0)
                               - ms.get("silhouette_crossings", 0.0), 3)
    ms["other"] = round(1000 * host / steps - sum(ms.get(k, 0.0) for k in ("solve", "arap", "prepare", "replay")), 3)
    ms["step_host"] = round(1000 * host / steps, 3)
    ms["step"] = round(1000 * wall / steps, 3)
    return {"host_parts_ms": ms, "host_parts_calls": {k: round(v / steps, 2) for k, v in calls.items()},
            "host_parts_steps": steps, "host_parts_graphs_captured": len(fit.graphs.graphs) - graphs_before,
            "host_parts_note": "host clock, no synchronisation added: a part's time includes its waits on the device;"
                              " solve is the pre-step positions' (the step's own is in its replay)"}


def sync_sites(args: tuple, kw: dict, cfg: J.JointConfig, steps: int) -> dict:
    """Where a joint step makes the host wait on the GPU: ``steps`` steps at the end of the schedule (every term
    on) under torch.cuda.set_sync_debug_mode("warn"), each synchronising call counted by the library line that
    made it (per step)."""
    import collections
    import traceback
    import warnings

    from v2m4.optim import UniformAdam

    fit = _clip_fit(_fit_args(args, kw, cfg))
    opt = UniformAdam([fit.u], lr=cfg.lr, per_row=True)
    it0 = cfg.iters - steps - 1
    fit.step(it0, opt)  # warm-up: first calls allocate
    torch.cuda.synchronize()
    sites: collections.Counter = collections.Counter()

    def note(message, category, filename, lineno, file=None, line=None):
        stack = [f for f in traceback.extract_stack() if "/v2m4/" in f.filename]
        sites[f"{Path(stack[-1].filename).name}:{stack[-1].lineno} {stack[-1].line}" if stack
              else f"{filename}:{lineno}"] += 1

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = note
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for it in range(it0 + 1, it0 + 1 + steps):
                fit.step(it, opt)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    per = {k: round(v / steps, 2) for k, v in sites.most_common()}
    return {"syncs_per_step": round(sum(per.values()), 2), "sync_sites": per}


def sweep(args: tuple, kw: dict, cfg: J.JointConfig, schedules: dict[str, dict], device: torch.device) -> list:
    """Registration alone, again, under each schedule (JointConfig overrides by label): its seconds by part, and
    what it fits, measured the same way for every schedule: each keyframe's Chamfer to its target and the
    input-view silhouette IoU over every frame (the demo has no ground truth)."""
    from v2m4 import render as R
    from v2m4.camera import Camera
    from v2m4.metrics.image import mask_iou
    from v2m4.types import Mesh

    masks, camera, ctx = args[2], args[3], args[5]
    rows = []
    from functools import partial

    fit, glob = J._fit_clip, J._global_fit
    for label, over in schedules.items():
        over = dict(over)
        static = over.pop("_static", None)  # the step's path: None the default, False the dynamic one
        J._fit_clip, J._global_fit = partial(fit, static=static), partial(glob, static=static)
        c = replace(cfg, **over)
        k = dict(kw, generator=torch.Generator().manual_seed(0), progress=None, state=None)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        res = J.register_clip(*args[:4], c, *args[5:], **k)
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        seq = res.sequence
        T = seq.vertices.shape[0]
        cams = Camera(camera.K.expand(T, 3, 3), camera.cam_from_world.expand(T, 4, 4), camera.resolution)
        with torch.no_grad():
            m = R.render(ctx, Mesh(seq.rest.vertices.to(device), seq.rest.faces.to(device)), cams,
                         channels=("mask",), vertices=seq.vertices.to(device))["mask"]
        iou = mask_iou(m, masks.to(m))
        rows.append({"schedule": label, "overrides": over, "registration_seconds": round(wall, 2),
                     "parts_seconds": [round(x, 2) for x in res.seconds],
                     "fit_ms_per_step": round(1000 * res.seconds[2] / max(1, c.iters), 2),
                     "chamfer_keyframes_mean": float(torch.tensor(res.chamfer).mean()),
                     "mask_iou_all_mean": round(float(iou.mean()), 4), "mask_iou_all_min": round(float(iou.min()), 4),
                     "flipped_max": max(res.flipped)})
        print(json.dumps(rows[-1]), flush=True)
    J._fit_clip, J._global_fit = fit, glob
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--preset", default=None, help="fast | paper (default: paper on CUDA, fast on the CPU)")
    ap.add_argument("--profile-steps", type=int, default=50)
    ap.add_argument("--parts", type=int, default=0, help="also time each part of a joint step over this many steps")
    ap.add_argument("--config", default=None, help="JSON of JointConfig fields to override (a schedule to try)")
    ap.add_argument("--host-parts", type=int, default=0, help="also time each part of a step on the host's clock "
                    "(no synchronisation added) over this many steps")
    ap.add_argument("--sync-sites", type=int, default=0, help="also count the host's waits on the GPU by library "
                    "line over this many steps (CUDA)")
    ap.add_argument("--dynamic", action="store_true", help="the fit's step op by op with the renders' own "
                    "visibility (the default), even where --config turns cuda_graphs on")
    ap.add_argument("--label", default="joint", help="the row's method name")
    ap.add_argument("--out", default=str(RESULTS / "registration_speed.json"))
    ap.add_argument("--sweep", default=None, help="JSON file {label: JointConfig overrides}: after the timed run, "
                    "registration alone again under each (no profile); rows to --sweep-out")
    ap.add_argument("--sweep-out", default=str(RESULTS / "joint_gpu_schedules.json"))
    a = ap.parse_args()
    if a.dynamic:
        from functools import partial
        global _STATIC
        _STATIC = False
        J._fit_clip = partial(J._fit_clip, static=False)
        J._global_fit = partial(J._global_fit, static=False)
    dev = torch.device(a.device)
    preset = a.preset or ("paper" if dev.type == "cuda" else "fast")
    cfg = PipelineConfig.preset(preset, device=a.device, backend=a.backend).with_joint_registration()
    if a.config:
        cfg = replace(cfg, joint=replace(cfg.joint, **json.loads(a.config)))

    captured = {}
    real = P.register_clip

    def spy(*args, **kw):
        captured.update(args=args, kw=kw)
        return real(*args, **kw)

    demo = ROOT / "examples" / "demo"
    frames = read_frames(demo / "frames", max_size=cfg.resolution)
    P.register_clip = spy
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            result = P.reconstruct(frames, make_generator(f"synthetic:{demo}", len(frames)), cfg, run_dir=tmp,
                                   log="quiet")
            wall = time.perf_counter() - t0
            try:
                import av  # noqa: F401
                preview = True
            except ImportError:  # the device machine may lack PyAV: export without the preview video, and say so
                preview = False
            ocfg = replace(cfg, output=replace(cfg.output, preview=preview))
            t0 = time.perf_counter()
            P.write_outputs(result, frames, tmp, ocfg, log="quiet")
            export = time.perf_counter() - t0
    finally:
        P.register_clip = real
    rep = result.report
    sec = {k: round(v, 2) for k, v in rep["seconds"].items()}
    sec["export"] = round(export, 2)
    post = sum(v for k, v in rep["seconds"].items() if k not in ("generate", "keyframes", "report")) + export
    parts = result.registration.seconds
    print(json.dumps({"stage_seconds": sec, "registration_parts": [round(x, 2) for x in parts]}), flush=True)
    row = {"device": a.device, "machine": machine_description(a.device), "backend": a.backend, "preset": preset,
           "method": a.label, "clip": "examples/demo", "frames": len(frames), "keyframes": len(result.keyframes),
           "vertices": int(result.registration.sequence.rest.vertices.shape[0]),
           "joint": {k: getattr(cfg.joint, k) for k in ("global_iters", "global_views", "iters", "key_views",
                                                        "render_res", "view_pool", "video_frames", "video_res",
                                                        "chamfer_points")},
           "stage_seconds": sec, "export_preview": preview, "post_generation_seconds": round(post, 2),
           "post_generation_sec_per_frame": round(post / len(frames), 3), "run_wall_seconds": round(wall, 2),
           "registration_parts_seconds": {"rest_and_targets": round(parts[0], 2), "global": round(parts[1], 2),
                                          "fit": round(parts[2], 2), "repair_and_scores": round(parts[3], 2)},
           "fit_wall_ms_per_step": round(1000 * parts[2] / cfg.joint.iters, 2),
           "input_view": rep["input_view"], "flipped_max": max(result.registration.flipped),
           "date": datetime.date.today().isoformat(), "torch": torch.__version__,
           "commit": git_commit() or "unknown (no git here)"}
    if a.profile_steps > 0 and captured:
        row.update(profile(captured["args"], captured["kw"], cfg.joint, a.profile_steps, dev))
    if a.parts > 0 and captured:
        row.update(step_parts(captured["args"], captured["kw"], cfg.joint, a.parts, dev))
    if a.host_parts > 0 and captured:
        row.update(host_parts(captured["args"], captured["kw"], cfg.joint, a.host_parts, dev))
    if a.sync_sites > 0 and captured and dev.type == "cuda":
        row.update(sync_sites(captured["args"], captured["kw"], cfg.joint, a.sync_sites))
    if a.sweep and captured:
        rows = sweep(captured["args"], captured["kw"], cfg.joint, json.loads(Path(a.sweep).read_text()), dev)
        Path(a.sweep_out).write_text(json.dumps({
            "what": "registration of the demo alone (its camera stage run once), under each schedule; the demo has "
                    "no ground truth, so fit is measured against the keyframe targets and the video's masks",
            "device": a.device, "machine": machine_description(a.device), "backend": a.backend, "preset": preset,
            "date": datetime.date.today().isoformat(), "torch": torch.__version__,
            "commit": git_commit() or "unknown (no git here)", "rows": rows}, indent=1) + "\n")
    print(json.dumps(row, indent=1))
    out = Path(a.out)
    old = json.loads(out.read_text())["rows"] if out.exists() else []
    key = (a.device.split(":")[0], a.backend, preset, a.label)
    keep = [r for r in old if (r["device"].split(":")[0], r["backend"], r["preset"], r.get("method", "pair")) != key]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": keep + [row]}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
