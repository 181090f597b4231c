"""Learned adapters (issue #10) against tiny randomly initialised networks with the libraries' interfaces, or a
fake at the library boundary where the library cannot be built without its weights (DreamSim, DUSt3R) or cannot
be imported on this machine: batching, device placement and the weight-missing messages."""

import sys
import types

import pytest
import torch

from v2m4.learned import LearnedUnavailable, resolve_scorer
from v2m4.learned.clip import CLIPSimilarity, load_clip
from v2m4.learned.dreamsim import DreamSimScorer, load_dreamsim
from v2m4.learned.lpips import LPIPSScorer, load_lpips
from v2m4.learned.pointmap import Dust3rPointMaps, load_dust3r


class TinyEmbed(torch.nn.Module):
    """DreamSim's interface: model(a, b) -> (B,) distance (1 - cosine of embeddings)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 5, stride=4)
        self.calls = []

    def embed(self, x):
        return torch.nn.functional.normalize(self.conv(x).mean((2, 3)), dim=-1)

    def forward(self, a, b):
        assert a.shape == b.shape and a.shape[1:] == (3, 224, 224)
        self.calls.append(a.shape[0])
        return 1 - (self.embed(a) * self.embed(b)).sum(-1)


def renders(n=5, res=32):
    g = torch.Generator().manual_seed(1)
    rgb = torch.rand(n, res, res, 3, generator=g)
    mask = (torch.rand(n, res, res, generator=g) > 0.5).float()
    frame = torch.cat([torch.rand(res, res, 3, generator=g), torch.ones(res, res, 1)], -1)
    return rgb, mask, frame


def test_dreamsim_scorer_batches_and_adds_the_mask_term():
    net = TinyEmbed()
    rgb, mask, frame = renders()
    small = DreamSimScorer(net, batch=2)(rgb, mask, frame)
    assert net.calls == [2, 2, 1]
    whole = DreamSimScorer(net, batch=64)(rgb, mask, frame)
    assert torch.allclose(small, whole, atol=1e-6) and small.shape == (5,)
    # the same render scored against itself: only the mask term is left
    same = torch.cat([rgb[0], mask[0, ..., None]], -1)
    s = DreamSimScorer(net, mask_weight=0.1)(rgb[:1], mask[:1], same)
    assert float(s.detach()) == pytest.approx(0.0, abs=1e-5)
    assert DreamSimScorer(net, mask_weight=0.1)(rgb[:1], 1 - mask[:1], same) > s + 0.01


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU for the device-placement case")
def test_dreamsim_scorer_runs_the_model_on_its_device():
    net = TinyEmbed().cuda()
    rgb, mask, frame = renders()
    assert DreamSimScorer(net)(rgb, mask, frame).device.type == "cpu"
    assert DreamSimScorer(net)(rgb.cuda(), mask.cuda(), frame.cuda()).device.type == "cuda"


def test_dreamsim_loader_names_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "dreamsim", None)  # not installed
    with pytest.raises(LearnedUnavailable, match="pip install dreamsim"):
        load_dreamsim(cache_dir=str(tmp_path))
    fake = types.ModuleType("dreamsim")
    seen = {}

    def dreamsim(pretrained, device, cache_dir, dreamsim_type):
        seen.update(device=device, cache_dir=cache_dir, type=dreamsim_type)
        return TinyEmbed(), None

    fake.dreamsim = dreamsim
    monkeypatch.setitem(sys.modules, "dreamsim", fake)
    with pytest.raises(LearnedUnavailable, match="ensemble_lora/adapter_config.json"):
        load_dreamsim(cache_dir=str(tmp_path))
    for f in ("ensemble_lora/adapter_config.json", "dino_vitb16_pretrain.pth", "clip_vitb16_pretrain.pth.tar",
              "open_clip_vitb16_pretrain.pth.tar"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("x")
    scorer = load_dreamsim("cpu", cache_dir=str(tmp_path))
    assert seen == {"device": "cpu", "cache_dir": str(tmp_path), "type": "ensemble"}
    rgb, mask, frame = renders(3)
    assert scorer(rgb, mask, frame).shape == (3,)


def test_auto_scorer_falls_back_to_the_weight_free_one_with_a_note(monkeypatch, tmp_path):
    monkeypatch.setenv("V2M4_WEIGHTS", str(tmp_path))
    scorer, notes = resolve_scorer("auto")
    assert scorer.name == "silhouette-colour"
    assert len(notes) == 1 and notes[0].startswith("DreamSim:")
    with pytest.raises(LearnedUnavailable):
        resolve_scorer("dreamsim")


class FakeLPIPS(torch.nn.Module):
    """lpips.LPIPS's structure where load_lpips touches it: net.slice1..5 holding vgg.features layers by index."""

    def __init__(self, net="vgg", pretrained=True, pnet_rand=False, verbose=True):
        super().__init__()
        assert net == "vgg" and pnet_rand
        self.net = torch.nn.Module()
        idx = 0
        for k in range(1, 6):
            sl = torch.nn.Sequential()
            sl.add_module(str(idx), torch.nn.Conv2d(3 if idx == 0 else 4, 4, 3, padding=1))
            sl.add_module(str(idx + 1), torch.nn.ReLU())
            idx += 2
            setattr(self.net, f"slice{k}", sl)

    def forward(self, a, b):
        assert float(a.min()) >= -1 and float(a.max()) <= 1
        fa, fb = a, b
        d = 0
        for k in range(1, 6):
            sl = getattr(self.net, f"slice{k}")
            fa, fb = sl(fa), sl(fb)
            d = d + ((fa - fb) ** 2).mean((1, 2, 3))
        return d.view(-1, 1, 1, 1)


