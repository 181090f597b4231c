"""Hunyuan3D-2 over PyPI's hy3dgen: the package's real model classes (flow DiT, shape VAE with its volume decoder,
DINOv2 image encoder), built from tiny configs with random weights and saved as a weights folder in the official
layout, run through our generator end to end on CPU (image in, canonical colourless mesh out); the one-line
messages for a missing package, missing weights and a missing GPU; batched generation in the generation stage,
with its per-frame checkpoints and resume."""

import importlib.util

import pytest
import torch

from v2m4.checkpoint import Checkpoints
from v2m4.errors import V2M4Error
from v2m4.generators import make_generator
from v2m4.stages.generate import GenerationConfig, generate_keyframes, mesh_problem
from v2m4.types import Frames, Mesh

HAVE_HY3DGEN = importlib.util.find_spec("hy3dgen") is not None
needs_hy3dgen = pytest.mark.skipif(not HAVE_HY3DGEN, reason="hy3dgen is not installed (pip install 'v2m4[hunyuan]')")

# the package's config.yaml layout, every size tiny: DiT 2 blocks of width 32, VAE 16 latents, DINOv2 1 layer
TINY = {
    "model": {"target": "hy3dgen.shapegen.models.Hunyuan3DDiT",
              "params": {"in_channels": 8, "context_in_dim": 16, "hidden_size": 32, "mlp_ratio": 2.0, "num_heads": 2,
                         "depth": 1, "depth_single_blocks": 1, "axes_dim": [16], "theta": 10000, "qkv_bias": True,
                         "guidance_embed": False}},
    "vae": {"target": "hy3dgen.shapegen.models.ShapeVAE",
            "params": {"num_latents": 16, "embed_dim": 8, "width": 32, "heads": 2, "num_decoder_layers": 1,
                       "num_freqs": 4, "qk_norm": True, "scale_factor": 1.0}},
    "conditioner": {"target": "hy3dgen.shapegen.models.SingleImageEncoder",
                    "params": {"main_image_encoder": {"type": "DinoImageEncoder", "kwargs": {
                        "config": {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                                   "intermediate_size": 32, "image_size": 28, "patch_size": 14},
                        "image_size": 28, "use_cls_token": True}}}},
    "scheduler": {"target": "hy3dgen.shapegen.schedulers.FlowMatchEulerDiscreteScheduler",
                  "params": {"num_train_timesteps": 1000}},
    "image_processor": {"target": "hy3dgen.shapegen.preprocessors.ImageProcessorV2", "params": {"size": 64}},
}
FAST = {"num_inference_steps": 3, "octree_resolution": 16, "num_chunks": 4096}


def _write_tiny(folder, seed=0):
    """A weights folder as the official one: config.yaml and model.fp16.safetensors with model./vae./conditioner.
    prefixes, from the package's own classes with random weights."""
    import safetensors.torch
    import yaml

    from v2m4.generators.hunyuan import _import_shapegen
    _import_shapegen()
    from hy3dgen.shapegen.pipelines import instantiate_from_config

    folder.mkdir(parents=True)
    torch.manual_seed(seed)
    parts = {k: instantiate_from_config(TINY[k]) for k in ("model", "vae", "conditioner")}
    state = {f"{k}.{n}": t.detach().contiguous().half() for k, m in parts.items() for n, t in m.state_dict().items()}
    safetensors.torch.save_file(state, str(folder / "model.fp16.safetensors"))
    (folder / "config.yaml").write_text(yaml.safe_dump(TINY))
    return folder


def _image(size=64, box=(16, 48, 20, 44), colour=(0.8, 0.4, 0.2)):
    img = torch.zeros(size, size, 4)
    y0, y1, x0, x1 = box
    img[y0:y1, x0:x1, :3] = torch.tensor(colour)
    img[y0:y1, x0:x1, 3] = 1
    return img


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    if not HAVE_HY3DGEN:
        pytest.skip("hy3dgen is not installed (pip install 'v2m4[hunyuan]')")
    return _write_tiny(tmp_path_factory.mktemp("hy") / "hunyuan3d-dit-tiny")


