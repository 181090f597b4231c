"""OUT/viewer.html: the input frames and the animated mesh side by side on one timeline (play, pause, scrub), orbit
controls, texture / lit / shaded / normals / wireframe views, and the per-frame input-view mask IoU plotted under the
timeline. One self-contained file that works offline from file://: the GLB and the frames are embedded (base64), and
so is the viewer's script, ``_three_bundle.js`` (three.js, MIT licence in its header, and tools/viewer/app.js, built
by tools/build_viewer.js; committed so that no npm is needed at run time).

Why three.js and a static page: a page opens anywhere (a double click, an e-mail attachment, a CI artefact) with no
server or Python process, which a served viewer (viser) needs; three.js plays the GLB the way an engine does
(morph targets or a skin), so the page also shows what a user's engine will show.
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import numpy as np

from ..errors import V2M4Error

BUNDLE = Path(__file__).with_name("_three_bundle.js")
MAX_FRAME_SIDE = 480  # the embedded input frames are downscaled to at most this (JPEG), to keep the page small

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body {{ font: 14px system-ui, sans-serif; margin: 16px; background: #f4f4f4; color: #222; }}
 h1 {{ font-size: 16px; margin: 0 0 8px; }} .figs {{ color: #555; margin-bottom: 8px; }}
 #panes {{ display: flex; gap: 16px; max-width: 1320px; }}
 .pane {{ display: flex; flex-direction: column; gap: 4px; }} .pane span {{ color: #555; font-size: 12px; }}
 #frame {{ background: #808080; object-fit: contain; image-rendering: auto; }}
 #view {{ cursor: grab; }}
 #bar {{ display: flex; gap: 8px; align-items: center; margin-top: 8px; max-width: 1320px; }}
 #scrub {{ flex: 1; }} #plot {{ width: 100%; max-width: 1320px; height: 80px; display: block; background: #fff; }}
 button {{ min-width: 64px; }}
</style></head>
<body>
<h1>{title}</h1>
<div class="figs">{figures}</div>
<div id="panes">
 <div class="pane"><span>input video</span><img id="frame" alt="input frame"></div>
 <div class="pane"><span>reconstruction (drag: orbit, wheel: zoom, right drag: pan)</span><canvas id="view"></canvas></div>
</div>
<div id="bar">
 <button id="play">play</button>
 <input id="scrub" type="range" min="0" max="1" step="0.01" value="0" aria-label="time">
 <span id="clock"></span>
 <select id="mode" aria-label="view"><option value="texture">texture</option><option value="lit">lit</option>
  <option value="shaded">shaded</option>
  <option value="normals">normals</option></select>
 <label><input id="wire" type="checkbox"> wireframe</label>
 <button id="reset">input view</button>
</div>
<canvas id="plot" title="per-frame input-view mask IoU (click to jump)"></canvas>
<script type="application/json" id="v2m4-data">{data}</script>
<script>{bundle}</script>
</body></html>
"""


def _bundle() -> str:
    if not BUNDLE.is_file():
        raise V2M4Error(f"the viewer's script {BUNDLE} is missing; rebuild it: cd tools && npm ci && "
                        "npm run build-viewer")
    return BUNDLE.read_text(encoding="utf-8").replace("</script", "<\\/script")


def _frame_uris(rgba: np.ndarray) -> list[str]:
    """Each (H, W, 4) float frame composited over grey as a JPEG data URI, at most MAX_FRAME_SIDE on a side."""
    from PIL import Image

    out = []
    for f in rgba:
        rgb = f[..., :3] * f[..., 3:] + 0.5 * (1 - f[..., 3:])
        img = Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))
        if max(img.size) > MAX_FRAME_SIDE:
            img.thumbnail((MAX_FRAME_SIDE, MAX_FRAME_SIDE), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=88)
        out.append("data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii"))
    return out


def _figures(report: dict | None) -> str:
    import html

    if not report:
        return ""
    iv = report.get("input_view") or {}
    parts = [f"{report.get('frames', '?')} frames at {report.get('fps', 0):g} fps"]
    if "mask_iou" in iv:
        parts.append(f"input view: mask IoU {iv['mask_iou']:.3f}, PSNR {iv.get('psnr', float('nan')):.1f} dB, "
                     f"SSIM {iv.get('ssim', float('nan')):.3f} (medians)")
    if "rig" in report:
        parts.append(f"rig: {report['rig'].get('bones')} bones (animation_rigged.glb)")
    return html.escape(" · ".join(parts))


def write_viewer(out_dir: str | os.PathLike, *, camera, times, frames=None, report: dict | None = None,
                 glb: str | os.PathLike | None = None, name: str = "viewer.html", title: str = "v2m4") -> Path:
    """Write out_dir/name: the GLB (default out_dir/animation.glb) and the input frames on one timeline.

    camera: the video camera (``v2m4.camera.Camera``, one view), which the page starts from; times (T,) seconds of
    the animation's frames; frames: the input ``Frames`` (T of them) or None; report: report.json's dict (the
    figures at the top and its per-frame input-view mask IoU, ``input_view_frames.mask_iou``, under the timeline).
    Written atomically; returns its path."""
    from ..types import atomic_write_bytes

    out = Path(out_dir)
    glb = Path(glb) if glb is not None else out / "animation.glb"
    if not glb.is_file():
        raise V2M4Error(f"viewer: {glb} does not exist")
    times = [float(t) for t in np.asarray(times, dtype=np.float64).reshape(-1)]
    if frames is not None and len(frames) != len(times):
        raise V2M4Error(f"viewer: {len(frames)} input frames for {len(times)} animation frames")
    iou = ((report or {}).get("input_view_frames") or {}).get("mask_iou")
    data = {
        "title": title, "times": times,
        "camera": {"K": camera.K[0].detach().cpu().double().tolist(),
                   "cam_from_world": camera.cam_from_world[0].detach().cpu().double().tolist(),
                   "resolution": list(camera.resolution)},
        "iou": [float(v) for v in iou] if iou is not None and len(iou) == len(times) else None,
        "frames": _frame_uris(frames.rgba.detach().cpu().numpy()) if frames is not None else None,
        "glb": base64.b64encode(glb.read_bytes()).decode("ascii"),
    }
    # "<" escaped: the JSON sits inside a <script> element
    payload = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
    import html
    page = _PAGE.format(title=html.escape(title), figures=_figures(report), data=payload, bundle=_bundle())
    path = out / name
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, page.encode("utf-8"))
    return path
