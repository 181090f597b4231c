"""The camera search continues from a checkpoint: stopped after any settled keyframe (or batch of the backward
pass) and continued from its ``SearchState``, it finds the poses an uninterrupted search finds, bit for bit."""

from dataclasses import replace

import pytest
import torch

from conftest import DEMO_DIR
from v2m4 import render as R
from v2m4.data.bench import load_item
from v2m4.errors import V2M4Error
from v2m4.generators.base import simplify_mesh
from v2m4.generators.synthetic import SyntheticConfig, SyntheticGenerator
from v2m4.stages.camera import CameraSearchConfig, SearchState, search_poses, search_units

CTX = R.context()
FRAMES = [0, 4, 8, 12]


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def clip():
    item = load_item("demo", bench_dir=DEMO_DIR, frames=FRAMES, resolution=(64, 64))
    gen = SyntheticGenerator(item, seed=0, config=SyntheticConfig(color_jitter=0.0))
    return item.frames, [simplify_mesh(gen.generate(None, t), 600) for t in range(len(FRAMES))]  # a 64 px frame shows no more


# small enough for seconds, with the backward pass on (as in the fast preset) and a round of the consensus pass
CFG = replace(CameraSearchConfig.fast(), consensus_rounds=1, n_samples=64, n_particles=8, pso_iters=2,
              refine_iters=5, search_res=32, refine_res=48, warm_particles=6, warm_iters=2, warm_refine_iters=3)


def _search(clip, cfg, **kw):
    frames, meshes = clip
    return search_poses(meshes, frames, cfg, CTX, generator=torch.Generator().manual_seed(7), **kw)


@pytest.mark.parametrize("batch", [1, 2])
def test_search_continued_from_a_checkpoint_equals_the_uninterrupted_one(clip, tmp_path, batch):
    cfg = replace(CFG, refine_batch=batch)
    states = []
    whole = _search(clip, cfg, checkpoint=states.append)
    T = len(FRAMES)
    # a state whenever everything before is final: per frame (per batch of warm frames refined together), then
    # per batch of the backward pass, then per round of the consensus pass (T units each), counting up to every
    # unit of the bar
    assert [st.settled for st in states] == sorted({st.settled for st in states})
    assert states[-1].settled == search_units(T, cfg) == 3 * T - 1 and states[-1].consensus == 1
    if batch == 1:
        assert [st.settled for st in states] == list(range(1, 2 * T)) + [3 * T - 1]
    forward = [k for k, st in enumerate(states) if st.backward == 0]
    # stop right after the k-th state was saved, as Ctrl-C there would: after the first warm frame(s) (the warm
    # swarms' random draws and the previous pose carry over), one at a time, inside the backward pass, and before
    # the consensus round
    last = len(states) - 2
    for k in (forward[1], last) if batch > 1 else (forward[1], forward[-1] + 1, last):
        path = tmp_path / f"state{k}.npz"

        def stop_after(state, k=k, path=path, seen=[]):
            if len(seen) == k:
                state.save(path)
                raise Stop
            seen.append(state)
        with pytest.raises(Stop):
            _search(clip, cfg, checkpoint=stop_after)
        start = SearchState.load(path)
        more = []
        again = _search(clip, cfg, start=start, checkpoint=more.append)
        assert torch.equal(again.poses, whole.poses), (k, start.settled)
        assert torch.equal(again.scores, whole.scores) and torch.equal(again.global_search, whole.global_search)
        assert [st.settled for st in more] == [st.settled for st in states[k + 1:]]


def test_a_state_of_another_search_is_refused(clip):
    states = []

    def keep_two(state):
        states.append(state)
        if len(states) == 2:
            raise Stop
    with pytest.raises(Stop):
        _search(clip, replace(CFG, refine_batch=1), checkpoint=keep_two)
    with pytest.raises(V2M4Error, match="cannot continue"):  # warm frames refined two at a time settle otherwise
        _search(clip, replace(CFG, refine_batch=2), start=states[1])
