"""Pure-PyTorch sparse ops for TRELLIS (issue 9): submanifold convolution and variable-length attention against
reference implementations (a dense conv3d on the voxel grid, per-sequence softmax attention, and spconv itself
where it is installed: `pip install spconv` has a CPU build)."""

import math

import pytest
import torch

from v2m4.generators.sparse import neighbour_map, submanifold_conv3d, varlen_attention


def _sites(n_per_batch=(40, 25), res=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    coords = []
    for b, n in enumerate(n_per_batch):
        cells = torch.randperm(res ** 3, generator=g)[:n]
        xyz = torch.stack([cells // (res * res), (cells // res) % res, cells % res], -1)
        coords.append(torch.cat([torch.full((n, 1), b), xyz], 1))
    return torch.cat(coords).int(), g


def _dense_reference(feats, coords, weight, bias, res, dilation=1):
    """Densify, conv3d with 'same' padding, read back at the active sites: a submanifold conv by definition.
    A 1 x 1 x 1 weight is read as spconv reads it (its memory as a (Cin, Cout) matrix)."""
    B = int(coords[:, 0].max()) + 1
    cin = feats.shape[1]
    grid = torch.zeros(B, cin, res, res, res, dtype=feats.dtype)
    c = coords.long()
    grid[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]] = feats
    k = weight.shape[1]
    if k == 1:
        weight = weight.reshape(cin, -1).T.reshape(-1, 1, 1, 1, cin)
    w = weight.permute(0, 4, 1, 2, 3)  # (out, in, kx, ky, kz)
    out = torch.nn.functional.conv3d(grid, w, bias, padding=dilation * (k // 2), dilation=dilation)
    return out[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]]


@pytest.mark.parametrize("kernel,dilation", [(3, 1), (3, 2), (1, 1)])
def test_submanifold_conv_matches_dense_conv3d(kernel, dilation):
    coords, g = _sites()
    feats = torch.randn(len(coords), 5, generator=g, dtype=torch.float64)
    weight = torch.randn(7, kernel, kernel, kernel, 5, generator=g, dtype=torch.float64)
    bias = torch.randn(7, generator=g, dtype=torch.float64)
    got = submanifold_conv3d(feats, coords, weight, bias, dilation=dilation)
    torch.testing.assert_close(got, _dense_reference(feats, coords, weight, bias, 6, dilation))


def test_submanifold_conv_gradients_match_dense():
    coords, g = _sites((30,), res=5)
    feats = torch.randn(len(coords), 3, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 3, 3, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    a = submanifold_conv3d(feats, coords, weight)
    b = _dense_reference(feats, coords, weight, None, 5)
    w = torch.randn(a.shape, generator=g, dtype=torch.float64)
    ga = torch.autograd.grad((a * w).sum(), (feats, weight))
    gb = torch.autograd.grad((b * w).sum(), (feats, weight))
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y)


def test_neighbour_map_finds_exactly_the_active_neighbours():
    coords = torch.tensor([[0, 1, 1, 1], [0, 1, 1, 2], [0, 2, 1, 1], [1, 1, 1, 2], [0, 0, 0, 0]], dtype=torch.int32)
    nbr = neighbour_map(coords, (3, 3, 3))
    assert nbr.shape == (27, 5)
    centre = 13  # offset (0, 0, 0)
    assert nbr[centre].tolist() == [0, 1, 2, 3, 4]
    # site 0 at (1,1,1) in batch 0: +z is site 1, +x is site 2; batch 1's (1,1,2) is not its neighbour
    assert nbr[centre + 1, 0] == 1 and nbr[centre + 9, 0] == 2
    assert nbr[centre + 1, 3] == -1
    # site 4 at the origin: every offset with a negative component falls outside the grid
    assert (nbr[:, 4] >= 0).sum() == 1 + (nbr[[13 + 9 * 1 + 3 * 1 + 1], 4] >= 0).sum()


def test_varlen_attention_matches_per_sequence_softmax():
    g = torch.Generator().manual_seed(1)
    q_lens, kv_lens = [5, 1, 9], [7, 3, 2]
    H, C, Cv = 3, 8, 6
    q = torch.randn(sum(q_lens), H, C, generator=g, dtype=torch.float64)
    k = torch.randn(sum(kv_lens), H, C, generator=g, dtype=torch.float64)
    v = torch.randn(sum(kv_lens), H, Cv, generator=g, dtype=torch.float64)
    got = varlen_attention(q, k, v, q_lens, kv_lens)
    outs, qs, ks = [], 0, 0
    for lq, lk in zip(q_lens, kv_lens):
        qi, ki, vi = q[qs:qs + lq], k[ks:ks + lk], v[ks:ks + lk]
        att = torch.softmax(torch.einsum("qhc,khc->hqk", qi, ki) / math.sqrt(C), -1)
        outs.append(torch.einsum("hqk,khc->qhc", att, vi))
        qs, ks = qs + lq, ks + lk
    torch.testing.assert_close(got, torch.cat(outs))
    one = varlen_attention(q[:5], k[:7], v[:7], [5], [7])
    torch.testing.assert_close(one, outs[0])
    with pytest.raises(ValueError):
        varlen_attention(q, k, v, q_lens, [7, 0, 5])


def test_submanifold_conv_matches_spconv():
    spconv = pytest.importorskip("spconv.pytorch", reason="spconv not installed (pip install spconv: CPU build)")
    if getattr(spconv, "__v2m4_fallback__", False):
        pytest.skip("spconv here is v2m4's own stand-in, not the package")
    torch.manual_seed(0)
    coords, g = _sites((50, 35), res=7)
    feats = torch.randn(len(coords), 6, generator=g)
    for k in (3, 1):
        conv = spconv.SubMConv3d(6, 9, k, bias=True)
        with torch.no_grad():
            conv.weight.normal_()
            conv.bias.normal_()
        x = spconv.SparseConvTensor(feats, coords, [7, 7, 7], 2)
        want = conv(x).features
        got = submanifold_conv3d(feats, coords, conv.weight.detach(), conv.bias.detach())
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


FALLBACK_SCRIPT = """
import json, os, sys, torch
for name in ("spconv", "spconv.pytorch", "flash_attn", "kaolin"):
    sys.modules[name] = None  # as if not installed
from v2m4.generators.trellis_fallbacks import install_fallbacks
from v2m4.generators.sparse import submanifold_conv3d, varlen_attention
used = install_fallbacks()
import spconv.pytorch as spconv
import flash_attn
torch.manual_seed(0)
coords = torch.tensor([[0, 1, 1, 1], [0, 1, 1, 2], [0, 2, 1, 1], [1, 3, 3, 3], [1, 3, 3, 2]], dtype=torch.int32)
x = spconv.SparseConvTensor(torch.randn(5, 4), coords, [5, 5, 5], 2)
conv = spconv.SubMConv3d(4, 3, 3, indice_key="k")
y = conv(x)
ref = submanifold_conv3d(x.features, coords, conv.weight, conv.bias)
q, k, v = torch.randn(5, 2, 8), torch.randn(6, 2, 8), torch.randn(6, 2, 8)
cu_q, cu_k = torch.tensor([0, 2, 5]).int(), torch.tensor([0, 4, 6]).int()
a = flash_attn.flash_attn_varlen_func(q, k, v, cu_q, cu_k, 3, 4)
from kaolin.utils.testing import check_tensor
checks = [check_tensor(torch.zeros(4, 3), (None, 3), throw=False), check_tensor(torch.zeros(4, 2), (None, 3),
          throw=False), check_tensor(torch.zeros(2), (2,), dtype=torch.float32)]
print(json.dumps({"used": used, "env": [os.environ.get(n) for n in ("SPARSE_BACKEND", "SPARSE_ATTN_BACKEND",
                  "ATTN_BACKEND", "SPCONV_ALGO")], "conv_err": float((y.features - ref).abs().max()),
                  "cached": "k" in [key[0] for key in x.indice_dict],
                  "attn_err": float((a - varlen_attention(q, k, v, [2, 3], [4, 2])).abs().max()),
                  "dense": list(x.dense().shape), "checks": checks}))
"""


def test_install_fallbacks_registers_stand_ins_for_missing_extensions():
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k not in ("SPARSE_BACKEND", "SPARSE_ATTN_BACKEND", "ATTN_BACKEND",
                                                            "SPCONV_ALGO")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-c", FALLBACK_SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["used"] == {"spconv": "pure-torch fallback", "flash_attn": "pure-torch fallback",
                         "kaolin": "pure-torch fallback"}
    assert r["checks"] == [True, False, True]
    assert r["env"] == ["spconv", "flash_attn", "sdpa", "native"]
    assert r["conv_err"] == 0 and r["attn_err"] < 1e-6 and r["cached"]
    assert r["dense"] == [2, 4, 5, 5, 5]