@pytest.fixture(scope="module")
def gen(tiny_dir):
    g = make_generator(f"hunyuan:{tiny_dir}", 1, device="cpu", seed=3)
    assert g.call["num_inference_steps"] == 50  # a folder not named -turbo: the package's default schedule
    g.call.update(FAST)
    return g


def _assert_canonical(m: Mesh):
    assert mesh_problem(m) is None
    assert m.faces.shape[0] > 0 and bool(torch.isfinite(m.vertices).all())
    assert int(m.faces.min()) >= 0 and int(m.faces.max()) < m.vertices.shape[0]
    lo, hi = m.vertices.amin(0), m.vertices.amax(0)
    torch.testing.assert_close((hi - lo).max(), torch.tensor(1.0), atol=1e-5, rtol=0)
    torch.testing.assert_close((hi + lo) / 2, torch.zeros(3), atol=1e-5, rtol=0)
    assert m.vertex_colors is None and m.texture is None  # the shape stage gives no appearance


@needs_hy3dgen
def test_tiny_real_models_give_a_canonical_mesh(gen):
    m = gen.generate(_image(), 0)
    _assert_canonical(m)
    again = gen.generate(_image(), 0)  # seed + index: the same noise, the same mesh
    torch.testing.assert_close(again.vertices, m.vertices)


@needs_hy3dgen
def test_a_batch_gives_each_frame_its_own_mesh_and_drops_empty_images(gen):
    a, b = _image(), _image(box=(8, 56, 24, 40), colour=(0.1, 0.7, 0.3))
    batch = gen.generate_batch([a, torch.zeros(64, 64, 4), b], [0, 1, 2])
    assert mesh_problem(batch[1]) == "it has no faces"
    for m in (batch[0], batch[2]):
        _assert_canonical(m)
    alone = gen.generate(b, 2)
    assert alone.faces.shape == batch[2].faces.shape
    torch.testing.assert_close(alone.vertices, batch[2].vertices, atol=1e-4, rtol=0)


@needs_hy3dgen
def test_generation_stage_says_there_is_no_appearance(gen):
    frames = Frames(torch.stack([_image(), _image(box=(10, 50, 20, 44))]), fps=10)
    res = generate_keyframes(frames, torch.tensor([0, 1]), gen, GenerationConfig(max_faces=200, batch_size=2))
    assert res.keyframes.tolist() == [0, 1] and not res.has_appearance  # the pipeline then says so, once
    assert all(m.faces.shape[0] <= 200 for m in res.meshes)  # the working resolution, as for every generator


@needs_hy3dgen
def test_turbo_folder_loads_its_flashvdm_vae(tmp_path):
    import safetensors.torch
    import yaml

    from v2m4.generators.hunyuan import HunyuanGenerator

    dit = _write_tiny(tmp_path / "hunyuan3d-dit-tiny-turbo")
    vae = tmp_path / "hunyuan3d-vae-tiny-turbo"
    vae.mkdir()
    (vae / "config.yaml").write_text(yaml.safe_dump({"target": TINY["vae"]["target"], "params": TINY["vae"]["params"]}))
    full = safetensors.torch.load_file(str(dit / "model.fp16.safetensors"))
    safetensors.torch.save_file({k[4:]: v for k, v in full.items() if k.startswith("vae.")},
                                str(vae / "model.fp16.safetensors"))
    g = HunyuanGenerator(str(dit), device="cpu", octree_resolution=16, num_chunks=4096)
    assert g.call["num_inference_steps"] == 5
    assert type(g.pipe.vae.volume_decoder).__name__ == "FlashVDMVolumeDecoding"
    _assert_canonical(g.generate(_image(), 0))  # its decoder (one level below 63 cells), then marching cubes


