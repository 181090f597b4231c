"""docs/rig_hierarchy.png: the bone hierarchy ``v2m4 run --rig`` builds, on one bench item's ground-truth sequence
(bones as dots at their centres, parent links as lines, the root ringed; the rest mesh's vertices in grey), front
and side orthographic views (glTF axes, +Y up).

    V2M4_BENCH_DIR=/work/shared/data/bench python bench/plot_rig.py [--item p03_cesiumman_walk] [--bones 16]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from rig_compare import gt_animation  # noqa: E402
from v2m4.export.rig import DEFAULT_BONES, fit_rig, rig_errors  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--item", default="p03_cesiumman_walk")
    ap.add_argument("--bones", type=int, default=DEFAULT_BONES)
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--out", default=str(ROOT / "docs" / "rig_hierarchy.png"))
    a = ap.parse_args()

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    anim = gt_animation(a.item, a.frames)
    rig = fit_rig(anim.mesh.vertices, anim.vertices, n_bones=a.bones, faces=anim.mesh.faces)
    err = rig_errors(anim, rig)
    rest, c = rig.rest.numpy(), rig.centres.numpy()
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.6), dpi=120)
    for ax, (h, title) in zip(axes, ((0, "front (x, y)"), (2, "side (z, y)"))):
        ax.scatter(rest[:, h], rest[:, 1], s=0.3, c="0.82", linewidths=0)
        for b, p in enumerate(rig.parents):
            if p >= 0:
                ax.plot([c[p, h], c[b, h]], [c[p, 1], c[b, 1]], "-", c="tab:blue", lw=1.2)
        ax.scatter(c[:, h], c[:, 1], s=14, c="tab:orange", zorder=3)
        r = rig.root
        ax.scatter([c[r, h]], [c[r, 1]], s=70, facecolors="none", edgecolors="tab:red", lw=1.5, zorder=4)
        ax.set_title(title, fontsize=9)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{a.item}: {err['bones']} bones, root ringed; rig RMS {100 * err['rms_err']:.2f}% / max "
                 f"{100 * err['max_err']:.1f}% of the diagonal", fontsize=8)
    fig.tight_layout()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out)
    print(a.out, err)


if __name__ == "__main__":
    main()
