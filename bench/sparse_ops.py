"""Speed and memory of the pure-PyTorch sparse ops that stand in for spconv and flash_attn in TRELLIS.

    python bench/sparse_ops.py --device cuda              # kernels at TRELLIS sizes -> bench/results/sparse_ops*.json
    V2M4_TRELLIS=/path/to/TRELLIS python bench/sparse_ops.py --device cuda --model
        # + the full-size structured-latent flow denoiser (TRELLIS-image-large's config, random weights):
        #   one classifier-free-guided step and one refinement step's backward to the negative condition

Sizes: a 64³ grid with ~20k active voxels on a thin shell (an object's surface, as TRELLIS's stage 1 gives),
128 channels at 3³ (the flow model's input/output blocks); attention over 2 x 4096 tokens with 16 heads of 64
(its transformer at 32³ after the 2x patching) and cross-attention to 1374 image tokens (DINOv2 at 518 px).
Each row: median of 5 timed runs after 2 warm-ups. Which implementation ran is recorded (the originals are used
where installed).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from v2m4.generators.sparse import neighbour_map, submanifold_conv3d, varlen_attention  # noqa: E402


def shell_coords(n_target: int, res: int, batch: int, device) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    axis = torch.arange(res, dtype=torch.float32) - (res - 1) / 2
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    r = torch.sqrt(x ** 2 + y ** 2 + z ** 2)
    # widen the shell until it holds about n_target voxels
    for width in torch.linspace(0.5, 8, 60):
        cells = ((r - res * 0.4).abs() < width).nonzero()
        if len(cells) >= n_target:
            break
    cells = cells[torch.randperm(len(cells), generator=g)[:n_target]]
    out = [torch.cat([torch.full((len(cells), 1), b), cells], 1) for b in range(batch)]
    return torch.cat(out).int().to(device)


def timed(fn, dev, n=5):
    for _ in range(2):
        fn()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2 ** 30 if dev.type == "cuda" else float("nan")
    return round(statistics.median(ts), 5), round(peak, 3)


def kernel_rows(dev, dtype) -> list[dict]:
    rows = []
    coords = shell_coords(20000, 64, 1, dev)
    N = len(coords)
    feats = torch.randn(N, 128, device=dev, dtype=dtype, requires_grad=True)
    weight = (torch.randn(128, 3, 3, 3, 128, device=dev, dtype=dtype) * 0.02).requires_grad_(True)
    s, m = timed(lambda: neighbour_map(coords, (3, 3, 3)), dev)
    rows.append({"op": "neighbour_map 3x3x3", "voxels": N, "sec": s, "peak_gb": m, "impl": "v2m4 (torch)"})
    nbr = neighbour_map(coords, (3, 3, 3))
    with torch.no_grad():
        s, m = timed(lambda: submanifold_conv3d(feats, coords, weight, neighbours=nbr), dev)
    rows.append({"op": "subm conv 3x3x3 128->128 fwd", "voxels": N, "sec": s, "peak_gb": m, "impl": "v2m4 (torch)"})
    s, m = timed(lambda: submanifold_conv3d(feats, coords, weight, neighbours=nbr).square().sum().backward(), dev)
    rows.append({"op": "subm conv 3x3x3 128->128 fwd+bwd", "voxels": N, "sec": s, "peak_gb": m,
                 "impl": "v2m4 (torch)"})
    try:
        import spconv.pytorch as spconv

        conv = spconv.SubMConv3d(128, 128, 3, bias=False).to(dev, dtype)
        x = spconv.SparseConvTensor(feats.detach(), coords, [64, 64, 64], 1)
        with torch.no_grad():
            s, m = timed(lambda: conv(x), dev)
        rows.append({"op": "subm conv 3x3x3 128->128 fwd", "voxels": N, "sec": s, "peak_gb": m, "impl": "spconv"})
    except ImportError:
        pass
    except Exception as exc:  # spconv's CPU build lacks kernels the CUDA build has
        print(f"spconv row skipped: {type(exc).__name__}: {exc}")
    H, C = 16, 64
    for name, lq, lk in (("self-attention 2 x 4096 tokens", [4096, 4096], [4096, 4096]),
                         ("cross-attention 2 x 4096 -> 1374", [4096, 4096], [1374, 1374]),
                         ("self-attention 4096 + 2500 tokens", [4096, 2500], [4096, 2500])):
        q = torch.randn(sum(lq), H, C, device=dev, dtype=dtype)
        k = torch.randn(sum(lk), H, C, device=dev, dtype=dtype)
        v = torch.randn(sum(lk), H, C, device=dev, dtype=dtype)
        with torch.no_grad():
            s, m = timed(lambda: varlen_attention(q, k, v, lq, lk), dev)
        rows.append({"op": name, "voxels": sum(lq), "sec": s, "peak_gb": m, "impl": "v2m4 (torch SDPA)"})
        try:
            import flash_attn

            if not getattr(flash_attn, "__v2m4_fallback__", False):
                cq = torch.tensor([0] + lq, device=dev).cumsum(0).int()
                ck = torch.tensor([0] + lk, device=dev).cumsum(0).int()
                with torch.no_grad():
                    s, m = timed(lambda: flash_attn.flash_attn_varlen_func(q, k, v, cq, ck, max(lq), max(lk)), dev)
                rows.append({"op": name, "voxels": sum(lq), "sec": s, "peak_gb": m, "impl": "flash_attn"})
        except ImportError:
            pass
    return rows


def model_rows(dev, checkout: str, voxels: int = 20000, force: bool = False) -> list[dict]:
    from v2m4.generators.trellis_fallbacks import install_fallbacks

    used = install_fallbacks(force=force)
    pkg = types.ModuleType("trellis")
    pkg.__path__ = [str(Path(checkout) / "trellis")]
    sys.modules["trellis"] = pkg
    from trellis.models.structured_latent_flow import SLatFlowModel
    from trellis.modules import sparse as sp

    cfg = json.loads((Path(checkout) / "configs/generation/slat_flow_img_dit_L_64l8p2_fp16.json").read_text())
    args = cfg["models"]["denoiser"]["args"]
    model = SLatFlowModel(**args).to(dev).eval()
    if args.get("use_fp16") and dev.type == "cuda":
        model.convert_to_fp16()
    params = sum(p.numel() for p in model.parameters())
    coords = shell_coords(voxels, 64, 2, dev)  # batch 2: conditional and unconditional branches of CFG
    x = sp.SparseTensor(feats=torch.randn(len(coords), args["in_channels"], device=dev), coords=coords)
    cond = torch.randn(2, 1374, args["cond_channels"], device=dev)
    t = torch.tensor([500.0, 500.0], device=dev)
    with torch.no_grad():
        s_fwd, m_fwd = timed(lambda: model(x, t, cond), dev, n=3)
    neg = cond[1:].clone().requires_grad_(True)

    def refine_step():  # Sec. 4.2: the gradient of a loss on the guided prediction reaches the negative embedding
        out = model(x, t, torch.cat([cond[:1], neg]))
        out.feats.float().square().mean().backward()

    s_bwd, m_bwd = timed(refine_step, dev, n=3)
    common = {"voxels": len(coords) // 2, "params_m": round(params / 1e6, 1), "impl": json.dumps(used)}
    return [{"op": "SLat flow (TRELLIS-image-large, random weights) CFG step, batch 2, fwd", "sec": s_fwd,
             "peak_gb": m_fwd, **common},
            {"op": "SLat flow refinement step: fwd + bwd to the negative condition", "sec": s_bwd,
             "peak_gb": m_bwd, **common}]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", action="store_true", help="also time the full-size flow model ($V2M4_TRELLIS)")
    ap.add_argument("--model-voxels", type=int, default=20000, help=argparse.SUPPRESS)  # CPU smoke runs
    ap.add_argument("--force-fallbacks", action="store_true", help="use the stand-ins even where spconv/flash_attn "
                                                                   "are installed")
    args = ap.parse_args()
    dev = torch.device(args.device)
    dtype = torch.float16 if dev.type == "cuda" else torch.float32
    rows = kernel_rows(dev, dtype)
    if args.model:
        checkout = os.environ.get("V2M4_TRELLIS")
        if not checkout:
            sys.exit("--model needs V2M4_TRELLIS (an official TRELLIS checkout)")
        rows += model_rows(dev, checkout, args.model_voxels, args.force_fallbacks)
    name = torch.cuda.get_device_name() if dev.type == "cuda" else "cpu"
    for r in rows:
        print(f"{r['op']:<64} {r['impl'][:40]:<40} {r['sec']:>9.4f} s {r['peak_gb']:>7.2f} GB")
    out = ROOT / "bench" / "results" / ("sparse_ops.json" if dev.type == "cpu" else "sparse_ops_gpu.json")
    out.write_text(json.dumps({"date": datetime.date.today().isoformat(), "device": name, "dtype": str(dtype),
                               "torch": torch.__version__, "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
