"""Texture stage alone (Sec. 4.4): its time on the bench items, separated from camera search and registration,
so that the figure is the stage's own.

Input per item: the ground-truth mesh (one topology) at the keyframes (the paper's stride from the fps) as the
registered sequence, its base colours as the generated appearance, the item's frames and camera. The stage runs as
the pipeline runs it (``v2m4.stages.texture.bake_texture``) at the chosen preset. Reported: seconds in all, per
keyframe and amortised per output frame (the texture serves every frame of the clip), the input-view PSNR of the
textured keyframes, and the share of unreached pixels from 8 ring views. Writes bench/results/<name>.json.

    python bench/texture_speed.py [--preset fast|paper] [--device cuda] [--backend nvdiffrast] [--name texture_h200]
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from v2m4 import render as R  # noqa: E402
from v2m4.bench import machine_description  # noqa: E402
from v2m4.config import PipelineConfig  # noqa: E402
from v2m4.data.bench import gt_mesh, list_items, load_item  # noqa: E402
from v2m4.metrics.image import masked_psnr  # noqa: E402
from v2m4.stages.keyframes import KeyframeConfig  # noqa: E402
from v2m4.stages.texture import TextureConfig, bake_texture, ring_views, unreached_fraction  # noqa: E402
from v2m4.types import Sequence  # noqa: E402
from _common import BENCH_DIR  # noqa: E402

# the kernels' warm-up on a GPU: the smallest bake that runs every code path
WARMUP = replace(TextureConfig.fast(), size=64, iters=5, multi_views=8, render_res=48)


def one(item_id: str, a) -> dict:
    probe = load_item(item_id, bench_dir=a.bench_dir)
    n = len(probe.frames)
    key = list(range(0, n, KeyframeConfig().stride_for(probe.frames.fps)))
    item = load_item(item_id, frames=key, resolution=(a.resolution, a.resolution), bench_dir=a.bench_dir)
    dev = torch.device(a.device)
    ctx = R.context(a.backend, dev)
    meshes = [gt_mesh(item, k).to(dev) for k in range(len(key))]
    cam = item.camera.to(dev) if hasattr(item.camera, "to") else item.camera
    cfg = PipelineConfig.preset(a.preset).texture
    g = torch.Generator().manual_seed(0)
    if dev.type == "cuda":  # compile/warm the kernels outside the timing (a real run pays this once per process)
        first = item.frames.select(torch.arange(1))
        bake_texture(first, meshes[:1], Sequence(meshes[0], meshes[0].vertices[None], first.times), cam, WARMUP, ctx,
                     generator=torch.Generator().manual_seed(0))
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    seq = Sequence(meshes[0], torch.stack([m.vertices for m in meshes]), item.frames.times)
    tex = bake_texture(item.frames, meshes, seq, cam, cfg, ctx, generator=g)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    sec = time.perf_counter() - t0
    m = tex.mesh
    with torch.no_grad():
        K = len(key)
        from v2m4.camera import Camera
        cams = Camera(cam.K.expand(K, 3, 3), cam.cam_from_world.expand(K, 4, 4), cam.resolution)
        v = torch.stack([x.vertices for x in meshes])[:, tex.vmap]
        r = R.render(ctx, m, cams, channels=("rgb", "mask"), vertices=v)
        ref = item.frames.rgba.to(dev)
        psnr = masked_psnr(r["rgb"], ref[..., :3], ref[..., 3])
    return {"faces": int(m.faces.shape[0]), "keyframes": K, "frames": n, "texture_size": cfg.size,
            "iters": cfg.iters, "sec_texture": round(sec, 3), "sec_per_keyframe": round(sec / K, 4),
            "sec_per_frame_amortised": round(sec / n, 4), "psnr_keyframes": round(statistics.median(psnr.tolist()), 3),
            "unreached_frac": unreached_fraction(m, tex.unreached, ring_views(m, 8, 256), ctx)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", nargs="*", default=None)
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--resolution", type=int, default=None, help="frame size (default 128 fast, 512 paper)")
    ap.add_argument("--bench-dir", default=str(BENCH_DIR))
    ap.add_argument("--name", default="texture_speed")
    a = ap.parse_args()
    a.resolution = a.resolution or (512 if a.preset == "paper" else 128)
    items = a.items or [i for i in list_items(bench_dir=a.bench_dir) if i.startswith("p")]
    rows = {}
    for i in items:
        try:
            rows[i] = one(i, a)
        except Exception as exc:  # one item's failure is recorded, not hidden
            rows[i] = {"error": f"{type(exc).__name__}: {exc}"}
        print(i, rows[i], flush=True)
    res = {"date": datetime.date.today().isoformat(), "machine": machine_description(a.device),
           "settings": {k: v for k, v in vars(a).items() if k != "name"}, "items": rows}
    ok = [r for r in rows.values() if "error" not in r]
    if ok:
        res["median_sec_per_frame_amortised"] = statistics.median(r["sec_per_frame_amortised"] for r in ok)
        res["median_sec_per_keyframe"] = statistics.median(r["sec_per_keyframe"] for r in ok)
    out = ROOT / "bench" / "results" / f"{a.name}.json"
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({k: v for k, v in res.items() if k != "items"}))


if __name__ == "__main__":
    main()
