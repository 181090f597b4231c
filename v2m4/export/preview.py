"""preview.mp4 (Sec. 4.5 deliverable): input frame | reconstruction from the input camera | a slowly orbiting view,
side by side, optionally with normal-shaded panels beneath. H.264, yuv420p, written atomically. Given the video's
light that the texture was taken out of (``TextureResult.light``), both reconstruction panels show the asset under
it, as the video showed the object; without it, the texture as it is."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import render as R
from ..camera import DEFAULT_FOV_DEG, Camera, orbit_camera
from ..errors import V2M4Error
from ..stages.lighting import render_lit
from ..types import Animation, Frames


def scaled_camera(camera: Camera, size: int) -> Camera:
    """The same view rendered at size x size (the frame's aspect is assumed square after cropping: K scales)."""
    H, W = camera.resolution
    s = torch.tensor([size / W, size / H, 1.0], dtype=camera.K.dtype, device=camera.K.device)
    return Camera(camera.K * s[None, :, None], camera.cam_from_world, (size, size))


def _composite(rgb: torch.Tensor, alpha: torch.Tensor, grey: float = 0.5) -> torch.Tensor:
    return rgb * alpha[..., None] + grey * (1 - alpha[..., None])


def _panels(anim: Animation, frames: Frames | None, camera: Camera, ctx, size: int, normals: bool, orbit_period_s: float,
            start: int, stop: int, light: torch.Tensor | None = None, weld: torch.Tensor | None = None) -> np.ndarray:
    n = stop - start
    verts = anim.vertices[start:stop].to(anim.mesh.vertices)
    cam = scaled_camera(camera, size)
    cams = Camera(cam.K.expand(n, 3, 3), cam.cam_from_world.expand(n, 4, 4), cam.resolution)
    v_all = anim.vertices
    centre = ((v_all.amax((0, 1)) + v_all.amin((0, 1))) / 2).to(verts)
    radius = float((v_all - centre.to(v_all)).norm(dim=-1).max())
    t = anim.times[start:stop].to(verts)
    yaw = 2 * math.pi * t / orbit_period_s
    dist = 1.15 * radius / math.sin(math.radians(DEFAULT_FOV_DEG / 2))
    orbit = orbit_camera(yaw, torch.full_like(yaw, math.radians(15)), torch.full_like(yaw, dist),
                         centre[None].expand(n, 3).contiguous(), fov_deg=DEFAULT_FOV_DEG, resolution=(size, size))
    chans = ("rgb", "mask", "normal") if normals else ("rgb", "mask")
    with torch.no_grad():
        a = render_lit(ctx, anim.mesh, cams, light, vertices=verts, weld=weld, channels=chans)
        b = render_lit(ctx, anim.mesh, orbit, light, vertices=verts, weld=weld, channels=chans)
    row = [_composite(a["rgb"], a["mask"]), _composite(b["rgb"], b["mask"])]
    if frames is not None:
        f = frames.rgba[start:stop].to(verts)
        f = F.interpolate(f.permute(0, 3, 1, 2), size=(size, size), mode="area").permute(0, 2, 3, 1)
        row.insert(0, _composite(f[..., :3], f[..., 3]))
    img = torch.cat(row, 2)
    if normals:
        shade = lambda r: _composite(r["normal"] * 0.5 + 0.5, r["mask"])  # noqa: E731
        low = [shade(a), shade(b)]
        if frames is not None:
            low.insert(0, torch.full_like(low[0], 0.5))
        img = torch.cat([img, torch.cat(low, 2)], 1)
    return (img.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()


def write_preview(path: str | os.PathLike, anim: Animation, frames: Frames | None, camera: Camera, *,
                  ctx: R.RenderContext, resolution: int = 256, normals: bool = False, orbit_period_s: float = 8.0,
                  fps: float | None = None, chunk: int = 16, progress=None, light: torch.Tensor | None = None) -> Path:
    """Write the preview video; frames (T matching anim) may be None (then two panels). progress: optional
    callable(done, total) in frames. light (9,): the video's light (``stages.lighting``) to show the asset under."""
    import av

    if frames is not None and len(frames) != len(anim):
        raise V2M4Error(f"preview: {len(frames)} input frames for {len(anim)} animation frames")
    size = resolution - resolution % 2
    weld = R.weld_map(anim.mesh.vertices)
    fps = fps or (float(1.0 / (anim.times[1] - anim.times[0])) if len(anim) > 1 else 24.0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.stem, suffix=".mp4", dir=path.parent)
    os.close(fd)
    try:
        with av.open(tmp, "w", format="mp4") as out:
            stream = None
            for s in range(0, len(anim), chunk):
                imgs = _panels(anim, frames, camera, ctx, size, normals, orbit_period_s, s, min(len(anim), s + chunk),
                               light, weld)
                if stream is None:
                    from fractions import Fraction
                    stream = out.add_stream("libx264", rate=Fraction(round(fps * 1000), 1000))
                    stream.height, stream.width = imgs.shape[1], imgs.shape[2]
                    stream.pix_fmt = "yuv420p"
                    stream.options = {"crf": "20"}
                for im in imgs:
                    for packet in stream.encode(av.VideoFrame.from_ndarray(im, format="rgb24")):
                        out.mux(packet)
                if progress:
                    progress(s + len(imgs), len(anim))
            for packet in stream.encode():
                out.mux(packet)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a preview is for sharing
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
