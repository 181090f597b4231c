"""Topology-consistent registration (Sec. 4.3, Appendix A): one mesh deformed through every frame.

The rest mesh is the first keyframe's re-posed mesh, re-meshed. The default schedule (``joint.register_clip``)
fits every input frame at once: each keyframe is aligned to its re-posed generated mesh by a global similarity
(6-D rotation, log-scale, translation; all keyframes in one batched fit), then every frame's vertex positions are
optimised together under the large-steps parameterisation of Nicolet et al. (2021, ``v2m4.optim``; one
factorisation, every frame a right-hand side) on the paper's losses (multi-view render L1 + Chamfer against the
keyframes' meshes, ARAP + face-area and edge-length consistency against the rest, ``energies``), plus each
frame's silhouette against the video and a temporal smoothness term; optionally (``JointConfig.w_flow``) the video's
optical flow between consecutive frames (``flow``). The paper's own schedule, each next keyframe
started from the previous result and fitted as a pair (``sequence``, ``align``), is kept as the bench's baseline.

Against drift and collapse: the regularisers compare with the rest mesh, and triangles left folded or collapsed
by a fit are repaired locally (``energies.unfold``); in the chain, a pair that fails is retried (``sequence``).

What is rendered: silhouette (antialiased, so the outline pulls vertices) and world-space normals (inside the
outline, so folds and bulges pull too). Colour is not: the next frame's generated colours are not those of the
rest mesh, and comparing them would drag vertices towards paint instead of shape. Depth adds little over normals
and silhouette and needs per-view normalisation. When the rest mesh could not be remeshed, the global step
compares silhouettes only (``RegistrationConfig.global_normals``).

Units: every loss is computed in a normalised frame where the rest mesh fits the unit cube centred at the origin
(the generators' canonical size), so the paper's weights (area 1e6, edge 1e2) mean what they meant there.

Modules: ``config`` (RegistrationConfig), ``energies`` (the regularisers and collapse measures), ``joint`` (the
whole-clip fit, JointConfig) with ``clip_terms`` (its per-frame terms, batched over frames), ``keys`` (the
keyframes' targets, stacked), ``flow`` (the video's optical flow and its term), ``_shape_cpu`` (its shape terms
compiled for the CPU), ``smoothing`` (the keyframes' temporal smoothing after it, at the weight the
clip's video and the generator's measured noise allow) and ``noise`` (that measurement), ``align`` (one pair: targets, global and local alignment), ``sequence``
(register_sequence, RegistrationResult).
"""

from .align import InputView, Target, global_align, local_align, view_cameras
from .config import RegistrationConfig
from .energies import (arap_energy, arap_rotations, arap_scale, area_energy, carried_area_ratio, edge_energy,
                       flipped_fraction, fold_energy, sequence_quality, unfold)
from .sequence import RegistrationResult, register_sequence

__all__ = ["RegistrationConfig", "RegistrationResult", "register_sequence", "global_align", "local_align",
           "InputView", "Target", "view_cameras", "arap_rotations", "arap_energy", "area_energy", "edge_energy",
           "carried_area_ratio", "fold_energy", "unfold", "flipped_fraction", "arap_scale", "sequence_quality"]
