"""v2m4: one fixed-camera video of a moving object to an animated 3D mesh (V2M4, Chen et al. 2025)."""

from .errors import V2M4Error
from .types import Animation, Frames, Mesh, Sequence

__all__ = ["V2M4Error", "Mesh", "Frames", "Sequence", "Animation"]
__version__ = "0.1.0"
