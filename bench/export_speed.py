"""GLB export speed and validity at scale: a 300-frame sequence of a ~20k-vertex mesh.

Claim measured: writes in <= 5 s on this CPU; loads in the independent reader; at most two targets non-zero at any
sampled time (every frame time and the midpoints). Also the PCA mode's size and time. Writes
bench/results/export_speed.json.

    python bench/export_speed.py
"""

from __future__ import annotations

import datetime
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from v2m4.export.gltf import write_glb  # noqa: E402
from v2m4.export.readback import GlbAnimation  # noqa: E402
from v2m4.export.validate import validate_glb, validator_available  # noqa: E402
from v2m4.stages.animate import make_animation  # noqa: E402
from v2m4.stages.keyframes import fixed_keyframes  # noqa: E402
from v2m4.types import Mesh  # noqa: E402


def sequence(T=300, stride=3):
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=5)  # 10,242 vertices; split at a uv seam below doubles... close to 20k
    m = m.subdivide()  # 40,962
    v = torch.tensor(m.vertices, dtype=torch.float32)
    keep = torch.arange(20000)
    f = torch.tensor(m.faces)
    f = f[(f < len(keep)).all(1)]
    v = v[keep]
    key = fixed_keyframes(T, stride)
    keys = torch.stack([v * (1 + 0.1 * torch.sin(0.05 * float(t) + 4 * v[:, :1])) for t in key])
    g = torch.Generator().manual_seed(0)
    mesh = Mesh(keys[0], f, uv=v[:, :2] * 0.5 + 0.5, texture=torch.rand(1024, 1024, 3, generator=g))
    return make_animation(mesh, keys, key, T, fps=30.0)


def main():
    anim = sequence()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("targets", "pca"):
            path = Path(tmp) / f"{mode}.glb"
            t0 = time.perf_counter()
            stats = write_glb(path, anim, mode=mode)
            secs = time.perf_counter() - t0
            t0 = time.perf_counter()
            g = GlbAnimation(path)
            load = time.perf_counter() - t0
            times = anim.times.double().numpy()
            probes = np.concatenate([times, (times[1:] + times[:-1]) / 2])
            active = max(int((np.abs(g.weights_at(t)) > 1e-7).sum()) for t in probes)
            diag = float((anim.vertices.amax((0, 1)) - anim.vertices.amin((0, 1))).norm())
            err = max(float(np.linalg.norm(g.positions(float(times[k])) - anim.vertices[k].double().numpy(), axis=1).max())
                      for k in range(0, len(anim), 7)) / diag
            row = {"mode": mode, "frames": len(anim), "vertices": int(anim.mesh.vertices.shape[0]),
                   "faces": int(anim.mesh.faces.shape[0]), "keyframes": int(len(anim.keyframes)),
                   "targets": stats["targets"], "write_s": round(secs, 3), "read_s": round(load, 3),
                   "bytes": stats["bytes"], "max_active_targets": active, "max_err_frac_diag": err}
            if validator_available() is None:
                r = validate_glb(path)
                row.update(validator_errors=r["errors"], validator_warnings=r["warnings"])
            rows.append(row)
    out = {"machine": f"{platform.machine()} CPU, {torch.get_num_threads()} threads", "torch": torch.__version__,
           "date": datetime.date.today().isoformat(), "rows": rows}
    print("| mode | frames | V | targets | write s | read s | MB | max active | max err / diag | validator e/w |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['frames']} | {r['vertices']} | {r['targets']} | {r['write_s']} | {r['read_s']} | "
              f"{r['bytes'] / 1e6:.1f} | {r['max_active_targets']} | {r['max_err_frac_diag']:.2e} | "
              f"{r.get('validator_errors', '-')}/{r.get('validator_warnings', '-')} |")
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "export_speed.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
