"""Topology-consistent registration (Sec. 4.3, Appendix A): one mesh deformed through every frame.

The rest mesh is the first frame's re-posed mesh. Each next frame starts from the previous result and is aligned to
that frame's re-posed generated mesh in two steps: a global similarity (6-D rotation, log-scale, translation) on
Chamfer + multi-view render L1, then per-vertex offsets under the large-steps parameterisation of Nicolet et al.
(2021, ``v2m4.optim``) on render L1 + Chamfer + ARAP + face-area and edge-length consistency (``energies``).

Ours, against drift and collapse: the regularisers compare with the rest mesh, a pair that fails is retried
(``sequence``), and triangles left folded or collapsed by a fit are repaired locally (``energies.unfold``) before
the next pair starts from them.

What is rendered: silhouette (antialiased, so the outline pulls vertices) and world-space normals (inside the
outline, so folds and bulges pull too). Colour is not: the next frame's generated colours are not those of the
rest mesh, and comparing them would drag vertices towards paint instead of shape. Depth adds little over normals
and silhouette and needs per-view normalisation. When the rest mesh could not be remeshed, the global step
compares silhouettes only (``RegistrationConfig.global_normals``).

Units: every loss is computed in a normalised frame where the rest mesh fits the unit cube centred at the origin
(the generators' canonical size), so the paper's weights (area 1e6, edge 1e2) mean what they meant there.

Modules: ``config`` (RegistrationConfig), ``energies`` (the regularisers and collapse measures), ``align`` (one
pair: targets, global and local alignment), ``sequence`` (register_sequence, RegistrationResult).
"""

from .align import InputView, Target, global_align, local_align, view_cameras
from .config import RegistrationConfig
from .energies import (arap_energy, arap_rotations, arap_scale, area_energy, carried_area_ratio, edge_energy,
                       flipped_fraction, fold_energy, sequence_quality, unfold)
from .sequence import RegistrationResult, register_sequence

__all__ = ["RegistrationConfig", "RegistrationResult", "register_sequence", "global_align", "local_align",
           "InputView", "Target", "view_cameras", "arap_rotations", "arap_energy", "area_energy", "edge_energy",
           "carried_area_ratio", "fold_energy", "unfold", "flipped_fraction", "arap_scale", "sequence_quality"]
