"""Hunyuan3D-2 shape generation through our generator (``HunyuanGenerator.generate_batch``) at the models' full
sizes with random weights: seconds per keyframe and peak GPU memory at batch 1 and at larger batches. Claim
measured: batched generation gives at least 3x the keyframes per second of batch 1.

    python bench/hunyuan_speed.py --device cuda                       # -> bench/results/hunyuan_speed.json
    python bench/hunyuan_speed.py --tiny                              # a CPU smoke run of the same code

Weights cannot be downloaded here, so each variant's weights folder is written as the official one (config.yaml
and model.fp16.safetensors holding model./vae./conditioner.) from the package's own classes at the official
configs' sizes, randomly initialised; time and memory depend on shapes, not weights. Sizes (the official
config.yaml files): Hunyuan3D-2 DiT 16 double + 32 single blocks of width 1024, VAE 3072 latents; -2mini 8 + 16
blocks, 512 latents; both condition on DINOv2-giant (40 layers, width 1536). The sampler and decoder settings are
our generator's (the package's defaults): 50 steps, guidance 5, octree 384, 8000 points a chunk.

What random weights change: the decoded field's zero level set is arbitrary, so the CPU marching cubes, which runs
once per keyframe and is not batched, sees another surface than a trained model's. Its seconds are reported apart
(``surface_sec``) and the speedup is given both with and without it.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DINO_GIANT = {"attention_probs_dropout_prob": 0.0, "drop_path_rate": 0.0, "hidden_act": "gelu",
              "hidden_dropout_prob": 0.0, "hidden_size": 1536, "image_size": 518, "initializer_range": 0.02,
              "layer_norm_eps": 1e-6, "layerscale_value": 1.0, "mlp_ratio": 4, "model_type": "dinov2",
              "num_attention_heads": 24, "num_channels": 3, "num_hidden_layers": 40, "patch_size": 14,
              "qkv_bias": True, "use_swiglu_ffn": True}


def device_stand_ins() -> list[str]:
    """The device machine has no package index: where OpenCV or PyMeshLab is missing there, stand-ins for what the
    shape stage touches (cv2.resize on a PIL path for the image processor; pymeshlab only imported by the package's
    post-processors, which our generator does not call). Returns the names stood in for (recorded in the table)."""
    import importlib.util
    import types

    import numpy as np
    used = []
    if importlib.util.find_spec("cv2") is None:
        from PIL import Image
        cv2 = types.ModuleType("cv2")
        cv2.INTER_AREA, cv2.INTER_CUBIC, cv2.INTER_NEAREST = Image.BOX, Image.BICUBIC, Image.NEAREST

        def resize(img, size, interpolation=Image.BILINEAR):
            a = np.asarray(img)
            if a.dtype != np.uint8:
                chans = [np.asarray(Image.fromarray(a[..., c].astype(np.float32), "F").resize(size, interpolation))
                         for c in range(a.shape[-1])] if a.ndim == 3 else \
                    [np.asarray(Image.fromarray(a.astype(np.float32), "F").resize(size, interpolation))]
                return np.stack(chans, -1).astype(a.dtype) if a.ndim == 3 else chans[0].astype(a.dtype)
            return np.asarray(Image.fromarray(a).resize(size, interpolation))

        cv2.resize = resize
        sys.modules["cv2"] = cv2
        used.append("cv2 (resize through PIL)")
    if importlib.util.find_spec("pymeshlab") is None:
        pm = types.ModuleType("pymeshlab")

        class Absent:  # named in the package's annotations at import; never built on the shape path we time
            def __init__(self, *args, **kwargs):
                raise RuntimeError("pymeshlab is not installed (a stand-in for the bench's import only)")
        pm.MeshSet = pm.Mesh = Absent
        sys.modules["pymeshlab"] = pm
        used.append("pymeshlab (imported, never called)")
    return used


def config(variant: str, tiny: bool) -> dict:
    """The official config.yaml layout at the variant's sizes (``tiny``: every size small, for a CPU smoke run)."""
    mini = variant == "2mini"
    image = 512 if mini else 518
    cfg = {
        "model": {"target": "hy3dgen.shapegen.models.Hunyuan3DDiT",
                  "params": {"in_channels": 64, "context_in_dim": 1536, "hidden_size": 1024, "mlp_ratio": 4.0,
                             "num_heads": 16, "depth": 8 if mini else 16, "depth_single_blocks": 16 if mini else 32,
                             "axes_dim": [64], "theta": 10000, "qkv_bias": True, "guidance_embed": False}},
        "vae": {"target": "hy3dgen.shapegen.models.ShapeVAE",
                "params": {"num_latents": 512 if mini else 3072, "embed_dim": 64, "num_freqs": 8, "include_pi": False,
                           "heads": 16, "width": 1024, "num_decoder_layers": 16, "qkv_bias": False, "qk_norm": True,
                           "scale_factor": 0.9990943042622529}},
        "conditioner": {"target": "hy3dgen.shapegen.models.SingleImageEncoder",
                        "params": {"main_image_encoder": {"type": "DinoImageEncoder", "kwargs": {
                            "config": dict(DINO_GIANT, image_size=image), "image_size": image,
                            "use_cls_token": True}}}},
        "scheduler": {"target": "hy3dgen.shapegen.schedulers.FlowMatchEulerDiscreteScheduler",
                      "params": {"num_train_timesteps": 1000}},
        "image_processor": {"target": "hy3dgen.shapegen.preprocessors.ImageProcessorV2", "params": {"size": 512}},
    }
    if tiny:
        cfg["model"]["params"].update(context_in_dim=16, hidden_size=32, num_heads=2, depth=1, depth_single_blocks=1,
                                      axes_dim=[16], in_channels=8)
        cfg["vae"]["params"].update(num_latents=16, embed_dim=8, width=32, heads=2, num_decoder_layers=1, num_freqs=4)
        cfg["conditioner"]["params"]["main_image_encoder"]["kwargs"].update(
            config={"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
                    "image_size": 28, "patch_size": 14}, image_size=28)
        cfg["image_processor"]["params"]["size"] = 64
    return cfg


