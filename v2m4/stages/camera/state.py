"""The camera search's resumable state (``search_poses``'s ``checkpoint`` and ``start``): what a stopped search had
settled, with its random generator's state, so that a continued search finds what an uninterrupted one does."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import Tensor

from ...types import atomic_save_npz, load_npz
from .config import CameraSearchConfig


@dataclass(frozen=True)
class SearchState:
    """How far a search has come, enough to continue it to the poses an uninterrupted search finds: the first n
    frames' settled poses (n, 7), scores (n,) float64, global_search (n,) bool, ious (n,) float64 (NaN where not
    measured) and seconds (n,) float64; rng, the random generator's state after them; backward, the frames the
    backward pass has settled, from the last but one back (their poses and scores above are the pass's); batch,
    the warm frames refined together (a state continues only a search that batches alike); consensus, the rounds of
    the consensus pass done (the poses and scores above are theirs)."""

    poses: Tensor
    scores: Tensor
    global_search: Tensor
    ious: Tensor
    seconds: Tensor
    rng: Tensor
    backward: int = 0
    batch: int = 1
    consensus: int = 0

    @property
    def settled(self) -> int:
        """Frames settled by every pass (each consensus round settles every frame): ``search_units`` once the search
        is done."""
        return len(self.poses) + self.backward + self.consensus * len(self.poses)

    def save(self, path: str | os.PathLike) -> None:
        atomic_save_npz(path, poses=self.poses, scores=self.scores, global_search=self.global_search,
                        ious=self.ious, seconds=self.seconds, rng=self.rng, backward=torch.tensor(self.backward),
                        batch=torch.tensor(self.batch), consensus=torch.tensor(self.consensus))

    @staticmethod
    def load(path: str | os.PathLike) -> "SearchState":
        d = {k: torch.as_tensor(v) for k, v in load_npz(path).items()}
        return SearchState(d["poses"], d["scores"], d["global_search"].bool(), d["ious"], d["seconds"], d["rng"],
                           int(d["backward"]), int(d["batch"]), int(d.get("consensus", 0)))


def search_units(frames: int, cfg: CameraSearchConfig) -> int:
    """What ``SearchState.settled`` counts up to: every frame once, again in the backward pass but the last, and
    once in each round of the consensus pass."""
    return frames + (frames - 1 if cfg.backward_pass and cfg.warm_start else 0) + cfg.consensus_rounds * frames
