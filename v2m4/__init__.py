"""v2m4: one fixed-camera video of a moving object to an animated 3D mesh (V2M4, Chen et al. 2025)."""

import os as _os
import sys as _sys

# How long an idle OpenMP worker of torch's (GNU libgomp) spins before it sleeps, in pause-loop turns. The CPU's
# compiled kernels (the rasteriser's visibility, the nearest-neighbour search) run on threads of our own right after
# torch's operators; libgomp's default (300,000 turns, milliseconds) leaves its workers spinning on the cores those
# threads need, which halves the kernels' speed on a machine with as many cores as threads. 20,000 still spans the
# gaps between torch's own operators. libgomp reads this once, as it loads: it applies only where v2m4 is imported
# before torch and the user has set neither variable (docs/calibration.md has what was measured).
OMP_SPIN_TURNS = 20000
OMP_SPIN_SET = "torch" not in _sys.modules and not {"GOMP_SPINCOUNT", "OMP_WAIT_POLICY"} & set(_os.environ)
if OMP_SPIN_SET:
    _os.environ["GOMP_SPINCOUNT"] = str(OMP_SPIN_TURNS)

from .errors import V2M4Error  # noqa: E402
from .types import Animation, Frames, Mesh, Sequence  # noqa: E402

__all__ = ["V2M4Error", "Mesh", "Frames", "Sequence", "Animation"]
__version__ = "0.1.0"
