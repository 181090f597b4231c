"""Registration presets and collapse measures (Sec. 4.3).

The bench's ``register`` method is the pipeline without its texture stage (``v2m4.bench.PIPELINE_METHODS``): camera
search and re-pose, then registration, the first keyframe's generated colours on the one moving mesh; so it and
``full`` differ by the texture alone."""

from __future__ import annotations

from dataclasses import replace

import torch

from ..stages.registration import RegistrationConfig, arap_scale, edge_change, unique_edges
from ..types import Mesh


def registration_config(preset: str) -> RegistrationConfig:
    base = preset.split("-")[0]
    if base == "tiny":  # smoke tests of the whole pipeline
        return replace(RegistrationConfig.fast(), global_iters=4, local_iters=6, render_res=32, view_pool=6,
                       global_views=2, local_views=2, chamfer_points=200, sample_sets=2, input_view_iters=3)
    return RegistrationConfig.paper() if base == "paper" else RegistrationConfig.fast()


def sequence_quality(vertices: torch.Tensor, rest: Mesh) -> dict[str, float]:
    """Collapse measures of a registered sequence against its rest mesh: the 99th percentile of relative edge-length
    change over all frames and edges, the largest per-frame share of folded or collapsed triangles, and the largest
    change of size against the rest pose (``arap_scale``; an articulated object keeps its size)."""
    from ..stages.registration import flipped_fraction
    edges = unique_edges(rest.faces)
    ch = torch.cat([edge_change(v, rest.vertices, edges) for v in vertices[1:]]) if len(vertices) > 1 else \
        torch.zeros(1)
    fl = [flipped_fraction(v, rest.vertices, rest.faces, edges) for v in vertices[1:]] or [0.0]
    size = [abs(arap_scale(v, rest.vertices, edges) - 1.0) for v in vertices[1:]] or [0.0]
    return {"edge_change_p99": float(torch.quantile(ch.double().cpu(), 0.99)), "flipped_frac": max(fl),
            "size_change_max": max(size)}
