"""Sec. 4.1's input: one generated mesh per keyframe, checkpointed as it comes; a frame whose mesh is unusable is
dropped with a warning that a resumed run repeats."""

import pytest
import torch
import trimesh

from v2m4 import Mesh
from v2m4.checkpoint import Checkpoints
from v2m4.stages.generate import GenerationConfig, generate_keyframes
from v2m4.types import Frames


class OneBroken:
    """A generator whose mesh for frame ``bad`` has a non-finite vertex; counts its calls."""

    def __init__(self, bad: int):
        self.bad, self.calls = bad, 0

    def generate(self, rgba, index):
        self.calls += 1
        box = trimesh.creation.box()
        v = torch.tensor(box.vertices, dtype=torch.float32)
        if index == self.bad:
            v[0, 0] = float("nan")
        return Mesh(v, torch.tensor(box.faces))


def test_a_skipped_frame_is_reported_again_on_resume(tmp_path):
    frames = Frames(torch.rand(4, 8, 8, 4), fps=10.0)
    keys = torch.tensor([0, 2, 3])
    with pytest.warns(UserWarning, match="frame 2"):
        first = generate_keyframes(frames, keys, OneBroken(2), GenerationConfig(),
                                   store=Checkpoints(tmp_path))
    gen = OneBroken(2)
    with pytest.warns(UserWarning, match="frame 2"):
        resumed = generate_keyframes(frames, keys, gen, GenerationConfig(), store=Checkpoints(tmp_path, resume=True))
    assert gen.calls == 0  # every keyframe came from the checkpoints
    assert first.keyframes.tolist() == resumed.keyframes.tolist() == [0, 3]
    assert resumed.warnings == first.warnings and "non-finite" in first.warnings[0]
