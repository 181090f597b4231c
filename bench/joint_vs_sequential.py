"""Whole-clip registration against the pairwise chain (issue 30): seconds, per-frame F-score, input-view mask IoU.

Claim measured: fitting every frame of the clip at once (``register_clip``) scores at least as well as chaining
keyframe pairs (``register_sequence``, in-betweens interpolated as the pipeline does) at every frame, in
comparable time. Input: the bundled demo item, ``--frames`` frames evenly spread over its clip at ``--res``²;
keyframe meshes from the synthetic generator placed at their true poses (the similarity the generator removed,
undone) and the item's true camera, so both methods see exact re-posing and the comparison is registration alone.
Cases: every frame a keyframe, and ``--keys`` keyframes evenly spread (the rest fitted to the video only, or
interpolated). Scores in the world frame against the ground truth, no alignment: F-score at 1% / 2% of the
ground truth's first-frame bounding-box diagonal, mask IoU through the true camera.

    python bench/joint_vs_sequential.py            # CPU, fast presets, 8 frames at 128²
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from v2m4 import render as R  # noqa: E402
from v2m4.bench import git_commit  # noqa: E402
from v2m4.camera import Camera  # noqa: E402
from v2m4.data.bench import load_item  # noqa: E402
from v2m4.generators.synthetic import SyntheticGenerator  # noqa: E402
from v2m4.metrics import geometry as G  # noqa: E402
from v2m4.metrics.image import mask_iou  # noqa: E402
from v2m4.stages.animate import interpolate  # noqa: E402
from v2m4.stages.keyframes import budget_keyframes  # noqa: E402
from v2m4.stages.registration import RegistrationConfig, register_sequence  # noqa: E402
from v2m4.stages.registration.joint import JointConfig, register_clip  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def true_pose_meshes(item, gen) -> list:
    out = []
    for t in range(len(item.frames)):
        m = gen.generate(None, t)
        M = torch.linalg.inv(gen.removed_transform(t).double()).float()
        out.append(m.with_vertices(m.vertices @ M[:3, :3].T + M[:3, 3]))
    return out


def scores(vertices: torch.Tensor, faces: torch.Tensor, item, ctx, seed: int = 0) -> dict[str, list[float]]:
    """Per-frame F-score@1%, @2% (world frame, fraction of the ground truth's diagonal) and input-view mask IoU."""
    g = torch.Generator().manual_seed(seed)
    gt = item.gt_vertices.float()
    diag = float((gt[0].max(0).values - gt[0].min(0).values).norm())
    f1, f2 = [], []
    for t in range(len(gt)):
        a = G.sample_surface(vertices[t] / diag, faces, 5000, generator=g)
        b = G.sample_surface(gt[t] / diag, item.faces, 5000, generator=g)
        f1.append(G.fscore(a, b, 0.01))
        f2.append(G.fscore(a, b, 0.02))
    T = len(vertices)
    cam = item.camera
    cams = Camera(cam.K.expand(T, 3, 3), cam.cam_from_world.expand(T, 4, 4), cam.resolution)
    from v2m4.types import Mesh
    with torch.no_grad():
        mask = R.render(ctx, Mesh(vertices[0], faces), cams, channels=("mask",), vertices=vertices)["mask"]
    iou = mask_iou(mask, item.frames.rgba[..., 3]).tolist()
    return {"fscore1": f1, "fscore2": f2, "mask_iou": iou}


def run_case(method: str, meshes, key: torch.Tensor, item, ctx, args) -> dict:
    T = len(item.frames)
    times = torch.arange(T, dtype=torch.float32) / 24.0
    masks = item.frames.rgba[..., 3]
    t0 = time.perf_counter()
    if method == "sequential":
        res = register_sequence([meshes[k] for k in key.tolist()], RegistrationConfig.fast(), ctx,
                                generator=torch.Generator().manual_seed(args.seed), times=times[key],
                                video=(item.camera, masks[key]))
        verts = interpolate(res.sequence.vertices, key, T)
    else:
        cfg = replace(JointConfig.fast(), **(args.joint or {}))
        res = register_clip([meshes[k] for k in key.tolist()], key, masks, item.camera, cfg, ctx,
                            generator=torch.Generator().manual_seed(args.seed), times=times)
        verts = res.sequence.vertices
    secs = time.perf_counter() - t0
    s = scores(verts, res.sequence.rest.faces, item, ctx)
    gt = item.gt_vertices.float()
    diag = float((gt[0].max(0).values - gt[0].min(0).values).norm())
    return {"method": method, "keys": key.tolist(), "seconds": round(secs, 1),
            "vertices": int(res.sequence.rest.vertices.shape[0]),
            "jitter": G.vertex_jitter(verts / diag), "jitter_gt": G.vertex_jitter(gt / diag),
            "flipped_max": max(res.flipped), **{k: [round(x, 4) for x in v] for k, v in s.items()}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--keys", type=int, default=4)
    ap.add_argument("--res", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--faces", type=int, default=1500, help="the synthetic generator's mesh density")
    ap.add_argument("--joint", type=json.loads, default=None, help='JointConfig overrides, e.g. {"iters": 300}')
    ap.add_argument("--methods", nargs="*", default=["sequential", "joint"])
    ap.add_argument("--out", default=str(RESULTS / "joint_vs_sequential.json"))
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    demo = ROOT / "examples"
    n = len(load_item("demo", bench_dir=demo).frames)
    sel = budget_keyframes(n, args.frames).tolist()
    item = load_item("demo", bench_dir=demo, frames=sel, resolution=(args.res, args.res))
    from v2m4.generators.synthetic import SyntheticConfig
    gen = SyntheticGenerator(item, seed=args.seed, config=SyntheticConfig(target_faces=args.faces))
    meshes = true_pose_meshes(item, gen)
    ctx = R.context("torch", "cpu")
    T = len(item.frames)
    rows = []
    for key in (torch.arange(T), budget_keyframes(T, args.keys)):
        for method in args.methods:
            try:
                rows.append(run_case(method, meshes, key, item, ctx, args))
            except Exception as exc:  # a failed case is recorded with its error, never dropped
                rows.append({"method": method, "keys": key.tolist(), "error": f"{type(exc).__name__}: {exc}"})
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n| method | keyframes | s | F@1% median | F@2% median | F@2% per frame | IoU min | IoU per frame | "
          f"jitter (gt) | flipped |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    for r in rows:
        if "error" in r:
            print(f"| {r['method']} | {r['keys']} | {r['error']} |")
            continue
        print(f"| {r['method']} | {len(r['keys'])} | {r['seconds']} | {med(r['fscore1']):.3f} | "
              f"{med(r['fscore2']):.3f} | {' '.join(f'{x:.2f}' for x in r['fscore2'])} | {min(r['mask_iou']):.3f} | "
              f"{' '.join(f'{x:.2f}' for x in r['mask_iou'])} | {r['jitter']:.4f} ({r['jitter_gt']:.4f}) | "
              f"{r['flipped_max']:.4f} |")
    out = {"claim": "register_clip vs register_sequence, per frame", "date": datetime.date.today().isoformat(),
           "machine": f"{platform.machine()} CPU, torch {torch.__version__}, {torch.get_num_threads()} threads",
           "commit": git_commit() or "unknown", "settings": vars(args), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
