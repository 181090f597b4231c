"""Full-size TRELLIS image-to-3D v1, random weights, on whatever sparse ops are installed (ours where not):
one generation end to end, and the Sec. 4.2 refinement of one frame, timed and memory-profiled.

    V2M4_TRELLIS=/path/to/TRELLIS python bench/trellis_full.py --device cuda   # -> bench/results/trellis_full.json
    V2M4_TRELLIS=... python bench/trellis_full.py --tiny                        # a CPU smoke run of the same code
    V2M4_TRELLIS=... python bench/trellis_full.py --device cuda --batch 4 8 16  # batched generation -> trellis_batch.json

Activation memory and time depend on shapes, not weights, so random weights give the real cost. The models are
built from the official configs (TRELLIS-image-large: sparse-structure flow and decoder, structured-latent flow
and mesh decoder); the image encoder (DINOv2) is replaced by a random (1, 1374, 1024) condition. Random weights
make the occupancy arbitrary, so the 20,000 highest-scoring voxels of the structure decoder are kept (TRELLIS's
typical count). Sampler settings are the official pipeline's: 25 steps per stage, CFG 7.5 / 3.0 inside
[0.5, 0.95], rescale_t 3. The refinement renders the decoded mesh at 512² with the torch backend.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tiny", action="store_true", help="small models and few steps (a smoke run)")
    ap.add_argument("--force-fallbacks", action="store_true", help="our stand-ins even where spconv etc. are "
                                                                   "installed (spconv's CPU build cannot run these)")
    ap.add_argument("--batch", type=int, nargs="*", default=None, help="time generation at batch 1 and at these "
                    "batches (keyframes at once) instead; writes bench/results/trellis_batch.json")
    args = ap.parse_args()
    checkout = os.environ.get("V2M4_TRELLIS")
    if not checkout:
        sys.exit("set V2M4_TRELLIS to an official TRELLIS checkout (with its FlexiCubes submodule)")
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"

    from v2m4.bench import git_commit
    from v2m4.generators.trellis_fallbacks import device_safe_defaults, install_fallbacks

    used = install_fallbacks(force=args.force_fallbacks)
    pkg = types.ModuleType("trellis")
    pkg.__path__ = [str(Path(checkout) / "trellis")]
    sys.modules["trellis"] = pkg
    device_safe_defaults(dev)
    from trellis.models.sparse_structure_flow import SparseStructureFlowModel
    from trellis.models.sparse_structure_vae import SparseStructureDecoder
    from trellis.models.structured_latent_flow import SLatFlowModel
    from trellis.models.structured_latent_vae.decoder_mesh import SLatMeshDecoder
    from trellis.modules import sparse as sp

    from v2m4 import render as R
    from v2m4.camera import orbit_camera
    from v2m4.generators.trellis import randomise_zero_layers, render_extract
    from v2m4.scoring import SilhouetteColourScorer
    from v2m4.stages.appearance import AppearanceConfig, refine_negative_condition

    cfgs = Path(checkout) / "configs"
    def model_args(config: str, model: str) -> dict:
        return json.loads((cfgs / config).read_text())["models"][model]["args"]

    ss_args = model_args("generation/ss_flow_img_dit_L_16l8_fp16.json", "denoiser")
    ssd_args = model_args("vae/ss_vae_conv3d_16l8_fp16.json", "decoder")
    sl_args = model_args("generation/slat_flow_img_dit_L_64l8p2_fp16.json", "denoiser")
    dec_args = model_args("vae/slat_vae_dec_mesh_swin8_B_64l8_fp16.json", "decoder")
    steps, n_vox, res, cond_len = 25, 20000, 512, 1374
    if args.tiny:
        ss_args.update(model_channels=64, num_blocks=1, num_heads=2, cond_channels=32)
        ssd_args.update(channels=[32, 32, 32], num_res_blocks=1, num_res_blocks_middle=1)
        sl_args.update(model_channels=64, num_blocks=1, num_heads=2, cond_channels=32, io_block_channels=[32])
        dec_args.update(model_channels=256, num_blocks=1, num_heads=2)
        steps, n_vox, res, cond_len = 4, 600, 64, 8
    for a in (ss_args, ssd_args, sl_args, dec_args):
        a["use_fp16"] = bool(a.get("use_fp16")) and cuda
    torch.manual_seed(0)
    t0 = time.perf_counter()
    ss_flow = randomise_zero_layers(SparseStructureFlowModel(**ss_args)).to(dev).eval()
    ss_dec = randomise_zero_layers(SparseStructureDecoder(**ssd_args)).to(dev).eval()
    sl_flow = randomise_zero_layers(SLatFlowModel(**sl_args)).to(dev).eval()
    mesh_dec = randomise_zero_layers(SLatMeshDecoder(**dec_args)).to(dev).eval()
    for m in (ss_flow, ss_dec, sl_flow, mesh_dec):
        if cuda and hasattr(m, "convert_to_fp16"):
            m.convert_to_fp16()
    build_s = time.perf_counter() - t0
    params = {n: round(sum(p.numel() for p in m.parameters()) / 1e6, 1)
              for n, m in (("ss_flow", ss_flow), ("ss_decoder", ss_dec), ("slat_flow", sl_flow),
                           ("mesh_decoder", mesh_dec))}
    plain = AppearanceConfig(t_max=-1, cfg_interval=(0.5, 0.95))

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def flow_batched(model):  # one timestep per batch row (the sparse models modulate each row by its own)
        return lambda x, t, c: model(x, torch.full((c.shape[0],), 1000.0 * t, device=dev), c)

    def generate(B: int) -> tuple[dict, dict]:
        """B keyframes through the four models at once (B random conditions): seconds per part and peak memory;
        and what the one-frame refinement goes on from (meshes, the latent's noise, the condition, the random
        generator after its draws)."""
        gb = torch.Generator().manual_seed(1)
        cond_b = torch.randn(B, cond_len, ss_args["cond_channels"], generator=gb).to(dev)
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        sync()
        t0 = time.perf_counter()
        with torch.no_grad():
            r = ss_args["resolution"]
            noise = torch.randn(B, ss_args["in_channels"], r, r, r, generator=gb).to(dev)
            z = refine_negative_condition(flow_batched(ss_flow), lambda x: x.sum(), noise, cond_b,
                                          torch.zeros_like(cond_b), steps=steps, cfg_strength=7.5, rescale_t=3.0,
                                          config=plain).sample
            logits = ss_dec(z)[:, 0].float()
            side = logits.shape[-1]
            cs = []
            for b in range(B):  # random weights: each keyframe keeps its n_vox highest-scoring voxels
                top = torch.topk(logits[b].flatten(), min(n_vox, logits[b].numel())).indices
                xyz = torch.stack([top // (side * side), (top // side) % side, top % side], -1)
                cs.append(torch.cat([torch.full_like(xyz[:, :1], b), xyz], 1))
            coords_b = torch.cat(cs).int()
            sync()
            t_ss = time.perf_counter() - t0
            c_b = cond_b[..., : sl_args["cond_channels"]]
            x = sp.SparseTensor(feats=torch.randn(len(coords_b), sl_args["in_channels"], generator=gb).to(dev),
                                coords=coords_b)
            lat = refine_negative_condition(flow_batched(sl_flow), lambda x: x.feats.sum(), x, c_b,
                                            torch.zeros_like(c_b), steps=steps, cfg_strength=3.0, rescale_t=3.0,
                                            config=plain).sample
            sync()
            t_slat = time.perf_counter() - t0 - t_ss
            meshes = mesh_dec(lat)
            sync()
        t = time.perf_counter() - t0
        return {"batch": B, "sec": round(t, 3), "sec_per_keyframe": round(t / B, 3),
                "keyframes_per_sec": round(B / t, 4), "sparse_structure_sec": round(t_ss, 3),
                "slat_sec": round(t_slat, 3), "mesh_decode_sec": round(t - t_ss - t_slat, 3),
                "peak_gb": round(torch.cuda.max_memory_allocated() / 2 ** 30, 2) if cuda else None,
                "mesh_faces": [int(m.faces.shape[0]) for m in meshes]}, \
            {"meshes": meshes, "x": x, "cond": cond_b, "g": gb}

    if args.batch:
        generate(1)  # warm-up: kernels, allocator, autotuning
        rows = []
        for B in [1] + [b for b in args.batch if b > 1]:
            try:
                rows.append(generate(B)[0])
            except torch.OutOfMemoryError as exc:
                rows.append({"batch": B, "error": f"out of memory: {str(exc).splitlines()[0]}"})
                break
            print(json.dumps(rows[-1]), flush=True)
        one = rows[0]["keyframes_per_sec"]
        for r in rows:
            if "keyframes_per_sec" in r:
                r["speedup_vs_batch1"] = round(r["keyframes_per_sec"] / one, 2)
        out = {"date": datetime.date.today().isoformat(), "commit": git_commit(),
               "device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
               "tiny": args.tiny, "extensions": used, "params_m": params, "voxels_per_keyframe": n_vox, "steps_per_stage": steps, "rows": rows}
        print(json.dumps(out, indent=1))
        if not args.tiny:
            path = ROOT / "bench" / "results" / "trellis_batch.json"
            runs = json.loads(path.read_text()).get("runs", []) if path.exists() else []
            path.write_text(json.dumps({"what": "TRELLIS image-to-3D v1 generation, full-size models with random "
                                        "weights, seconds per keyframe at batch 1 and batched (bench/trellis_full.py"
                                        " --batch); the newest run first", "runs": [out] + runs}, indent=1) + "\n")
            print(f"wrote {path}")
        return

    gen, one = generate(1)
    t_gen, t_ss, t_slat = gen["sec"], gen["sparse_structure_sec"], gen["slat_sec"]
    gen_peak = gen["peak_gb"] if cuda else float("nan")
    mesh, x_T, g = one["meshes"][0], one["x"], one["g"]
    coords = x_T.coords
    slat_cond = one["cond"][..., : sl_args["cond_channels"]]

    # Sec. 4.2 for one frame: the frame is the render of this generation from a camera; refine from a different
    # start (another seed's negative embedding would be as good): what is timed is the work, not the gain
    cam = orbit_camera(torch.tensor([0.6]), torch.tensor([0.3]), torch.tensor([2.2]), torch.zeros(1, 3), fov_deg=40,
                       resolution=(res, res)).to(dev)
    ctx = R.context("torch", dev)
    scorer = SilhouetteColourScorer()

    with torch.no_grad():
        shown = render_extract(ctx, mesh, cam)
    frame = torch.cat([shown["rgb"][0], shown["mask"][0, ..., None]], -1)

    def loss(x0):
        out = render_extract(ctx, mesh_dec(x0)[0], cam)
        return scorer(out["rgb"], out["mask"], frame)[0]

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    sync()
    t0 = time.perf_counter()
    ref = refine_negative_condition(flow_batched(sl_flow), loss, x_T, slat_cond,
                                    torch.randn(slat_cond.shape, generator=g).to(dev) * 0.1, steps=steps,
                                    cfg_strength=3.0, rescale_t=3.0)
    with torch.no_grad():
        refined = mesh_dec(ref.sample)[0]
    sync()
    t_ref = time.perf_counter() - t0
    ref_peak = torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else float("nan")
    row = {"date": datetime.date.today().isoformat(), "commit": git_commit(),
           "device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
           "tiny": args.tiny, "extensions": used, "params_m": params, "build_s": round(build_s, 2),
           "voxels": int(len(coords)), "steps_per_stage": steps,
           "generation": {"sec": round(t_gen, 3), "sparse_structure_sec": round(t_ss, 3),
                          "slat_sec": round(t_slat, 3), "mesh_decode_sec": round(t_gen - t_ss - t_slat, 3),
                          "peak_gb": round(gen_peak, 2), "mesh_vertices": int(mesh.vertices.shape[0]),
                          "mesh_faces": int(mesh.faces.shape[0])},
           "refinement_one_frame": {"sec": round(t_ref, 3), "adam_steps": len(ref.losses), "render_res": res,
                                    "peak_gb": round(ref_peak, 2), "loss_first": round(ref.losses[0], 5),
                                    "loss_last": round(ref.losses[-1], 5),
                                    "mesh_faces": int(refined.faces.shape[0])}}
    print(json.dumps(row, indent=1))
    if not args.tiny:
        out = ROOT / "bench" / "results" / "trellis_full.json"
        out.write_text(json.dumps(row, indent=1) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
