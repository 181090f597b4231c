"""The camera stage (Sec. 4.1, Alg. 1): the search for every keyframe, then the re-pose.

``search_cameras`` finds, for each keyframe's generated mesh, the camera under which it looks like its frame, and
the factor about that camera's centre that gives the meshes one size and steady depths; ``CameraResult.repose``
then moves each mesh into the world of the fixed video camera (the first keyframe's camera).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ... import render as R
from ...camera import Camera
from ...types import Frames, Mesh, load_npz, atomic_save_npz
from .config import CameraSearchConfig
from .repose import repose, repose_scales
from .search import search_poses
from .state import SearchState


@dataclass(frozen=True)
class CameraResult:
    """cameras: K views, each keyframe mesh's found camera (cam_from_world maps its canonical frame to the camera)
    at the frames' resolution; scales (K,) float64: the factor about each camera's centre the re-pose applies;
    global_search (K,) bool: whether the keyframe needed the global search; seconds (K,) float64: search time per
    keyframe; scorer / stereo: what the search scored and primed with; unavailable: learned parts that were asked
    for (or would be used by default) but could not be loaded, one line each."""

    cameras: Camera
    scales: Tensor
    global_search: Tensor
    seconds: Tensor
    scorer: str = "silhouette-colour"
    stereo: str | None = None
    unavailable: tuple[str, ...] = ()

    @property
    def video_camera(self) -> Camera:
        """The fixed video camera (1 view): the first keyframe's, which makes the world that mesh's frame."""
        return self.cameras[0]

    def repose(self, meshes: list[Mesh]) -> tuple[list[Mesh], Tensor]:
        """Each keyframe's mesh (canonical frame) moved into the world (Alg. 1, line 9); and world_from_canonical
        (K, 4, 4) on the CPU, the similarity applied to each."""
        world_from_cam = self.cameras.world_from_cam[0]
        posed = [repose(m, self.cameras.cam_from_world[k], world_from_cam, scale=float(self.scales[k]))
                 for k, m in enumerate(meshes)]
        return [m for m, _ in posed], torch.stack([M for _, M in posed]).cpu()

    def learned(self) -> dict:
        """What the report records of the learned parts."""
        return {"scorer": self.scorer, "stereo": self.stereo, "unavailable": list(self.unavailable)}

    def to(self, device) -> "CameraResult":
        return CameraResult(self.cameras.to(device), self.scales, self.global_search, self.seconds, self.scorer,
                            self.stereo, self.unavailable)

    def save(self, path: str | os.PathLike) -> None:
        c = self.cameras
        atomic_save_npz(path, K=c.K, cam_from_world=c.cam_from_world, resolution=torch.tensor(c.resolution),
                        scales=self.scales, global_search=self.global_search, search_seconds=self.seconds,
                        learned=np.array(json.dumps(self.learned())))

    @staticmethod
    def load(path: str | os.PathLike) -> "CameraResult":
        d = load_npz(path)
        cams = Camera(torch.as_tensor(d["K"]), torch.as_tensor(d["cam_from_world"]),
                      tuple(int(x) for x in d["resolution"]))
        learned = json.loads(str(d["learned"]))
        return CameraResult(cams, torch.as_tensor(d["scales"]), torch.as_tensor(d["global_search"]).bool(),
                            torch.as_tensor(d["search_seconds"]), learned["scorer"], learned["stereo"],
                            tuple(learned["unavailable"]))


def search_cameras(meshes: list[Mesh], frames: Frames, times: Tensor, cfg: CameraSearchConfig,
                   ctx: R.RenderContext, *, generator: torch.Generator, scorer=None, stereo=None,
                   unavailable: tuple[str, ...] = (), progress=None, checkpoint=None,
                   start: SearchState | None = None) -> CameraResult:
    """The stage: Alg. 1 for every keyframe, then the re-pose factors.

    meshes: one per keyframe (canonical frame); frames: those keyframes' input frames (K); times (K,) their times
    in seconds (depth smoothing); scorer: a ``v2m4.scoring.Scorer`` (default: the weight-free one); stereo: an
    optional ``StereoPrior`` whose pose joins the swarm; unavailable: what the caller could not load, recorded;
    progress: optional callable(t, score, was_global), called as each keyframe's pose is settled; checkpoint and
    start: a ``SearchState`` handed out as keyframes are settled, and one to continue from (``search_poses``).
    """
    found = search_poses(meshes, frames, cfg, ctx, generator=generator, scorer=scorer, stereo=stereo,
                         progress=progress, checkpoint=checkpoint, start=start)
    scales = repose_scales(meshes, found.cameras.cam_from_world, times, cfg)
    return CameraResult(found.cameras, scales, found.global_search.cpu().bool(),
                        torch.tensor(found.seconds, dtype=torch.float64),
                        scorer=scorer.name if scorer is not None else "silhouette-colour",
                        stereo="dust3r" if stereo is not None else None, unavailable=tuple(unavailable))
