"""Headless Chromium for the tests: Debian's ``chromium`` (/usr/bin/chromium, or $V2M4_CHROMIUM) driven by npm's
``playwright-core`` (tools/node_modules) through a small node script. ``.ci/run`` installs both; where either is
absent the tests that need them skip, saying which.

``browse(page, steps)`` opens a local page with every non-file request refused (offline), waits for the page's
``window.v2m4.ready``, evaluates each step (a JavaScript expression, awaited) and returns their values with the
console errors, page errors and refused requests seen meanwhile."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
NODE_MODULES = REPO / "tools" / "node_modules"

_DRIVER = r"""
const { chromium } = require("playwright-core");
const job = JSON.parse(require("fs").readFileSync(process.argv[2], "utf8"));
(async () => {
  const browser = await chromium.launch({ executablePath: job.chromium, headless: true,
    args: ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"] });
  const out = { results: [], console: [], pageErrors: [], refused: [] };
  try {
    const context = await browser.newContext({ viewport: { width: job.width, height: job.height },
                                               deviceScaleFactor: 1, offline: true });
    const page = await context.newPage();
    await page.route("**/*", (route) => {
      const url = route.request().url();
      if (url.startsWith("file:") || url.startsWith("data:") || url.startsWith("blob:")) return route.continue();
      out.refused.push(url);
      return route.abort();
    });
    page.on("console", (m) => out.console.push({ type: m.type(), text: m.text() }));
    page.on("pageerror", (e) => out.pageErrors.push(String(e)));
    await page.goto(job.url, { waitUntil: "load" });
    await page.waitForFunction(() => window.v2m4 && (window.v2m4.ready || window.v2m4.error), null,
                               { timeout: job.timeout_ms });
    for (const step of job.steps) {
      if (step.screenshot) { await page.screenshot({ path: step.screenshot }); out.results.push(null); continue; }
      if (step.wait_ms) { await page.waitForTimeout(step.wait_ms); out.results.push(null); continue; }
      out.results.push(await page.evaluate(`(async () => (${step.eval}))()`));
    }
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(out));
})().catch((e) => { console.error(String(e && e.stack || e)); process.exit(1); });
"""


def chromium() -> str | None:
    p = os.environ.get("V2M4_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return p if Path(p).is_file() else None


def skip_reason() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if chromium() is None:
        return "Chromium is not installed (apt-get install -y chromium; .ci/run does this)"
    if shutil.which("node") is None:
        return "node is not installed (the browser driver is a node script)"
    if not (NODE_MODULES / "playwright-core").is_dir():
        return "playwright-core is not installed (cd tools && npm ci; .ci/run does this)"
    return None


needs_browser = pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))


def browse(page: str | os.PathLike, steps: list, *, size=(1000, 760), timeout_s: float = 60) -> dict:
    """Open the page in headless Chromium, offline; steps: JavaScript expressions (str) or dicts
    ({"screenshot": PATH}, {"wait_ms": N}); returns {"results", "console", "pageErrors", "refused"}."""
    steps = [{"eval": s} if isinstance(s, str) else s for s in steps]
    with tempfile.TemporaryDirectory() as tmp:
        driver, job = Path(tmp) / "driver.js", Path(tmp) / "job.json"
        driver.write_text(_DRIVER)
        job.write_text(json.dumps({"chromium": chromium(), "url": Path(page).resolve().as_uri(), "steps": steps,
                                   "width": size[0], "height": size[1], "timeout_ms": int(timeout_s * 1000)}))
        r = subprocess.run(["nice", "-n", "19", "node", str(driver), str(job)], capture_output=True, text=True,
                           timeout=timeout_s + 30, env={**os.environ, "NODE_PATH": str(NODE_MODULES)})
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads(r.stdout)


def png_mask(data_url: str, threshold: float = 0.5) -> np.ndarray:
    """A canvas capture (PNG data URL) -> (H, W) bool: pixels brighter than threshold (a white-on-black
    silhouette)."""
    from PIL import Image

    raw = base64.b64decode(data_url.split(",", 1)[1])
    img = np.asarray(Image.open(io.BytesIO(raw)).convert("L"), dtype=np.float32) / 255
    return img > threshold


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def demo_outputs(out: Path, *, frames_picked=(0, 6, 12, 18), size: int = 64, rig_bones: int | None = None) -> dict:
    """What ``v2m4 run`` writes (``write_outputs``: animation.glb, viewer.html, report.json, with --rig
    animation_rigged.glb), for a stand-in result: the bundled demo's ground-truth animation at a few frames, seen by
    its own camera at size x size, with its textures. A real run's stages take about a minute on a busy CPU; the
    writers are the same. Returns {"anim", "camera", "frames", "report"}."""
    import types
    from dataclasses import replace

    import torch
    from PIL import Image

    from conftest import DEMO_DIR, tiny_config
    from v2m4 import render as R
    from v2m4.camera import Camera
    from v2m4.pipeline import input_view_metrics, write_outputs
    from v2m4.types import Animation, Frames, Mesh

    demo = DEMO_DIR / "demo"
    meta = json.loads((demo / "meta.json").read_text())
    gt = np.load(demo / "gt_mesh.npz")
    pick = list(frames_picked)
    tex = np.asarray(Image.open(demo / "materials" / "tex_0.png").convert("RGB"), np.float32) / 255
    mesh = Mesh(torch.from_numpy(gt["verts"][pick[0]]), torch.from_numpy(gt["faces"].astype(np.int64)),
                uv=torch.from_numpy(gt["uv"]), texture=torch.from_numpy(tex))
    step = float(gt["times"][pick[1]] - gt["times"][pick[0]])
    times = torch.arange(len(pick), dtype=torch.float32) * step
    anim = Animation(mesh, torch.from_numpy(gt["verts"][pick]), times, torch.arange(len(pick)))
    H, W = meta["resolution"]
    camera = Camera(torch.tensor([meta["K"]], dtype=torch.float32),
                    torch.tensor([meta["world_to_camera_opengl"]], dtype=torch.float32), (H, W))
    camera = camera.with_resolution((size, size))
    rgba = [Image.open(demo / "frames" / f"{i:04d}.png").convert("RGBA").resize((size, size), Image.LANCZOS)
            for i in pick]
    frames = Frames(torch.from_numpy(np.stack([np.asarray(f, np.float32) / 255 for f in rgba])), fps=1 / step)
    ctx = R.context("torch", "cpu")
    report = {"frames": len(pick), "fps": frames.fps, "seconds": {}}
    report["input_view"] = input_view_metrics(anim, frames, camera, ctx)
    report["input_view_frames"] = {"mask_iou": report["input_view"].pop("mask_iou_frames")}
    cfg = tiny_config()
    cfg = replace(cfg, output=replace(cfg.output, preview=False, rig_bones=rig_bones, extra_exports=()))
    result = types.SimpleNamespace(animation=anim, report=report, video_camera=camera)
    report = write_outputs(result, frames, out, cfg, log="quiet")
    return {"anim": anim, "camera": camera, "frames": frames, "report": report}


def silhouettes(anim, camera, indices, size: tuple[int, int]) -> list[np.ndarray]:
    """Our renderer's (v2m4.render) silhouettes of the animation's frames from the camera, at size (H, W)."""
    import torch

    from v2m4 import render as R
    from v2m4.camera import Camera

    cam = camera.with_resolution(size)
    n = len(indices)
    cams = Camera(cam.K.expand(n, 3, 3), cam.cam_from_world.expand(n, 4, 4), cam.resolution)
    with torch.no_grad():
        r = R.render(R.context("torch", "cpu"), anim.mesh, cams, channels=("mask",),
                     vertices=anim.vertices[list(indices)])
    return [m.numpy() > 0.5 for m in r["mask"]]