def test_lpips_loader_loads_the_vgg_file_into_the_slices(tmp_path, monkeypatch):
    fake = types.ModuleType("lpips")
    fake.LPIPS = FakeLPIPS
    monkeypatch.setitem(sys.modules, "lpips", fake)
    with pytest.raises(LearnedUnavailable, match="does not exist"):
        load_lpips(weights=str(tmp_path / "nope.pth"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(LearnedUnavailable, match="vgg16-397923af.pth"):
        load_lpips()
    ref = FakeLPIPS(pnet_rand=True)
    state = {f"features.{k}": v for s in range(1, 6) for k, v in getattr(ref.net, f"slice{s}").state_dict().items()}
    torch.save(state, tmp_path / "vgg.pth")
    scorer = load_lpips(weights=str(tmp_path / "vgg.pth"), batch=2)
    for s in range(1, 6):
        for k, v in getattr(scorer.net.net, f"slice{s}").state_dict().items():
            assert torch.equal(v, getattr(ref.net, f"slice{s}").state_dict()[k])
    rgb, mask, frame = renders()
    d = scorer(rgb, mask, frame)
    assert d.shape == (5,) and torch.allclose(d, LPIPSScorer(scorer.net, batch=64)(rgb, mask, frame))
    assert float(scorer.distance(rgb[:2], rgb[:2]).abs().max()) == 0


class TinyCLIP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 16, 7, stride=7)

    def encode_image(self, x):
        assert x.shape[1:] == (3, 224, 224)
        return self.conv(x).mean((2, 3))


def test_clip_similarity_and_its_missing_weights_message(monkeypatch):
    fake = types.ModuleType("open_clip")

    def create_model(name, pretrained, device, cache_dir):
        if pretrained == "laion2b_s39b_b160k":
            raise RuntimeError("offline")
        return TinyCLIP().to(device)

    fake.create_model = create_model
    monkeypatch.setitem(sys.modules, "open_clip", fake)
    with pytest.raises(LearnedUnavailable, match="ViT-bigG-14"):
        load_clip()
    clip = load_clip(checkpoint="/some/file.pt", batch=2)
    a = torch.rand(5, 40, 40, 3)
    s = clip.similarity(a, a)
    assert s.shape == (5,) and torch.allclose(s, torch.ones(5), atol=1e-5)
    assert float(clip.similarity(a, 1 - a).mean()) < 0.999
    assert torch.allclose(CLIPSimilarity(clip.model, batch=64).embed(a), clip.embed(a), atol=1e-6)


class FakeDust3r(torch.nn.Module):
    """DUSt3R's pair interface; points are known: the frame at depth 2 (pair scale s_i = 1 + i/10), render i at
    depth 2 + i, in the frame's camera."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.batches = []

    def forward(self, v1, v2):
        b, _, S, _ = v1["img"].shape
        self.batches.append(b)
        idx = torch.tensor(v2["idx"], dtype=torch.float32)
        scale = (1 + idx / 10).view(-1, 1, 1, 1)
        base = torch.ones(b, S, S, 3)
        p1 = {"pts3d": base * torch.tensor([0.0, 0.0, 2.0]) * scale, "conf": torch.ones(b, S, S)}
        p2 = {"pts3d_in_other_view": base * torch.stack([torch.zeros_like(idx), torch.zeros_like(idx), 2 + idx], -1)
              .view(-1, 1, 1, 3) * scale, "conf": torch.full((b, S, S), 2.0)}
        return p1, p2


def test_dust3r_point_maps_put_every_image_in_the_frames_camera():
    model = FakeDust3r()
    pm = Dust3rPointMaps(model, size=16, batch=2)
    pts, conf = pm(torch.rand(5, 24, 24, 3))
    assert model.batches == [2, 2]
    assert pts.shape == (5, 24, 24, 3) and conf.shape == (5, 24, 24)
    # pair scales are matched to the first pair's (s_1 = 1.1): the frame at depth 2 * 1.1, render i at (2 + i) * 1.1
    assert torch.allclose(pts[0, ..., 2], torch.full((24, 24), 2.2), atol=1e-5)
    for i in range(1, 5):
        assert torch.allclose(pts[i, ..., 2], torch.full((24, 24), (2 + i) * 1.1), atol=1e-4)


def test_dust3r_loader_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "dust3r", None)
    monkeypatch.setitem(sys.modules, "dust3r.model", None)
    with pytest.raises(LearnedUnavailable, match="github.com/naver/dust3r"):
        load_dust3r()
    with pytest.raises(LearnedUnavailable, match="has no dust3r/ package folder"):
        load_dust3r(checkout=str(tmp_path))


def test_temporal_median_removes_a_one_frame_flicker_and_keeps_motion():
    from v2m4.io.background import smooth_alpha
    a = torch.zeros(7, 8, 16)
    for t in range(7):
        a[t, 2:5, t: t + 6] = 1  # a 6-pixel block moving one pixel per frame
    flick = a.clone()
    flick[3] = 0                  # the model lost the object in one frame
    flick[5, 7, 15] = 1           # and caught a speck in another
    s = smooth_alpha(flick, 1)
    # restored where both neighbours see it: all but the leading and trailing column (6 of 18 pixels)
    assert float((s[3] - a[3]).abs().sum()) == 6 and float((flick[3] - a[3]).abs().sum()) == 18
    assert float(s[5, 7, 15]) == 0
    assert torch.equal(smooth_alpha(a, 0), a)


def test_background_removal_through_rembg_is_smoothed_and_reports_missing_pieces(monkeypatch):
    from PIL import Image
    import numpy as np
    from v2m4.errors import V2M4Error
    from v2m4.io.background import remove_background
    from v2m4.types import Frames

    monkeypatch.setitem(sys.modules, "rembg", None)
    frames = Frames(torch.rand(5, 16, 16, 4), fps=10.0)
    with pytest.raises(V2M4Error, match="pip install"):
        remove_background(frames)
    fake = types.ModuleType("rembg")
    calls = []

    def new_session(model):
        if model != "u2net":
            raise FileNotFoundError("no weights")
        return "session"

    def remove(img, session):
        calls.append(session)
        a = np.asarray(img)
        alpha = np.zeros(a.shape[:2], np.uint8)
        alpha[4:12, 4:12] = 255 if len(calls) != 3 else 0  # frame 2 flickers out
        return Image.fromarray(np.dstack([a, alpha]))

    fake.new_session, fake.remove = new_session, remove
    monkeypatch.setitem(sys.modules, "rembg", fake)
    with pytest.raises(V2M4Error, match="U2NET_HOME"):
        remove_background(frames, model="isnet")
    out = remove_background(frames, temporal_radius=1)
    assert calls == ["session"] * 5
    assert float(out.rgba[2, 8, 8, 3]) == 1.0 and float(out.rgba[2, 0, 0, 3]) == 0.0
    assert torch.equal(out.rgba[..., :3], frames.rgb)  # colours stay the input's, unquantised


def test_frechet_distance_and_fvd_with_a_fake_detector():
    import numpy as np
    from v2m4.metrics.learned import frechet_distance, fvd

    g = np.random.default_rng(0)
    a = g.normal(size=(400, 3))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(a, a + [2.0, 0, 0]) == pytest.approx(4.0, abs=1e-6)

    class Detector(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))
            self.shapes = []

        def forward(self, x, rescale, resize, return_features):
            assert not rescale and not resize and return_features
            self.shapes.append(tuple(x.shape))
            return torch.stack([x.mean((1, 2, 3, 4)), x.std((1, 2, 3, 4)), x[:, 0].mean((1, 2, 3))], -1)

    det = Detector()
    v = torch.rand(48, 32, 32, 3, generator=torch.Generator().manual_seed(0))
    assert fvd(det, v, v) == pytest.approx(0, abs=1e-6)
    assert det.shapes[0] == (3, 3, 32, 224, 224)  # clips at stride 8 over 48 frames: starts 0, 8, 16
    assert fvd(det, v, (v * 0.5).clamp(0, 1)) > 0.01
    with pytest.raises(LearnedUnavailable, match="32 frames"):
        fvd(det, v[:20], v[:20])


def test_learned_metrics_say_n_a_with_the_reason_when_models_are_missing(monkeypatch, tmp_path):
    from v2m4.metrics.learned import learned_metrics
    monkeypatch.setenv("V2M4_WEIGHTS", str(tmp_path))
    monkeypatch.delenv("V2M4_I3D", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    for name in ("open_clip", "lpips", "dreamsim"):
        monkeypatch.setitem(sys.modules, name, None)
    rgb, mask, frame = renders(4)
    out, notes = learned_metrics(rgb, mask, frame[None].expand(4, -1, -1, -1))
    assert out == {"clip_sim": "n/a: not installed", "lpips": "n/a: not installed",
                   "dreamsim": "n/a: not installed", "fvd": "n/a: no weights"}
    assert len(notes) == 4 and any("V2M4_I3D" in n for n in notes)
    fake = types.ModuleType("lpips")
    fake.LPIPS = FakeLPIPS
    monkeypatch.setitem(sys.modules, "lpips", fake)
    out, _ = learned_metrics(rgb, mask, frame[None].expand(4, -1, -1, -1))
    assert out["lpips"] == "n/a: no weights"
