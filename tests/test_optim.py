"""The fits' own Adam: torch.optim.Adam's steps to the bit on the CPU, without importing torch._dynamo."""

import subprocess
import sys

import pytest
import torch

from v2m4.optim import Adam, UniformAdam


def _run(opt_cls, steps=25, device="cpu", **kw):
    g = torch.Generator().manual_seed(0)
    p = torch.randn(7, 3, generator=g).to(device).requires_grad_(True)
    target = torch.randn(7, 3, generator=g).to(device)
    opt = opt_cls([p], lr=0.05, **kw)
    for _ in range(steps):
        opt.zero_grad()
        ((p - target) ** 4).sum().backward()
        opt.step()
    return p.detach()


def test_adam_takes_torchs_steps_to_the_bit():
    assert torch.equal(_run(Adam), _run(torch.optim.Adam))
    # the capturable arithmetic (bias corrections in float32 on the device) is the same update to float rounding
    torch.testing.assert_close(_run(Adam, capturable=True), _run(torch.optim.Adam), atol=1e-4, rtol=0)
    assert not torch.allclose(_run(Adam, steps=5), _run(Adam))  # it moves


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch's capturable Adam)")
def test_capturable_adam_takes_torchs_steps_on_cuda():
    ours = _run(Adam, device="cuda", capturable=True).cpu()
    theirs = _run(torch.optim.Adam, device="cuda", capturable=True, foreach=False).cpu()
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


@pytest.mark.parametrize("cls", [Adam, UniformAdam])
def test_optimiser_state_saves_and_loads(cls):
    """Stopped after 10 steps, saved and loaded into a new optimiser, the next 15 steps are the uninterrupted
    run's (the registration's resume depends on it)."""
    whole = _run(cls, steps=25)
    g = torch.Generator().manual_seed(0)
    p = torch.randn(7, 3, generator=g).requires_grad_(True)
    target = torch.randn(7, 3, generator=g)
    opt = cls([p], lr=0.05)
    for it in range(25):
        if it == 10:
            saved = opt.state_dict()
            opt = cls([p], lr=0.05)
            opt.load_state_dict(saved)
        opt.zero_grad()
        ((p - target) ** 4).sum().backward()
        opt.step()
    assert torch.equal(p.detach(), whole)


def test_the_pipeline_does_not_import_dynamo():
    """Any torch.optim optimiser imports torch._dynamo on construction (seconds, once a process): a short run of
    the stages that optimise must not."""
    code = ("import sys, torch\n"
            "from v2m4.optim import Adam, UniformAdam\n"
            "p = torch.zeros(3, requires_grad=True)\n"
            "for o in (Adam([p], capturable=True), Adam([p]), UniformAdam([p], per_row=True)):\n"
            "    p.sum().backward(); o.step(); o.zero_grad()\n"
            "import v2m4.pipeline, v2m4.cli\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
