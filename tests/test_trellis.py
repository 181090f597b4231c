"""TRELLIS generator backend (issue #9): its contract against a fake of the official API boundary
(trellis.pipelines.TrellisImageTo3DPipeline), and the one-line messages for a missing install or missing weights.
The tiny-model tests of the official classes (issue #9, not written yet) need the official checkout."""

import sys
import types
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from v2m4.errors import V2M4Error


@dataclass
class FakeMeshResult:  # trellis.representations.mesh.MeshExtractResult's fields we read
    vertices: torch.Tensor
    faces: torch.Tensor
    vertex_attrs: torch.Tensor


class FakePipeline:
    loaded = []

    def __init__(self, path):
        self.path, self.device, self.runs = path, None, []

    @classmethod
    def from_pretrained(cls, path):
        p = cls(path)
        cls.loaded.append(p)
        return p

    def to(self, device):
        self.device = device

    def run(self, image, seed, formats, preprocess_image, sparse_structure_sampler_params, slat_sampler_params):
        assert image.mode == "RGBA" and formats == ["mesh"] and preprocess_image
        self.runs.append((seed, sparse_structure_sampler_params["steps"], slat_sampler_params["steps"]))
        # a z-up box, tall along z, in [-0.5, 0.5]^3, red
        v = torch.tensor([[x, y, z] for x in (-0.1, 0.1) for y in (-0.2, 0.2) for z in (-0.5, 0.5)])
        f = torch.tensor([[0, 1, 2], [1, 3, 2], [4, 6, 5], [5, 6, 7]])
        attrs = torch.cat([torch.tensor([[1.0, 0.0, 0.0]]).expand(8, 3), torch.zeros(8, 3)], -1)
        return {"mesh": [FakeMeshResult(v, f, attrs)]}


@pytest.fixture(autouse=True)
def no_fallback_modules(monkeypatch):
    """install_fallbacks registers modules and environment switches for the whole process: stub it here (it is
    tested on its own, in a subprocess, in test_sparse_ops.py)."""
    calls = []
    monkeypatch.setattr("v2m4.generators.trellis_fallbacks.install_fallbacks",
                        lambda **kw: calls.append(kw) or {"spconv": "pure-torch fallback", "flash_attn": "installed"})
    return calls


@pytest.fixture
def fake_trellis(monkeypatch, tmp_path):
    pkg = types.ModuleType("trellis")
    pipes = types.ModuleType("trellis.pipelines")
    pipes.TrellisImageTo3DPipeline = FakePipeline
    pkg.pipelines = pipes
    monkeypatch.setitem(sys.modules, "trellis", pkg)
    monkeypatch.setitem(sys.modules, "trellis.pipelines", pipes)
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "pipeline.json").write_text("{}")
    FakePipeline.loaded.clear()
    return weights


def test_generator_converts_the_official_mesh_to_our_convention(fake_trellis):
    from v2m4.generators.trellis import TrellisGenerator
    gen = TrellisGenerator(str(fake_trellis), device="cpu", seed=3)
    pipe = FakePipeline.loaded[-1]
    assert pipe.path == str(fake_trellis) and str(pipe.device) == "cpu"
    m = gen.generate(torch.rand(16, 16, 4), 5)
    ext = m.vertices.amax(0) - m.vertices.amin(0)
    assert torch.argmax(ext) == 1 and float(ext.max()) == pytest.approx(1.0)  # the tall z axis is now +Y
    assert torch.allclose((m.vertices.amax(0) + m.vertices.amin(0)) / 2, torch.zeros(3), atol=1e-6)
    assert m.faces.shape == (4, 3) and torch.allclose(m.vertex_colors, torch.tensor([1.0, 0, 0]).expand(8, 3))
    # a rotation, not a reflection: triangles keep their winding
    from v2m4.generators.trellis import Z_UP_TO_Y_UP
    assert np.linalg.det(Z_UP_TO_Y_UP) == pytest.approx(1.0)
    assert pipe.runs == [(8, 25, 25)]  # seed + frame index; 25 steps per stage (Appendix A)
    assert gen.extensions == {"spconv": "pure-torch fallback", "flash_attn": "installed"}


def test_missing_trellis_is_one_line_saying_what_to_install(monkeypatch):
    from v2m4.generators.trellis import TrellisGenerator
    monkeypatch.setitem(sys.modules, "trellis", None)
    monkeypatch.setitem(sys.modules, "trellis.pipelines", None)
    monkeypatch.delenv("V2M4_TRELLIS", raising=False)
    with pytest.raises(V2M4Error, match="github.com/microsoft/TRELLIS") as e:
        TrellisGenerator(device="cpu")
    assert "\n" not in str(e.value)


def test_installed_without_weights_says_where_they_are_looked_for(fake_trellis, monkeypatch, tmp_path):
    from v2m4.generators.trellis import TrellisGenerator
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(V2M4Error, match="huggingface-cli download JeffreyXiang/TRELLIS-image-large") as e:
        TrellisGenerator(device="cpu")
    assert "\n" not in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(V2M4Error, match="no pipeline.json"):
        TrellisGenerator(str(tmp_path / "empty"), device="cpu")


def test_cli_run_with_trellis_missing_exits_2_with_one_line(tmp_path):
    import subprocess
    from conftest import DEMO_DIR
    r = subprocess.run([sys.executable, "-m", "v2m4.cli", "run", str(DEMO_DIR / "demo" / "frames"), "-o",
                        str(tmp_path / "out"), "--generator", "trellis"], capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "TRELLIS" in r.stderr and not (tmp_path / "out").exists()
