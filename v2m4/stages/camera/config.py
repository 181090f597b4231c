"""The camera search's configuration (Sec. 4.1, Algorithm 1; defaults from Appendix A "Camera Search")."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...camera import DEFAULT_FOV_DEG


@dataclass(frozen=True)
class CameraSearchConfig:
    """Paper numbers cite Appendix A; "ours" or "beyond the paper" marks what the paper does not fix, and "tuned" a
    number chosen by measurement (docs/calibration.md, "Camera search", has what was measured)."""

    n_samples: int = 2000                 # Appendix A: P0 initially sampled poses
    n_particles: int = 199                # Appendix A: top K poses into the swarm (+ the stereo prior's pose)
    n_prior_views: int = 7                # Appendix A: top n renders given to the stereo model
    pso_iters: int = 25                   # Appendix A
    refine_iters: int = 300               # Appendix A: gradient descent on the mask MSE
    radius_range: tuple[float, float] = (1.0, 5.0)   # Appendix A, square-root spacing
    auto_radius: bool = True              # ours: widen the range to cover the distance at which a unit-size object
                                          # (what generators output) has the frame's silhouette size; the paper's
                                          # [1, 5] cannot frame an object that is small in the video
    look_at_range: float = 1.0            # Appendix A: look-at uniform in [-1, 1]^3
    fov_deg: float = DEFAULT_FOV_DEG      # not in the paper; the generators' own (``v2m4.camera``)
    roll: bool = True                     # beyond the paper (the official code has none): search the roll angle.
                                          # A generator removes the object's rotation, and a body that pitches
                                          # (a gallop, a run) turns about the view axis, which yaw, pitch and
                                          # look-at cannot reproduce (tuned: see docs/calibration.md)
    roll_range: float = math.radians(45)  # ours: |roll| bound; generators output objects upright (+Y up)
    search_res: int = 128                 # render size for sampling and swarm (ours; the official code uses 512)
    refine_res: int = 256                 # render size for gradient refinement
    refine_lr: float = 0.01               # Adam step (radians / scene units); ours
    # particle swarm (Kennedy & Eberhart); ours: constant inertia and bounds with velocity clamping, where the
    # official code redraws every velocity each step and has no bounds
    inertia: float = 0.7
    cognitive: float = 1.5
    social: float = 1.5
    max_velocity: float = 0.2             # fraction of each parameter's range per iteration
    # temporal warm start (beyond the paper)
    warm_start: bool = True
    warm_particles: int = 48
    warm_iters: int = 8
    warm_refine_iters: int = 100
    warm_spread: tuple[float, ...] = (0.15, 0.08, 0.1, 0.05, 0.05, 0.05, 0.05)  # initial swarm spread per parameter
    global_margin: float = 1.15           # keep the warm pose unless the global one scores this much better
    turn_margin: float = 1.03             # ours: a warm swarm's particle more than 45 deg of yaw from the previous
                                          # pose (where the quarter-turn seeds start) must score this much better
                                          # to win: a symmetric shape ties with its turns, and a tie keeps the
                                          # previous pose; about the score's noise. 1: no bias (tuned: see
                                          # docs/calibration.md)
    warm_fallback_ratio: float = 2.5      # global search when the warm score exceeds this times the median score
                                          # of the frames so far (scores vary from frame to frame): above what good
                                          # warm poses reach, below a flipped pose (tuned: see docs/calibration.md)
    warm_fallback_iou: float | None = 0.1  # ours: ... or when its silhouette IoU is this far below the median IoU
                                          # so far (None: off). Scores are not comparable across frames (the
                                          # appearance term follows the shading), silhouettes are (tuned: see
                                          # docs/calibration.md)
    refine_batch: int | None = None       # ours: warm frames refined together, one render call per step for all
                                          # (refine_poses); a GPU is launch-bound on one small view per call. The
                                          # next frame's swarm then starts from this frame's unrefined pose.
                                          # None: on CUDA up to 16, fewer for large meshes (render_each's work
                                          # grows as batch² x faces: batch² x faces <= 4M), 1 elsewhere (each
                                          # frame alone, no extra work)
    refine_graphs: bool = True            # ours, no effect on the result: on CUDA each refinement step after its
                                          # visibility pass is replayed as one CUDA graph (refine_poses), where
                                          # the step op by op waits on kernel launches and host synchronisations
    warm_turns: bool = True               # also seed the local swarm with quarter turns about +Y: generators
                                          # snap objects to canonical axes and sometimes pick the wrong one
    warm_roll: float = math.radians(15)   # also seed the local swarm with the previous roll -/+ this (ours)
    backward_pass: bool = False           # ours, on in the fast preset: after the forward pass, each frame from
                                          # the last but one back to the first also starts from the next frame's
                                          # pose (centred, then refined with the warm frames' steps,
                                          # `refine_batch` frames at once) and takes it if it scores better. A
                                          # frame that cannot fix a turn (a sphere, a front view) hands the
                                          # forward pass an arbitrary one, which the next frames may keep. Off in
                                          # the paper preset: on a GPU it costs more per warm frame than it gains
                                          # (tuned: see docs/calibration.md)
    consensus_rounds: int = 0             # ours, off: rounds of the consensus pass (``consensus``) after the
                                          # forward and backward passes: each frame also tries the orientations
                                          # the other frames were found under, so a drift the warm chain
                                          # accumulated is undone by frames found before it began. It halves the
                                          # rotation error of drifting clips but moved a first frame to a pose
                                          # that scores better and lies farther from the truth, which the whole
                                          # clip's geometry then follows (measured: see docs/calibration.md)
    consensus_top: int = 2                # candidates refined per frame and round (the best distinct ones)
    center_samples: bool = True           # ours: move each sampled pose's radius and look-at so the render's
                                          # silhouette area and centroid match the frame's before scoring
    center_steps: int = 3                 # fixed-point steps of that centring
    crop_margin: float = 0.25             # ours: render a window around the object (this margin around the frame
                                          # mask's box) instead of the whole frame, so a small object keeps pixels
    refine_appearance: bool = True        # ours: refine on the scorer's appearance term too, not the mask alone
                                          # (a silhouette hardly constrains pitch or mirror-symmetric turns)
    max_batch: int = 512                  # views per render call (memory bound)
    shape_weight: float = 0.0             # beyond the paper, off: weight of the shape-continuity term
                                          # (shape_distance) in a warm frame's swarm, a fallback's swarm and the
                                          # warm-versus-global choice. It removes front/back flips but drags a
                                          # fast articulated motion, so it is not on by default (tuned: see
                                          # docs/calibration.md)
    shape_swarm: bool = True              # ours: the term also steers the warm swarm (False: only the fallback's
                                          # swarm and the warm-versus-global choice)
    shape_points: int = 400               # surface samples per mesh for that term
    consistent_scale: bool = True         # beyond the paper: re-pose with equal surface areas (consistent_scales)
    steady_depth: bool = True             # beyond the paper: smooth the re-posed depths over time (steady_depths)
    depth_noise: float = 0.015            # ours: per-frame log-depth error steady_depths assumes (tuned: see
                                          # docs/calibration.md)
    still_angle: float = 0.05             # ours: radians an object's direction may stray from its mean and still
                                          # count as in place for steady_depths (tuned: see docs/calibration.md)
    lateral_noise: float = 0.01           # ours: sideways error of a moving object's centre, a fraction of its
                                          # distance, that steady_depths assumes: a moving body's surface centroid
                                          # shifts as its limbs move (tuned: see docs/calibration.md)
    growth_angle: float = 0.1             # ours: radians (~6 deg); an object in place whose distance changes with
                                          # its direction moving less than tan(growth_angle) times as much is
                                          # read as changing size, not approaching (steady_depths; 0 turns it off;
                                          # tuned: see docs/calibration.md)

    @staticmethod
    def paper() -> "CameraSearchConfig":
        return CameraSearchConfig()

    @staticmethod
    def fast() -> "CameraSearchConfig":
        """For a 2-core CPU: fewer samples and particles at 64 px, shorter refinement at 192 px (at 128 px a small
        object's silhouette is too coarse to fix its rotation), the backward pass on, and a lower fallback ratio
        (64 px scores are noisier). Tuned: see docs/calibration.md."""
        return CameraSearchConfig(n_samples=600, n_particles=48, pso_iters=12, refine_iters=80, search_res=64,
                                  refine_res=192, warm_particles=24, warm_iters=5, warm_refine_iters=60,
                                  refine_lr=0.02, max_batch=256, backward_pass=True,
                                  warm_fallback_ratio=1.5)
