"""Sec. 4.2 appearance refinement (negative-condition optimisation) on a small differentiable stand-in for the
generator: a velocity network conditioned on an embedding, and a fixed linear 'decode and render' to an image."""

import json

import pytest
import torch

from v2m4.stages.appearance import (AppearanceConfig, iterations_per_step, negative_condition_gradient,
                                    refine_negative_condition, time_pairs)


class ToyFlow(torch.nn.Module):
    """v(x, t, c): a conditional velocity field over 24-dim latents with an 8-dim condition embedding."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.wx = torch.nn.Parameter(torch.randn(24, 24, generator=g) * 0.2)
        self.wc = torch.nn.Parameter(torch.randn(8, 24, generator=g) * 0.5)

    def forward(self, x, t, c):
        return torch.tanh(x @ self.wx + c @ self.wc * (1 + t))


def _setup():
    """The toy generator, and a frame it can reach: the render of a sample guided by another negative embedding."""
    model = ToyFlow().requires_grad_(False)
    decode = torch.randn(24, 3 * 16, generator=torch.Generator().manual_seed(1)) * 0.1  # latent -> 4x4 RGB
    cond = torch.randn(1, 8, generator=torch.Generator().manual_seed(3))
    neg = torch.zeros(1, 8)
    noise = torch.randn(1, 24, generator=torch.Generator().manual_seed(4))
    other = torch.randn(1, 8, generator=torch.Generator().manual_seed(5))
    frame = torch.sigmoid(refine_negative_condition(model, lambda x: x.sum(), noise, cond, other, steps=25,
                                                    config=AppearanceConfig(t_max=-1)).sample @ decode)
    loss = lambda x0: ((torch.sigmoid(x0 @ decode) - frame) ** 2).sum()  # noqa: E731  squared error of the render
    return model, loss, cond, neg, noise


def test_schedule_follows_appendix_a():
    pairs = time_pairs(25, rescale_t=1.0)
    assert pairs[0][0] == pytest.approx(1.0) and pairs[-1][1] == pytest.approx(0.0)
    iters = iterations_per_step(pairs, AppearanceConfig())
    first = next(i for i, (t, _) in enumerate(pairs) if t <= 0.6)
    assert all(n == 0 for n in iters[:first])  # nothing while t > 0.6
    assert iters[first:first + 5] == [5] * 5 and iters[first + 5] == 6  # 5, then one more every 5 steps
    assert pairs[first][0] <= 0.6 < pairs[first - 1][0]


def test_negative_condition_gradient_only_inside_the_guidance_interval():
    model, loss, cond, neg, noise = _setup()
    for t in (0.3, 0.8):
        for interval in ((0.0, 1.0), (0.5, 1.0)):
            g = negative_condition_gradient(model, loss, noise, t, cond, neg, cfg_strength=3.0, interval=interval)
            inside = interval[0] <= t <= interval[1]
            assert (float(g.abs().sum()) > 1e-8) == inside, (t, interval)


def test_refinement_lowers_the_render_loss_and_keeps_the_embedding_near_its_start():
    model, loss, cond, neg, noise = _setup()
    plain = refine_negative_condition(model, loss, noise, cond, neg, steps=25, config=AppearanceConfig(t_max=-1))
    assert plain.losses == [] and torch.equal(plain.neg_cond, neg)  # t_max < 0: plain guided sampling
    ref = refine_negative_condition(model, loss, noise, cond, neg, steps=25)
    assert sum(ref.iterations) == len(ref.losses) > 0
    assert float(loss(ref.sample)) < 0.6 * float(loss(plain.sample))  # measured: 0.43 -> 0.18
    assert ref.losses[-1] < ref.losses[0]
    # a stronger pull to the start keeps the embedding closer to it
    tight = refine_negative_condition(model, loss, noise, cond, neg, steps=25, config=AppearanceConfig(reg_weight=50))
    assert float((tight.neg_cond - neg).norm()) < float((ref.neg_cond - neg).norm())


def test_pipeline_refines_each_keyframe_with_the_hook_and_skips_without(tmp_path):
    from v2m4.camera import orbit_camera
    from v2m4.checkpoint import Checkpoints
    from v2m4.stages.generate import GenerationConfig, refine_keyframes
    from v2m4.types import Frames, Mesh

    tri = Mesh(torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]), torch.tensor([[0, 1, 2]]))
    frames = Frames(rgba=torch.rand(3, 8, 8, 4), fps=10.0)
    cams = orbit_camera(torch.zeros(3), torch.zeros(3), torch.full((3,), 3.0), torch.zeros(3, 3), fov_deg=40,
                        resolution=(8, 8))
    key = torch.tensor([0, 2, 5])

    class WithHook:
        name = "hooked"

        def __init__(self):
            self.calls = []

        def refine(self, frame, t, cam):
            self.calls.append((t, tuple(frame.shape), len(cam)))
            if t == 5:
                return Mesh(torch.zeros(3, 3), torch.zeros(0, 3, dtype=torch.long))  # unusable: rejected
            return tri.with_vertices(tri.vertices + t)

    gen = WithHook()
    store = Checkpoints(tmp_path / "ck")
    with pytest.warns(UserWarning, match="refined mesh rejected"):
        got = refine_keyframes(gen, [tri, tri, tri], frames, key, cams, GenerationConfig(), store=store)
    assert got.status == "refined" and gen.calls == [(0, (8, 8, 4), 1), (2, (8, 8, 4), 1), (5, (8, 8, 4), 1)]
    assert torch.equal(got.meshes[1].vertices, tri.vertices + 2) and got.meshes[2] is tri and len(got.warnings) == 1
    # resumed: the checkpointed frames are read back, only the rejected one is asked again
    gen2 = WithHook()
    with pytest.warns(UserWarning):
        again = refine_keyframes(gen2, [tri, tri, tri], frames, key, cams, GenerationConfig(), store=store)
    assert [c[0] for c in gen2.calls] == [5] and torch.equal(again.meshes[1].vertices, tri.vertices + 2)

    class NoHook:
        name = "synthetic"

    skipped = refine_keyframes(NoHook(), [tri], frames, key[:1], cams, GenerationConfig())
    assert skipped.status.startswith("skipped: the synthetic generator")
    off = refine_keyframes(gen, [tri], frames, key[:1], cams, GenerationConfig(refine_appearance=False))
    assert off.status == "off"


def test_refinement_bar_moves_within_each_keyframe_and_none_opens_when_skipped(capsys):
    """A keyframe's refinement is a whole sampling run: a hook that takes ``progress`` moves the bar step by step."""
    from v2m4.camera import orbit_camera
    from v2m4.progress import Log
    from v2m4.stages.generate import GenerationConfig, refine_keyframes
    from v2m4.types import Frames, Mesh

    tri = Mesh(torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]), torch.tensor([[0, 1, 2]]))
    frames = Frames(rgba=torch.rand(2, 8, 8, 4), fps=10.0)
    cams = orbit_camera(torch.zeros(2), torch.zeros(2), torch.full((2,), 3.0), torch.zeros(2, 3), fov_deg=40,
                        resolution=(8, 8))

    class Stepped:
        def refine(self, frame, t, cam, *, progress=None):
            for i in range(4):
                progress(i, 4)
            return tri

    class NoHook:
        name = "synthetic"

    refine_keyframes(Stepped(), [tri, tri], frames, torch.tensor([0, 3]), cams, GenerationConfig(), log=Log("json"))
    bar = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    done = [e["progress"] for e in bar if e["stage"] == "appearance"]
    assert done[0] == 0 and done[1] == 0.25 and done[-1] == 2 and all(a < b for a, b in zip(done, done[1:]))
    refine_keyframes(NoHook(), [tri], frames, torch.tensor([0]), cams, GenerationConfig(), log=Log("json"))
    skipped = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [e for e in skipped if "progress" in e] == [] and "skipped" in skipped[0]["message"]
