"""docs/overview.png, the README's picture of what v2m4 does: input frames (top row) above the reconstruction at
the same moments seen from another side (bottom row), the camera turned about the object's up axis.

    python docs/make_figure.py               # runs `v2m4 demo` into a temporary folder first (minutes on a CPU)
    python docs/make_figure.py --run OUT     # a finished run of the demo: OUT/checkpoints/{animation,camera}.npz
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from v2m4 import render as R  # noqa: E402
from v2m4.camera import DEFAULT_FOV_DEG, Camera, orbit_camera  # noqa: E402
from v2m4.io.frames import read_frames  # noqa: E402
from v2m4.metrics.novel_view import framing  # noqa: E402
from v2m4.stages.camera import CameraResult  # noqa: E402
from v2m4.types import Animation  # noqa: E402

GREY = 0.5  # the background of the preview video and the viewer


def turned_views(anim: Animation, video_camera: Camera, frames: list[int], turn_deg: float, size: int) -> Camera:
    """A camera per frame looking at that frame's centre from the video camera's side turned by ``turn_deg`` about
    +Y (the generators' up, and so the world's), 20 degrees above the horizontal, at a distance where the clip's
    largest bounding sphere fills the view."""
    centres, radius = framing(anim.vertices[frames])
    eye = video_camera.world_from_cam[0, :3, 3].to(centres)
    d = eye - centres.mean(0)
    yaw = torch.full((len(frames),), math.atan2(float(d[0]), float(d[2])) + math.radians(turn_deg))
    dist = torch.full_like(yaw, 1.1 * radius / math.sin(math.radians(DEFAULT_FOV_DEG) / 2))
    return orbit_camera(yaw, torch.full_like(yaw, math.radians(20)), dist, centres, fov_deg=DEFAULT_FOV_DEG,
                        resolution=(size, size))


def render_turned(anim: Animation, video_camera: Camera, frames: list[int], turn_deg: float, size: int) -> np.ndarray:
    """(N, size, size, 3) uint8: the animation at ``frames`` from ``turned_views``, over grey."""
    cams = turned_views(anim, video_camera, frames, turn_deg, size)
    with torch.no_grad():
        r = R.render(R.context(), anim.mesh, cams, channels=("rgb", "mask"), vertices=anim.vertices[frames])
    img = r["rgb"] * r["mask"][..., None] + GREY * (1 - r["mask"][..., None])
    return (img.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()


def input_panels(frames_dir: Path, frames: list[int], size: int) -> np.ndarray:
    """(N, size, size, 3) uint8: the input frames at ``frames``, over grey, scaled to size (square after crop)."""
    rgba = read_frames(frames_dir).rgba[frames]
    img = rgba[..., :3] * rgba[..., 3:] + GREY * (1 - rgba[..., 3:])
    arr = (img.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
    return np.stack([np.asarray(Image.fromarray(a).resize((size, size), Image.LANCZOS)) for a in arr])


def _font(px: int):
    try:
        return ImageFont.load_default(size=px)
    except TypeError:  # Pillow < 10.1: the small bitmap font
        return ImageFont.load_default()


def overview(run: Path, frames_dir: Path, out: Path, *, columns: int = 4, size: int = 176,
             turn_deg: float = 70.0) -> Path:
    """The picture: ``columns`` moments evenly over the clip, input above, reconstruction turned below."""
    anim = Animation.load(run / "checkpoints" / "animation.npz")
    camera = CameraResult.load(run / "checkpoints" / "camera.npz").video_camera
    frames = [round(float(x)) for x in np.linspace(0, len(anim) - 1, columns)]
    rows = [("input video", input_panels(frames_dir, frames, size)),
            (f"reconstruction, the camera turned {turn_deg:.0f}° about the object",
             render_turned(anim, camera, frames, turn_deg, size))]
    label, gap = 22, 4
    W = columns * size + (columns - 1) * gap
    page = Image.new("RGB", (W, len(rows) * (label + size)), (255, 255, 255))
    draw, font = ImageDraw.Draw(page), _font(14)
    for i, (title, panels) in enumerate(rows):
        y = i * (label + size)
        draw.text((2, y + 3), title, fill=(40, 40, 40), font=font)
        for j, p in enumerate(panels):
            page.paste(Image.fromarray(p), (j * (size + gap), y + label))
    out.parent.mkdir(parents=True, exist_ok=True)
    page.save(out, optimize=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=None, help="output folder of a finished demo run (default: run the demo)")
    ap.add_argument("--frames", default=str(ROOT / "examples" / "demo" / "frames"), help="that run's input frames")
    ap.add_argument("--out", default=str(ROOT / "docs" / "overview.png"))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(a.run) if a.run else Path(tmp) / "demo"
        if a.run is None:
            from v2m4.cli import main as v2m4
            if v2m4(["demo", "--out", str(run), "--quiet"]) != 0:
                return 1
        print(overview(run, Path(a.frames), Path(a.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