def write_weights(folder: Path, cfg: dict, device: str) -> dict:
    """config.yaml and random model.fp16.safetensors as the official folder; returns parameter counts (millions)."""
    import safetensors.torch
    import yaml

    from v2m4.generators.hunyuan import _import_shapegen
    _import_shapegen()
    from hy3dgen.shapegen.pipelines import instantiate_from_config

    folder.mkdir(parents=True)
    torch.manual_seed(0)
    with torch.device(device):  # initialising a billion parameters is minutes on one CPU thread
        parts = {k: instantiate_from_config(copy.deepcopy(cfg[k])) for k in ("model", "vae", "conditioner")}
    counts = {k: round(sum(p.numel() for p in m.parameters()) / 1e6, 1) for k, m in parts.items()}
    state = {f"{k}.{n}": t.detach().half().cpu().contiguous() for k, m in parts.items()
             for n, t in m.state_dict().items()}
    del parts
    safetensors.torch.save_file(state, str(folder / "model.fp16.safetensors"))
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    return counts


class PartTimer:
    """Seconds spent in the volume decoding and in the surface extraction (class-level wrappers: the pipeline makes
    a new extractor on every call)."""

    def __init__(self, sync):
        from hy3dgen.shapegen.models.autoencoders import surface_extractors as se
        from hy3dgen.shapegen.models.autoencoders import volume_decoders as vd
        self.sec = {"volume": 0.0, "surface": 0.0}
        for name, cls in (("volume", vd.VanillaVolumeDecoder), ("surface", se.MCSurfaceExtractor)):
            real = cls.__call__

            def timed(obj, *a, _real=real, _name=name, **k):
                sync()
                t0 = time.perf_counter()
                out = _real(obj, *a, **k)
                sync()
                self.sec[_name] += time.perf_counter() - t0
                return out

            cls.__call__ = timed

    def reset(self):
        self.sec = {k: 0.0 for k in self.sec}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--variants", nargs="*", default=["2", "2mini"])
    ap.add_argument("--batches", type=int, nargs="*", default=[4, 8, 16])
    ap.add_argument("--tiny", action="store_true", help="small models and a coarse grid (a smoke run)")
    ap.add_argument("--markdown", action="store_true", help="only write the page again from the committed table")
    ap.add_argument("--budget", type=float, default=240.0, help="seconds per variant after which no larger batch "
                    "is started")
    a = ap.parse_args()
    if a.markdown:  # the page again from the committed table
        table = ROOT / "bench" / "results" / "hunyuan_speed.json"
        table.with_suffix(".md").write_text(markdown(json.loads(table.read_text())))
        return 0
    cuda = a.device.startswith("cuda")

    def sync():
        if cuda:
            torch.cuda.synchronize()

    stand_ins = device_stand_ins()
    from v2m4.generators.hunyuan import HunyuanGenerator
    from v2m4.io.frames import read_frames
    frames = read_frames(ROOT / "examples" / "demo" / "frames", max_size=512)
    call = {"steps": 3, "octree_resolution": 32, "num_chunks": 4096} if a.tiny else {}
    out = {"date": datetime.date.today().isoformat(),
           "device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__, "tiny": a.tiny,
           "stand_ins": stand_ins, "images": "examples/demo frames (512 px RGBA)", "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in a.variants:
            folder = Path(tmp) / f"hunyuan3d-dit-v2-{variant}"
            t0 = time.perf_counter()
            params = write_weights(folder, config(variant, a.tiny), a.device)
            gen = HunyuanGenerator(str(folder), device=a.device, **call)
            timer = PartTimer(sync)
            setup = time.perf_counter() - t0
            gen.generate_batch([frames.rgba[0]], [0])  # warm-up: kernels, allocator
            rows, start = [], time.perf_counter()
            for B in [1] + [b for b in a.batches if b > 1]:
                if B > 1 and time.perf_counter() - start > a.budget:
                    rows.append({"batch": B, "skipped": f"over the {a.budget:.0f} s budget of this run"})
                    continue
                imgs = [frames.rgba[i % len(frames)] for i in range(B)]
                if cuda:
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
                timer.reset()
                sync()
                t1 = time.perf_counter()
                try:
                    meshes = gen.generate_batch(imgs, list(range(B)))
                except torch.OutOfMemoryError as exc:
                    rows.append({"batch": B, "error": "out of memory: " + str(exc).splitlines()[0]})
                    break
                sync()
                sec = time.perf_counter() - t1
                model = sec - timer.sec["surface"]
                rows.append({"batch": B, "sec": round(sec, 3), "sec_per_keyframe": round(sec / B, 3),
                             "keyframes_per_sec": round(B / sec, 4),
                             "volume_decode_sec": round(timer.sec["volume"], 3),
                             "surface_sec": round(timer.sec["surface"], 3),
                             "without_surface_keyframes_per_sec": round(B / model, 4),
                             "peak_gb": round(torch.cuda.max_memory_allocated() / 2 ** 30, 2) if cuda else None,
                             "mesh_faces": [int(m.faces.shape[0]) for m in meshes]})
                print(variant, json.dumps(rows[-1]), flush=True)
            for r in rows:
                if "sec" in r:
                    r["speedup_vs_batch1"] = round(r["keyframes_per_sec"] / rows[0]["keyframes_per_sec"], 2)
                    r["without_surface_speedup_vs_batch1"] = round(
                        r["without_surface_keyframes_per_sec"] / rows[0]["without_surface_keyframes_per_sec"], 2)
            out["variants"][variant] = {"params_m": params, "setup_sec": round(setup, 1), "call": gen.call,
                                        "rows": rows}
            del gen
            if cuda:
                torch.cuda.empty_cache()
            if not a.tiny:  # after each variant: a run stopped in the next keeps this one
                path = ROOT / "bench" / "results" / "hunyuan_speed.json"
                path.write_text(json.dumps(out, indent=1) + "\n")
                path.with_suffix(".md").write_text(markdown(out))
                print(f"wrote {path}", flush=True)
    print(json.dumps(out, indent=1))
    return 0


def markdown(out: dict) -> str:
    """The table's page: seconds per keyframe, its parts and peak memory for every variant and batch."""
    lines = [f"**Hunyuan3D-2 shape generation** (full-size models, random weights) on {out.get('device')}, "
             f"{out.get('date')}, commit {out.get('commit', '?')}; stand-ins: {', '.join(out.get('stand_ins') or []) or 'none'}",
             "", "| variant | batch | s per keyframe | keyframes/s | x batch 1 | volume decode s | surface (CPU) s | "
             "x batch 1 without surface | peak GB |", "|---|---|---|---|---|---|---|---|---|"]
    for name, v in out.get("variants", {}).items():
        for r in v["rows"]:
            if "sec" not in r:
                lines.append(f"| {name} | {r['batch']} | {r.get('skipped') or r.get('error')} | | | | | | |")
                continue
            lines.append(f"| {name} | {r['batch']} | {r['sec_per_keyframe']:.2f} | {r['keyframes_per_sec']:.4f} | "
                         f"{r['speedup_vs_batch1']:.2f} | {r['volume_decode_sec']:.1f} | {r['surface_sec']:.1f} | "
                         f"{r['without_surface_speedup_vs_batch1']:.2f} | {r['peak_gb']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
