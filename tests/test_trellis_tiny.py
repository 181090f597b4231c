"""The official TRELLIS structured-latent flow model, tiny and randomly initialised, on the pure-PyTorch fallbacks
(issue 9). Needs the official code: set V2M4_TRELLIS to a checkout (git clone https://github.com/microsoft/TRELLIS;
these models also import easydict, plyfile and utils3d from PyPI). Each case runs in a subprocess, because the
fallbacks are registered as modules and TRELLIS reads its backend switches once at import.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CHECKOUT = os.environ.get("V2M4_TRELLIS")
pytestmark = pytest.mark.skipif(not CHECKOUT or not (Path(CHECKOUT) / "trellis").is_dir(),
                                reason="set V2M4_TRELLIS to an official TRELLIS checkout to run the tiny-model tests")

SCRIPT = textwrap.dedent('''
    import json, sys, types, torch
    from v2m4.generators.trellis_fallbacks import install_fallbacks
    used = install_fallbacks(force=sys.argv[2] == "force")
    # import the model modules without trellis/__init__ (which pulls in every renderer and representation)
    pkg = types.ModuleType("trellis"); pkg.__path__ = [sys.argv[1] + "/trellis"]; sys.modules["trellis"] = pkg
    from trellis.models.structured_latent_flow import SLatFlowModel
    from trellis.modules import sparse as sp
    torch.manual_seed(0)
    model = SLatFlowModel(resolution=8, in_channels=4, model_channels=32, cond_channels=16, out_channels=4,
                          num_blocks=2, num_heads=2, patch_size=2, num_io_res_blocks=1, io_block_channels=[16])
    with torch.no_grad():  # zero-initialised output layers would hide every path but the skips
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.05)
    g = torch.Generator().manual_seed(1)
    coords = []
    for b, n in enumerate((37, 22)):  # two sequences of different length: the varlen attention path
        cells = torch.randperm(512, generator=g)[:n]
        coords.append(torch.stack([torch.full((n,), b), cells // 64, (cells // 8) % 8, cells % 8], -1))
    coords = torch.cat(coords).int()
    x = sp.SparseTensor(feats=torch.randn(len(coords), 4, generator=g), coords=coords)
    cond = torch.randn(2, 5, 16, generator=g, requires_grad=True)
    out = model(x, torch.tensor([500.0, 250.0]), cond)
    if sys.argv[3] == "backward":  # spconv's CPU build has no backward (it calls into CUDA)
        out.feats.square().sum().backward()
    print(json.dumps({"used": used, "shape": list(out.feats.shape), "feats": out.feats.detach().flatten().tolist(),
                      "cond_grad": float(cond.grad.abs().sum()) if cond.grad is not None else None}))
''')


def _run(mode, grad="backward"):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    out = subprocess.run([sys.executable, "-c", SCRIPT, CHECKOUT, mode, grad], capture_output=True, text=True, env=env,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_tiny_slat_flow_runs_on_the_fallbacks():
    r = _run("force")
    assert r["used"] == {"spconv": "pure-torch fallback", "flash_attn": "pure-torch fallback"}
    assert r["shape"] == [59, 4]
    feats = r["feats"]
    assert all(abs(v) < 1e6 for v in feats) and max(abs(v) for v in feats) > 1e-3
    assert r["cond_grad"] > 0  # the condition reaches the output through the cross-attention


def test_tiny_slat_flow_same_with_real_spconv():
    pytest.importorskip("spconv.pytorch", reason="spconv not installed (pip install spconv: CPU build)")
    a, b = _run("force", "forward"), _run("auto", "forward")
    assert b["used"]["spconv"] == "installed"
    diff = max(abs(x - y) for x, y in zip(a["feats"], b["feats"]))
    assert diff < 1e-4 * max(1.0, max(abs(x) for x in b["feats"]))


REFINE = textwrap.dedent('''
    import json, sys, types, torch
    from v2m4.generators.trellis_fallbacks import install_fallbacks
    install_fallbacks(force=True)
    pkg = types.ModuleType("trellis"); pkg.__path__ = [sys.argv[1] + "/trellis"]; sys.modules["trellis"] = pkg
    from trellis.models.structured_latent_flow import SLatFlowModel
    from trellis.modules import sparse as sp
    from v2m4.stages.appearance import AppearanceConfig, negative_condition_gradient, refine_negative_condition
    torch.manual_seed(0)
    model = SLatFlowModel(resolution=8, in_channels=4, model_channels=32, cond_channels=16, out_channels=4,
                          num_blocks=2, num_heads=2, patch_size=2, num_io_res_blocks=1, io_block_channels=[16])
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.05)
    model.requires_grad_(False)
    velocity = lambda x, t, c: model(x, torch.full((1,), 1000.0 * t), c)  # TRELLIS's sampler passes 1000 t
    g = torch.Generator().manual_seed(1)
    cells = torch.randperm(512, generator=g)[:40]
    coords = torch.stack([torch.zeros(40, dtype=torch.long), cells // 64, (cells // 8) % 8, cells % 8], -1).int()
    noise = sp.SparseTensor(feats=torch.randn(40, 4, generator=g), coords=coords)
    cond = torch.randn(1, 5, 16, generator=g)
    neg = torch.zeros(1, 5, 16)
    colours = torch.randn(4, 3, generator=g)  # stand-in for decode + render: per-voxel colours of the latent
    plain = lambda n: refine_negative_condition(velocity, lambda x: x.feats.sum(), noise, cond, n, steps=12,
                                                config=AppearanceConfig(t_max=-1)).sample
    frame = torch.sigmoid(plain(torch.randn(1, 5, 16, generator=g)).feats @ colours)
    loss = lambda x0: ((torch.sigmoid(x0.feats @ colours) - frame) ** 2).sum()
    grads = {str(iv): float(negative_condition_gradient(velocity, loss, noise, 0.3, cond, neg, cfg_strength=3.0,
                                                        interval=iv).abs().sum()) for iv in [(0.0, 1.0), (0.5, 1.0)]}
    ref = refine_negative_condition(velocity, loss, noise, cond, neg, steps=12)
    print(json.dumps({"grads": grads, "plain": float(loss(plain(neg))), "refined": float(loss(ref.sample)),
                      "n_adam": len(ref.losses)}))
''')


def test_refinement_on_the_tiny_official_flow_model():
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    out = subprocess.run([sys.executable, "-c", REFINE, CHECKOUT], capture_output=True, text=True, env=env,
                         timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["grads"]["(0.0, 1.0)"] > 0 and r["grads"]["(0.5, 1.0)"] == 0  # t = 0.3: guided only in the first
    assert r["n_adam"] > 0 and r["refined"] < r["plain"]
