"""``v2m4 batch --ray ADDRESS``: the clips of a batch on a Ray cluster (the optional extra ``v2m4[cluster]``).

Per clip, three kinds of task: ``plan_clip`` reads the input and picks the keyframes (the pipeline's own
``keyframes.json`` checkpoint); ``generate_chunk`` tasks generate the keyframes that have no mesh yet,
``BatchOptions.keyframes_per_task`` each, on a GPU when the generator needs one, so one clip's keyframes spread over
every GPU of the cluster; then one ``clip_stages`` task runs the whole one-clip path of ``v2m4 run --resume``, which
finds every generated mesh in its checkpoints and goes on with the camera search, registration, texture and export.

Every task writes its results to the clip's checkpoint folder, which must be on storage that every node and the
driver see (a shared file system): that is how the tasks hand results to each other, and why a worker lost mid-task
costs that task only. Ray runs a task again when its worker dies (``max_retries``), and the rerun resumes from the
checkpoints; a task that raises fails its clip's attempt, and the batch tries the clip again from its checkpoints.
Each clip's driver-side loop is a thread here: the driver only submits tasks and waits on them.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

try:
    import ray
except ImportError:  # the CLI's one-line error, not a traceback
    from .errors import V2M4Error
    raise V2M4Error("v2m4 batch --ray needs Ray: pip install 'v2m4[cluster]'") from None

from .clip import BatchOptions, Clip, ClipResult, describe, record_failure, run_clip
from .errors import V2M4Error

GPU_GENERATORS = ("trellis", "hunyuan")  # the generators that run on a CUDA GPU only
TASK_RETRIES = 2                         # reruns of a task whose worker died (a task that raises is not rerun here)


def needs_gpu(generator: str, cfg) -> bool:
    return cfg.device.startswith("cuda") or generator.partition(":")[0] in GPU_GENERATORS


@ray.remote(max_retries=TASK_RETRIES)
def plan_clip(input_path: str, checkpoints: str, cfg, inputs):
    """The clip's keyframes without a generated mesh yet, its frame count, and those keyframes' images."""
    import numpy as np

    from .checkpoint import Checkpoints
    from .clip import read_input
    from .stages.keyframes import Keyframes, select_keyframes

    frames, _ = read_input(input_path, inputs, cfg.resolution)
    store = Checkpoints(checkpoints, resume=True)
    key = store.stage("keyframes.json", Keyframes.load, lambda: Keyframes(select_keyframes(frames, cfg.keyframes)))
    todo = [t for t in key.indices.tolist() if not store.has(f"gen_{t:05d}.npz")]
    images = frames.rgba[todo].numpy() if todo else np.zeros((0, 1, 1, 4), np.float32)
    return (todo, len(frames)), images


class _KeyframeImages:
    """What ``generate_keyframes`` reads of a clip, ``rgba[t]``, for the chunk's keyframes only: a task need not
    hold every frame of the clip."""

    def __init__(self, indices: list[int], images):
        import torch
        self.rgba = {t: torch.tensor(images[i]) for i, t in enumerate(indices)}


@ray.remote(max_retries=TASK_RETRIES)
def generate_chunk(generator: str, n_frames: int, cfg, checkpoints: str, indices: list[int], images, offset: int):
    """Generate the keyframes ``indices`` (their images are ``images[offset:]``) into the checkpoint folder, as
    the generation stage does (``gen_NNNNN.npz`` as generated; a keyframe whose mesh is unusable is saved empty
    and dropped by the stage)."""
    from dataclasses import replace

    import torch

    from .checkpoint import Checkpoints
    from .generators import make_generator
    from .stages.generate import generate_keyframes

    gen = make_generator(generator, n_frames, seed=cfg.seed, device=cfg.device)
    frames = _KeyframeImages(indices, images[offset: offset + len(indices)])
    try:  # the stage simplifies the meshes when it loads them: here they are kept as generated
        generate_keyframes(frames, torch.tensor(indices), gen, replace(cfg.generation, max_faces=None),
                           store=Checkpoints(checkpoints, resume=True))
    except V2M4Error:
        pass  # every keyframe of this chunk unusable: saved empty; whether the clip has any is the stage's call


@ray.remote(max_retries=TASK_RETRIES)
def clip_stages(clip: Clip, out: str, cfg, options: BatchOptions) -> dict:
    """The one-clip path of ``v2m4 run --resume``: every generated mesh is in the checkpoints by now."""
    return run_clip(clip, Path(out), cfg, options)


def connect(address: str) -> bool:
    """Connect to the cluster at ``address`` ("local": start one on this machine); whether we started the
    connection. A connection the caller already made (``ray.init`` in Python) is used as it is."""
    if ray.is_initialized():
        return False
    try:
        ray.init() if address == "local" else ray.init(address=address)
    except ConnectionError as exc:
        raise V2M4Error(f"--ray {address}: no Ray cluster answers there ({describe(exc)})") from None
    return True


def run_on_ray(clips: list[Clip], out: Path, cfg, options: BatchOptions, address: str, finished, connected) -> None:
    """Every clip on the cluster; ``finished(ClipResult)`` as each ends, ``connected(seconds)`` once connected."""
    t0 = time.perf_counter()
    started = connect(address)
    try:
        connected(time.perf_counter() - t0)
        resources = ray.cluster_resources()
        gpu = {c.generator for c in clips if needs_gpu(c.generator, cfg)}
        if gpu and resources.get("GPU", 0) < 1:
            raise V2M4Error(f"{sorted(gpu)[0]} on {cfg.device} needs a GPU and the Ray cluster has none: run on a "
                            "cluster with GPUs, or use a CPU generator (meshes:DIR, synthetic:ITEM_DIR)")
        workers = max(1, min(len(clips), max(2, int(resources.get("CPU", 2)))))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="v2m4-clip")
        try:
            running = [pool.submit(_clip_on_ray, c, out, cfg, options) for c in clips]
            for fut in as_completed(running):
                finished(fut.result())
        finally:  # on Ctrl-C, no waiting for the running clips: the shutdown below ends their waits
            pool.shutdown(wait=False, cancel_futures=True)
    finally:
        if started:
            ray.shutdown()


def _clip_on_ray(clip: Clip, out: Path, cfg, options: BatchOptions) -> ClipResult:
    """One clip's tasks, tried ``1 + options.retries`` times; each try resumes from what the last one saved."""
    d = out / clip.name
    checkpoints = str(d / "checkpoints")
    gen_gpu = 1 if needs_gpu(clip.generator, cfg) else 0
    stage_gpu = 1 if cfg.device.startswith("cuda") or gen_gpu else 0  # the stages refine with the generator
    step = max(1, options.keyframes_per_task)
    t0 = time.perf_counter()
    error = None
    for attempt in range(1, options.retries + 2):
        try:
            meta, images = plan_clip.options(num_returns=2).remote(clip.input, checkpoints, cfg, options.inputs)
            todo, n_frames = ray.get(meta)
            ray.get([generate_chunk.options(num_gpus=gen_gpu).remote(clip.generator, n_frames, cfg, checkpoints,
                                                                     todo[s: s + step], images, s)
                     for s in range(0, len(todo), step)])
            del images  # the keyframe images leave the object store once no task needs them
            figures = ray.get(clip_stages.options(num_gpus=stage_gpu).remote(clip, str(out), cfg, options))
            return ClipResult(clip.name, clip.input, str(d), "done", attempt, time.perf_counter() - t0,
                              figures=figures)
        except Exception as exc:  # noqa: BLE001 -- one clip's failure, whatever it is, must not stop the others
            error = describe(exc)
            record_failure(d, exc)
    return ClipResult(clip.name, clip.input, str(d), "failed", attempt, time.perf_counter() - t0, error=error)
