"""The export columns of the bench: the output written as a GLB (one target per frame, and the compact PCA
mode), validated, and read back with an independent reader."""

from __future__ import annotations

import torch

from ..types import Frames, Mesh


def export_checks(mesh: Mesh, vertices: list[torch.Tensor], frames: Frames) -> dict[str, float]:
    """Write the output as a GLB (one target per frame, and the PCA mode), validate both with the Khronos validator
    when it is installed, and read them back with the independent reader: the export columns of the bench."""
    import tempfile

    import numpy as np

    from ..export.gltf import write_glb
    from ..export.readback import GlbAnimation
    from ..export.validate import validate_glb, validator_available
    from ..types import Animation

    v = torch.stack([x.detach().cpu() for x in vertices])
    anim = Animation(mesh.to("cpu"), v, frames.times.float().cpu(), torch.arange(len(v)))
    out: dict[str, float] = {}
    diag = float((v.amax((0, 1)) - v.amin((0, 1))).norm())
    with tempfile.TemporaryDirectory() as tmp:
        for mode, key in (("targets", "glb_bytes"), ("pca", "glb_bytes_pca")):
            path = f"{tmp}/{mode}.glb"
            stats = write_glb(path, anim, mode=mode)
            out[key] = float(stats["bytes"])
            if validator_available() is None:
                r = validate_glb(path)
                out[f"validator_errors{'_pca' if mode == 'pca' else ''}"] = float(r["errors"])
                out[f"validator_warnings{'_pca' if mode == 'pca' else ''}"] = float(r["warnings"])
            if mode == "targets":
                g = GlbAnimation(path)
                err = max(float(np.abs(g.positions(float(anim.times[k])) - v[k].double().numpy()).max())
                          for k in range(len(v)))
                out["roundtrip_err"] = err / diag
            else:
                out["pca_targets"] = float(stats["targets"])
    return out
