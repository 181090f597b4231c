"""Throughput of the learned scorers and metrics: images per second at 224², batch 64, and the camera search's
time with a DreamSim-sized scorer. Writes bench/results/<name>.json.

Weights cannot be fetched on our machines and do not change the arithmetic, so every network is built with random
weights at its real size: LPIPS-VGG is ``lpips.LPIPS(net="vgg", pnet_rand=True)`` (the package's own network);
CLIP is ``open_clip.create_model("ViT-bigG-14", pretrained=None)`` (the paper's backbone); DreamSim cannot be
built without its checkpoints (its constructor loads them), so its ensemble (DINO ViT-B/16, CLIP ViT-B/16,
OpenCLIP ViT-B/16 at 224², embeddings concatenated, cosine distance) is timed as three randomly initialised timm
ViT-B/16 networks in the same arrangement, and labelled a proxy.

    python bench/learned_speed.py --device cuda [--search-item p01_fox_walk] [--name learned_h200]
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from v2m4.bench import machine_description  # noqa: E402
from _common import BENCH_DIR  # noqa: E402


class DreamSimProxy(torch.nn.Module):
    """DreamSim ensemble's shape: three ViT-B/16 embedders, concatenated, cosine distance."""

    def __init__(self):
        super().__init__()
        import timm
        self.nets = torch.nn.ModuleList(timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0)
                                        for _ in range(3))

    def embed(self, x):
        return torch.nn.functional.normalize(torch.cat([n(x) for n in self.nets], -1), dim=-1)

    def forward(self, a, b):
        return 1 - (self.embed(a) * self.embed(b)).sum(-1)


def rate(fn, n_images: int, reps: int, device) -> float:
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n_images * reps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--search-item", default="p01_fox_walk")
    ap.add_argument("--search-frames", type=int, default=6)
    ap.add_argument("--skip-clip", action="store_true")
    ap.add_argument("--name", default="learned_speed")
    a = ap.parse_args()
    dev = torch.device(a.device)
    B = a.batch
    x = torch.rand(B, 3, 224, 224, device=dev)
    y = torch.rand(B, 3, 224, 224, device=dev)
    rows = {}

    import lpips
    net = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False).to(dev).eval()
    with torch.no_grad():
        rows["lpips_vgg"] = {"pairs_per_s": rate(lambda: net(x * 2 - 1, y * 2 - 1), B, a.reps, dev)}
    xg = x.clone().requires_grad_(True)
    rows["lpips_vgg"]["pairs_per_s_fwd_bwd"] = rate(lambda: net(xg * 2 - 1, y * 2 - 1).sum().backward(), B, a.reps,
                                                    dev)
    del net

    ds = DreamSimProxy().to(dev).eval().requires_grad_(False)
    with torch.no_grad():
        rows["dreamsim_ensemble_proxy"] = {"pairs_per_s": rate(lambda: ds(x, y), B, a.reps, dev)}
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            rows["dreamsim_ensemble_proxy"]["pairs_per_s_bf16"] = rate(lambda: ds(x, y), B, a.reps, dev)
    rows["dreamsim_ensemble_proxy"]["pairs_per_s_fwd_bwd"] = rate(lambda: ds(xg, y).sum().backward(), B, a.reps, dev)
    print(json.dumps(rows), flush=True)

    # the camera search with the DreamSim-sized scorer (paper preset) on one item's first frames
    from v2m4 import render as R
    from v2m4.bench import load_selected_item
    from v2m4.config import PipelineConfig
    from v2m4.generators.synthetic import SyntheticGenerator
    from v2m4.learned.dreamsim import DreamSimScorer
    from v2m4.stages.camera import search_poses

    item = load_selected_item(a.search_item, a.search_frames, 512, BENCH_DIR)
    gen = SyntheticGenerator(item)
    meshes = [gen.generate(item.frames.rgba[t], t).to(dev) for t in range(len(item.frames))]
    ctx = R.context("nvdiffrast" if dev.type == "cuda" else "torch", dev)
    search = {}
    for name, scorer in (("silhouette-colour", None), ("dreamsim_proxy", DreamSimScorer(ds, batch=B))):
        t0 = time.perf_counter()
        found = search_poses(meshes, item.frames, PipelineConfig.paper().camera, ctx, scorer=scorer,
                             generator=torch.Generator().manual_seed(0))
        if dev.type == "cuda":
            torch.cuda.synchronize()
        sec = torch.tensor(found.seconds)
        g = found.global_search
        search[name] = {"frames": len(item.frames), "sec_total": round(time.perf_counter() - t0, 2),
                        "sec_global_frame": round(float(sec[g].mean()), 3) if g.any() else None,
                        "sec_warm_frame": round(float(sec[~g].mean()), 3) if (~g).any() else None}
        print(name, search[name], flush=True)
    rows["camera_search"] = search
    del ds

    if not a.skip_clip:
        import open_clip
        t0 = time.perf_counter()
        clip = open_clip.create_model("ViT-bigG-14", pretrained=None, device=dev).eval()
        build = time.perf_counter() - t0
        with torch.no_grad():
            rows["clip_vit_bigg14"] = {"images_per_s": rate(lambda: clip.encode_image(x), B, a.reps, dev),
                                       "build_sec": round(build, 1)}
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                rows["clip_vit_bigg14"]["images_per_s_bf16"] = rate(lambda: clip.encode_image(x), B, a.reps, dev)
    for r in rows.values():
        for k, v in list(r.items()):
            if isinstance(v, float):
                r[k] = round(v, 1)
    res = {"date": datetime.date.today().isoformat(), "machine": machine_description(a.device),
           "torch": torch.__version__, "batch": B, "resolution": 224, "rows": rows,
           "note": "random weights at the real sizes; DreamSim timed through a same-shape proxy (module docstring)"}
    out = ROOT / "bench" / "results" / f"{a.name}.json"
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
