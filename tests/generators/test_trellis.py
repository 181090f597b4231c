"""TRELLIS generator backend (issue #9): its contract against a fake of the official API boundary
(trellis.pipelines.TrellisImageTo3DPipeline and the pieces Sec. 4.2's refinement drives), and the one-line
messages for a missing install or missing weights. The official classes themselves: tests/test_trellis_tiny.py."""

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


class FakeSparseTensor:  # trellis.modules.sparse.SparseTensor: feats over coords, arithmetic on feats
    def __init__(self, feats, coords):
        self.feats, self.coords = feats, coords

    def _f(self, o):
        return o.feats if isinstance(o, FakeSparseTensor) else o

    def __add__(self, o):
        return FakeSparseTensor(self.feats + self._f(o), self.coords)

    def __sub__(self, o):
        return FakeSparseTensor(self.feats - self._f(o), self.coords)

    def __mul__(self, o):
        return FakeSparseTensor(self.feats * self._f(o), self.coords)

    __radd__, __rmul__ = __add__, __mul__

    def __rsub__(self, o):
        return FakeSparseTensor(self._f(o) - self.feats, self.coords)


class FakeFlow(torch.nn.Module):
    """A velocity over 4-channel voxel latents, linear in them and in the mean of an (1, L, 8) embedding."""
    in_channels = 4

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(8, 4, generator=torch.Generator().manual_seed(0)))

    def forward(self, x, t, cond):
        return FakeSparseTensor(x.feats * 0.5 + cond.mean(1) @ self.w, x.coords)


BOX_V = torch.tensor([[x, y, z] for x in (-0.3, 0.3) for y in (-0.3, 0.3) for z in (-0.3, 0.3)])
BOX_F = torch.tensor([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1], [2, 3, 7], [2, 7, 6],
                      [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])


def fake_decoder(slat):
    """A box (z-up) whose colour is the latent's mean: geometry fixed, appearance from the latent."""
    col = torch.sigmoid(slat.feats.mean(0)[:3])
    return [FakeMeshResult(BOX_V.clone(), BOX_F.clone(), torch.cat([col.expand(8, 3), torch.zeros(8, 3)], -1))]


class FakePipeline:
    loaded = []

    def __init__(self, path):
        self.path, self.device, self.runs = path, None, []
        self.models = {"slat_flow_model": FakeFlow().requires_grad_(False), "slat_decoder_mesh": fake_decoder}
        self.slat_normalization = {"mean": [0.0] * 4, "std": [1.0] * 4}
        self.slat_sampler_params = {"steps": 12, "cfg_strength": 3.0, "rescale_t": 3.0}
        self.calls = []

    def preprocess_image(self, image):
        self.calls.append("preprocess_image")
        return image

    def get_cond(self, images):
        self.calls.append("get_cond")
        return {"cond": torch.full((1, 3, 8), 0.1), "neg_cond": torch.zeros(1, 3, 8)}

    def sample_sparse_structure(self, cond, num_samples, params):
        self.calls.append(("sample_sparse_structure", params["steps"]))
        return torch.tensor([[0, 1, 1, 1], [0, 1, 2, 1], [0, 2, 1, 1]], dtype=torch.int32)

    def decode_slat(self, slat, formats):
        return {"mesh": fake_decoder(slat)}

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
    modules = types.ModuleType("trellis.modules")
    sparse = types.ModuleType("trellis.modules.sparse")
    sparse.SparseTensor = FakeSparseTensor
    modules.sparse = sparse
    pkg.modules = modules
    monkeypatch.setitem(sys.modules, "trellis", pkg)
    monkeypatch.setitem(sys.modules, "trellis.pipelines", pipes)
    monkeypatch.setitem(sys.modules, "trellis.modules", modules)
    monkeypatch.setitem(sys.modules, "trellis.modules.sparse", sparse)
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
    # what it takes, and the ways forward without it
    assert "weights" in str(e.value) and "CUDA GPU" in str(e.value)
    assert "--generator meshes:DIR" in str(e.value) and "--generator hunyuan" in str(e.value)


def test_installed_without_weights_says_where_they_are_looked_for(fake_trellis, monkeypatch, tmp_path):
    from v2m4.generators.trellis import TrellisGenerator
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(V2M4Error, match="huggingface-cli download JeffreyXiang/TRELLIS-image-large") as e:
        TrellisGenerator(device="cpu")
    assert "\n" not in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(V2M4Error, match="no pipeline.json"):
        TrellisGenerator(str(tmp_path / "empty"), device="cpu")


def test_weights_by_id_without_huggingface_hub_say_what_to_install(fake_trellis, monkeypatch):
    from v2m4.generators.trellis import TrellisGenerator
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(V2M4Error, match="pip install huggingface_hub") as e:
        TrellisGenerator(device="cpu")
    assert "\n" not in str(e.value)


def test_cli_run_with_trellis_missing_exits_2_with_one_line(tmp_path):
    from conftest import DEMO_DIR
    from test_pipeline import v2m4  # in this process, as the console script runs
    r = v2m4("run", DEMO_DIR / "demo" / "frames", "-o", tmp_path / "out", "--generator", "trellis")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "TRELLIS" in r.stderr and not (tmp_path / "out").exists()


def test_refine_drives_the_official_pieces_and_lowers_the_render_loss(fake_trellis):
    # Sec. 4.2 through the adapter: the frame shows the box in mauve; the fake decoder colours it by the latent's
    # mean, so only the negative embedding's optimisation can move the colour towards the frame's
    from v2m4 import render as R
    from v2m4.camera import orbit_camera
    from v2m4.generators.trellis import TrellisGenerator
    from v2m4.stages.appearance import AppearanceConfig
    from v2m4.types import Mesh

    gen = TrellisGenerator(str(fake_trellis), device="cpu", seed=3)
    cam = orbit_camera(torch.tensor([0.6]), torch.tensor([0.3]), torch.tensor([2.5]), torch.zeros(1, 3),
                       fov_deg=40, resolution=(32, 32))
    box = Mesh(BOX_V @ torch.tensor(np.asarray([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=np.float32)).T / 0.6,
               BOX_F, vertex_colors=torch.tensor([0.7, 0.3, 0.6]).expand(8, 3))
    out = R.render(R.context("torch"), box, cam, channels=("rgb", "mask"))
    frame = torch.cat([out["rgb"][0], out["mask"][0, ..., None]], -1)
    plain = gen.refine(frame, 2, cam, config=AppearanceConfig(t_max=-1), render_backend="torch")
    assert gen.last_refinement.losses == []
    mesh = gen.refine(frame, 2, cam, render_backend="torch")
    pipe = FakePipeline.loaded[-1]
    assert pipe.calls[:3] == ["preprocess_image", "get_cond", ("sample_sparse_structure", 25)]
    r = gen.last_refinement
    assert sum(r.iterations) == len(r.losses) > 0 and r.losses[-1] < r.losses[0]
    assert mesh.faces.shape == (12, 3)
    mauve = torch.tensor([0.7, 0.3, 0.6])
    assert (mesh.vertex_colors[0] - mauve).norm() < 0.8 * (plain.vertex_colors[0] - mauve).norm()
