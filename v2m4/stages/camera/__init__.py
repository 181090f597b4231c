"""Camera search and re-pose (Sec. 4.1, Algorithm 1, Appendix A).

Modules: ``config`` (CameraSearchConfig), ``sampling`` (poses, their bounds and cameras, the views renders are
compared with, their scores), ``search`` (swarm, the search loop ``search_poses``), ``refine`` (the poses' gradient
refinement), ``consensus`` (every frame tries the other frames' orientations), ``state`` (what a stopped search
continues from), ``repose`` (re-pose, equal sizes and steady depths), ``stage`` (the stage: ``search_cameras`` ->
``CameraResult``).
"""

from .config import CameraSearchConfig
from .consensus import consensus_pass, orientation_candidates
from .repose import consistent_scales, repose, repose_scales, steady_depths
from .sampling import SearchView, make_view, pose_cameras, sample_poses
from .search import FrameViews, PoseSearchResult, backward_pass, search_poses
from .stage import CameraResult, search_cameras
from .state import SearchState, search_units

__all__ = ["search_cameras", "CameraResult", "CameraSearchConfig", "PoseSearchResult", "SearchState", "search_poses",
           "search_units", "backward_pass", "consensus_pass", "orientation_candidates", "FrameViews", "SearchView",
           "make_view", "pose_cameras", "sample_poses", "repose", "repose_scales", "consistent_scales",
           "steady_depths"]
