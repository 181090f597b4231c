"""The texture stage's objective at a preset, on the bundled demo: the demo reconstructed once (24 frames, the
synthetic generator, whole-clip registration), then its texture baked again under each variant from the same
registration, every bake scored from the input camera over every frame (masked PSNR and SSIM, the report's
``input_view``) and timed. Claim measured: whether a variant's texture is closer to the video than the preset's own,
and at what cost in seconds; the first variant is the preset itself and the last repeats it (the noise of the
figures and of the timing).

    python bench/texture_demo.py --device cuda --backend nvdiffrast --preset paper --name texture_demo_gpu
    python bench/texture_demo.py --preset fast --name texture_demo_cpu
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import write_table  # noqa: E402
from v2m4.bench import git_commit, machine_description  # noqa: E402
from v2m4.config import PipelineConfig  # noqa: E402
from v2m4.generators import make_generator  # noqa: E402
from v2m4.io.frames import read_frames  # noqa: E402
from v2m4.pipeline import reconstruct  # noqa: E402

DEMO = ROOT / "examples" / "demo"
VARIANTS = {"preset": {}, "l2_50": {"texture": {"loss": "l2", "iters": 50}},
            "l2_200": {"texture": {"loss": "l2", "iters": 200}}, "l1_150": {"texture": {"loss": "l1", "iters": 150}},
            "start_only": {"texture": {"iters": 0}}, "preset_again": {}}
LATER = ("texture.npz", "animation.npz")  # the checkpoints a bake makes: removed so the resumed run bakes again


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--name", default="texture_demo")
    a = ap.parse_args()
    base = PipelineConfig.preset(a.preset, device=a.device, backend=a.backend).with_joint_registration()
    frames = read_frames(DEMO / "frames", max_size=base.resolution)
    out = {"program": "bench/texture_demo.py", "date": datetime.date.today().isoformat(),
           "machine": machine_description(a.device), "commit": git_commit(), "preset": a.preset,
           "backend": a.backend, "frames": len(frames), "rows": {}}
    with tempfile.TemporaryDirectory() as run:
        reconstruct(frames, make_generator(f"synthetic:{DEMO}", len(frames)), base, run_dir=run, log="quiet")
        for name in a.variants:
            for f in LATER:
                (Path(run) / "checkpoints" / f).unlink(missing_ok=True)
            cfg = base.with_overrides(VARIANTS[name])
            res = reconstruct(frames, make_generator(f"synthetic:{DEMO}", len(frames)), cfg, run_dir=run,
                              resume=True, log="quiet")
            iv = res.report["input_view"]
            t = cfg.texture
            out["rows"][name] = {"loss": t.loss, "iters": t.iters, "size": t.size, "psnr": round(iv["psnr"], 3),
                                 "ssim": round(iv["ssim"], 4), "texture_s": round(res.report["seconds"]["texture"], 2)}
            print(name, out["rows"][name], file=sys.stderr, flush=True)
    write(out, a.name)
    return 0


def write(out: dict, name: str) -> None:
    lines = [f"**texture objective on the demo** ({out['preset']} preset, {out['backend']}, {out['frames']} frames) "
             f"on {out['machine']}, {out['date']}, commit {out['commit']}; one registration, the texture baked again "
             "per row; input view over every frame\n",
             "| variant | loss | steps | texture px | PSNR | SSIM | texture s |", "|---|---|---|---|---|---|---|"]
    for k, r in out["rows"].items():
        lines.append(f"| {k} | {r['loss']} | {r['iters']} | {r['size']} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
                     f"{r['texture_s']} |")
    write_table(name, out, lines)


if __name__ == "__main__":
    sys.exit(main())