def _one_line(exc):
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_missing_package_is_one_line_saying_what_to_install(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_hy3dgen(name, *args, **kwargs):
        if name == "hy3dgen" or name.startswith("hy3dgen."):
            raise ImportError(f"No module named {name!r}", name=name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_hy3dgen)
    with pytest.raises(V2M4Error) as exc:
        make_generator("hunyuan", 1)
    assert "pip install 'v2m4[hunyuan]'" in _one_line(exc)


def test_missing_weights_say_what_was_looked_for(tmp_path, monkeypatch):
    from v2m4.generators.hunyuan import resolve_model

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(V2M4Error) as exc:
        resolve_model(str(empty))
    assert "has no config.yaml" in _one_line(exc) and str(empty) in str(exc.value)
    (empty / "config.yaml").write_text("model: {}\n")
    with pytest.raises(V2M4Error) as exc:
        resolve_model(str(empty))
    assert "model.fp16.safetensors" in _one_line(exc)

    hub = pytest.importorskip("huggingface_hub.constants", reason="huggingface_hub finds weights by repo id")
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HY3DGEN_MODELS", str(tmp_path / "hy3dgen"))
    with pytest.raises(V2M4Error) as exc:
        resolve_model("2mini-turbo")
    msg = _one_line(exc)
    assert "tencent/Hunyuan3D-2mini" in msg and "hunyuan3d-dit-v2-mini-turbo" in msg
    assert "huggingface-cli download tencent/Hunyuan3D-2mini --include 'hunyuan3d-dit-v2-mini-turbo/*'" in msg
    assert "hunyuan3d-vae-v2-mini-turbo" in msg
    with pytest.raises(V2M4Error) as exc:
        resolve_model("someone/else")  # an unknown repo needs its subfolder
    assert "REPO_ID/SUBFOLDER" in _one_line(exc)


@needs_hy3dgen
def test_weights_missing_through_the_spec_and_gpu_missing_are_one_line(tiny_dir, tmp_path, monkeypatch):
    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.raises(V2M4Error) as exc:
        make_generator(f"hunyuan:{empty}", 1, device="cpu")
    assert "no config.yaml" in _one_line(exc)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(V2M4Error) as exc:
        make_generator(f"hunyuan:{tiny_dir}", 1, device="cuda")
    assert "CUDA GPU" in _one_line(exc)


class _Counting:
    """A generator with ``generate_batch`` that records its calls; frame 2 is a broken mesh file."""

    name, fov_deg = "counting", 40.0

    def __init__(self):
        self.calls = []

    def _mesh(self, t):
        if t == 2:
            raise V2M4Error("frame 2's mesh is broken")
        v = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1.0]]) * (1 + t)
        return Mesh(v, torch.tensor([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]]))

    def generate(self, image, index):
        self.calls.append(("one", index))
        return self._mesh(index)

    def generate_batch(self, images, indices):
        self.calls.append(("batch", list(indices)))
        return [self._mesh(t) for t in indices]


def test_generation_batches_keep_per_frame_checkpoints_and_resume(tmp_path):
    frames = Frames(torch.rand(6, 8, 8, 4), fps=10)
    key = torch.tensor([0, 1, 2, 3, 5])
    cfg = GenerationConfig(max_faces=None, batch_size=2)
    g = _Counting()
    with pytest.warns(UserWarning, match="frame 2"):
        res = generate_keyframes(frames, key, g, cfg, store=Checkpoints(tmp_path))
    # a failing batch is generated again frame by frame, costing its bad frame only
    assert g.calls == [("batch", [0, 1]), ("batch", [2, 3]), ("one", 2), ("one", 3), ("one", 5)]
    assert res.keyframes.tolist() == [0, 1, 3, 5]
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == [f"gen_{t:05d}.npz" for t in (0, 1, 2, 3, 5)]
    assert [p.name for p in tmp_path.glob("*.why")] == ["gen_00002.why"]  # the skipped frame's reason
    (tmp_path / "gen_00003.npz").unlink()  # as if the run had stopped before frame 3's batch ended
    g2 = _Counting()
    with pytest.warns(UserWarning, match="frame 2"):  # the skipped frame is reported again
        again = generate_keyframes(frames, key, g2, cfg, store=Checkpoints(tmp_path, resume=True))
    assert g2.calls == [("one", 3)]
    assert again.keyframes.tolist() == [0, 1, 3, 5]
    g3 = _Counting()
    generate_keyframes(frames, key[:2], g3, GenerationConfig(max_faces=None))  # batch_size 1: generate, as before
    assert g3.calls == [("one", 0), ("one", 1)]
