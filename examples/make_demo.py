"""Make the bundled demo item (examples/demo/) from one bench item: 256x256 frames, the first 24 frames.

    python examples/make_demo.py [--item p01_fox_walk] [--frames 24] [--size 256]

The copy keeps the bench layout (frames/, gt_mesh.npz, meta.json, materials/, source/LICENSE.md) so that
load_item("demo", bench_dir="examples") reads it; the source asset itself is not copied.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from v2m4.data.bench import _read_rgba, bench_dir  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--item", default="p01_fox_walk")
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--out", default=str(ROOT / "examples" / "demo"))
    args = ap.parse_args()
    src = bench_dir() / args.item
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    (out / "frames").mkdir(parents=True)
    meta = json.loads((src / "meta.json").read_text())
    n = min(args.frames, meta["n_frames"])
    for i, f in enumerate(sorted((src / "frames").glob("*.png"))[:n]):
        rgba = _read_rgba(f, (args.size, args.size))
        Image.fromarray((rgba * 255 + 0.5).astype(np.uint8)).save(out / "frames" / f"{i:04d}.png", optimize=True)
    gt = dict(np.load(src / "gt_mesh.npz"))
    gt["verts"] = gt["verts"][:n]
    gt["times"] = gt["times"][:n]
    np.savez_compressed(out / "gt_mesh.npz", **gt)
    s = args.size / meta["resolution"][0]
    meta["K"] = [[v * s if (r < 2) else v for v in row] for r, row in enumerate(meta["K"])]
    meta.update(resolution=[args.size, args.size], n_frames=n, times=meta["times"][:n],
                demo_of=args.item, timing_s=None)
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    (out / "materials").mkdir()
    mats = json.loads((src / "materials" / "materials.json").read_text())
    for m in mats["materials"]:
        if m.get("texture"):
            im = Image.open(src / "materials" / m["texture"])
            im.thumbnail((512, 512))
            im.save(out / "materials" / m["texture"], optimize=True)
    (out / "materials" / "materials.json").write_text(json.dumps(mats, indent=1))
    (out / "source").mkdir()
    shutil.copy(src / "source" / "LICENSE.md", out / "source" / "LICENSE.md")
    (out / "README.md").write_text(
        f"# Demo item\n\n{n} frames of bench item `{args.item}` at {args.size}x{args.size}, made by "
        f"`examples/make_demo.py`. Licence of the asset: `source/LICENSE.md`.\n")
    print(f"wrote {out} ({sum(p.stat().st_size for p in out.rglob('*') if p.is_file()) / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
