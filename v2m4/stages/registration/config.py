"""The registration stage's configuration (Sec. 4.3; defaults from Appendix A "Topology Consistency")."""

from __future__ import annotations

from dataclasses import dataclass

from ...camera import DEFAULT_FOV_DEG


@dataclass(frozen=True)
class RegistrationConfig:
    """Paper numbers cite Appendix A; "ours" marks what the paper does not fix, and "tuned" a number chosen by
    measurement (docs/calibration.md, "Registration", has what was measured)."""

    global_iters: int = 500         # Appendix A: global alignment steps
    global_views: int = 20          # Appendix A: random views per step for the global render loss
    global_lr: float = 0.005        # ours (Adam on rotation-6D, log-scale, translation)
    local_iters: int = 1000         # Appendix A: local alignment steps
    local_views: int = 50           # Appendix A: views per step for the local render loss
    local_lr: float = 0.003         # ours (uniform Adam in the large-steps parameter u)
    smooth_lambda: float = 19.0     # ours: Nicolet et al.'s lambda for I + lambda L
    w_render: float = 1.0           # Appendix A: every loss not named below has weight 1
    global_normals: bool | None = None  # ours: the global alignment's render term has the normal channel too.
                                    # None: only when the rest mesh was remeshed; a raw generated rest compares
                                    # silhouettes only, since the normals of two differently decimated meshes
                                    # pull a similarity off its target (tuned: see docs/calibration.md)
    w_chamfer: float = 1.0          # Appendix A
    w_arap: float = 1.0             # Appendix A
    w_area: float = 1e6             # Appendix A: face-area consistency
    w_edge: float = 1e2             # Appendix A: edge-length consistency
    unfold_iters: int = 100         # ours: steps of the local repair of folded or collapsed triangles (unfold)
    render_res: int = 256           # ours: render-loss resolution
    view_pool: int = 100            # ours: target renders made once per pair; each step draws its views from them
    fov_deg: float = DEFAULT_FOV_DEG  # ours: the views' field of view
    chamfer_points: int = 5000      # ours: surface samples per mesh per step
    fail_ratio: float = 3.0         # ours: a pair whose final Chamfer exceeds this x the median so far is retried
    max_flipped: float = 1e-3       # ours: ... as is one folding more than this share of triangles
    retry_starts: int = 4           # ours: rotation starts of the retry's global alignment (quarter turns about +Y)
    dense_max_vertices: int = 12000 # ours: above this the large-steps solve needs cholespy
    remesh_rest: bool = True        # ours: isotropic remesh of the rest mesh first (stages/remesh.py says why)
    rest_max_faces: int = 6000      # ours: that remesh keeps at most this many faces (1.5x the working resolution,
                                    # ``GenerationConfig.max_faces``); tuned: see docs/calibration.md
    remesh_feature_deg: float | None = None  # ours: keep edges sharper than this as creases in that remesh; off:
                                             # it keeps the surface but its slivers fold (remesh_isotropic says)
    fit_rest: bool = False          # ours: fit the remeshed rest mesh to the first frame's mesh with the local
                                    # step's losses before any pair (``fit_rest`` in sequence.py says why); off:
                                    # it helped some items' drift and hurt others' (tuned: see docs/calibration.md)
    sample_sets: int = 16           # ours: surface-sample sets drawn once per pair, cycled through the steps
    arap_refresh: int = 10          # ours: steps between re-solving the ARAP rotations (the local step)
    input_view_iters: int = 0       # ours: after each pair, local steps that also fit the video's own silhouette
                                    # (off in the paper preset: not yet measured at its settings; fast uses 40)
    w_input_view: float = 1.0       # ours: weight of that term (silhouette L1 over the video mask's area)

    @staticmethod
    def paper() -> "RegistrationConfig":
        return RegistrationConfig()

    @staticmethod
    def fast() -> "RegistrationConfig":
        """CPU preset: fewer, smaller views and iterations (same losses and weights)."""
        return RegistrationConfig(global_iters=60, global_views=6, global_lr=0.01, local_iters=120, local_views=8,
                                  local_lr=0.006, render_res=96, view_pool=24, chamfer_points=1500,
                                  input_view_iters=40)
