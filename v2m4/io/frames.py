"""Frames from a video file (mp4, webm, mov, gif...) or a folder of images, with alpha or a folder of masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import V2M4Error
from .naming import natural_key
from ..types import Frames

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif", ".m4v"}


def _images_in(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: natural_key(p.name))


def _open(path: Path) -> Image.Image:
    try:
        im = Image.open(path)
        im.load()
        return im
    except Exception:  # PIL raises many types for a broken file
        raise V2M4Error(f"cannot read image {path}") from None


def _read_video(path: Path) -> tuple[list[np.ndarray], float]:
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or 24
            fmt = "rgba" if path.suffix.lower() in {".gif", ".webm", ".mov"} else "rgb24"
            frames = [f.to_ndarray(format=fmt) for f in container.decode(stream)]
    except (av.error.FFmpegError, IndexError, ValueError, OSError):
        raise V2M4Error(f"cannot decode video {path.name}; is it a valid video file?") from None
    return frames, float(rate)


def resize_rgba(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 4) float RGBA in [0, 1], straight alpha -> (h, w, 4), area-averaged. Premultiplied while resampling so
    that a transparent pixel's colour does not bleed into the object's edge. The benchmark loader uses it too, so a
    run on a benchmark item's frames sees exactly the pixels it is scored against."""
    if a.shape[:2] == tuple(size):
        return a
    a = a.astype(np.float32, copy=True)
    a[..., :3] *= a[..., 3:]
    chans = [Image.fromarray(a[..., c]).resize((size[1], size[0]), Image.Resampling.BOX) for c in range(4)]
    out = np.stack([np.asarray(c) for c in chans], -1)
    out[..., :3] /= np.maximum(out[..., 3:], 1e-6)
    out[..., :3] *= out[..., 3:] > 0
    return out.clip(0, 1)


def _fit(arr: np.ndarray, max_size: int | None) -> np.ndarray:
    """uint8 (H, W, 4) -> float (h, w, 4) with the long side at most max_size."""
    a = arr.astype(np.float32) / 255
    h, w = arr.shape[:2]
    if not max_size or max(h, w) <= max_size:
        return a
    s = max_size / max(h, w)
    return resize_rgba(a, (max(1, round(h * s)), max(1, round(w * s))))


def read_frames(path: str | Path, *, masks: str | Path | None = None, fps: float | None = None,
                max_size: int | None = None) -> Frames:
    """Frames (T, H, W, 4) from a video file or an image folder (natural sort: 2.png before 10.png).

    Alpha comes from the images (PNG/WebP with alpha, or a video with an alpha channel), or from ``masks``, a
    folder with one grey mask per frame. Frames without either get alpha = 1 everywhere: the caller decides
    whether to remove the background. Frames larger than ``max_size`` are downscaled, keeping the aspect ratio.
    fps: for image folders (default 24); a video's own rate wins unless fps is given.
    """
    path = Path(path)
    if not path.exists():
        raise V2M4Error(f"input {path} does not exist")
    if path.is_dir():
        files = _images_in(path)
        if not files:
            raise V2M4Error(f"folder {path} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        arrays, names = [], []
        for f in files:
            im = _open(f)
            arrays.append(np.asarray(im.convert("RGBA" if "A" in im.getbands() else "RGB")))
            names.append(f.name)
        rate = fps or 24.0
    elif path.suffix.lower() in VIDEO_SUFFIXES:
        arrays, rate = _read_video(path)
        names = [f"frame {i}" for i in range(len(arrays))]
        rate = fps or rate
    else:
        raise V2M4Error(f"{path.name}: not a video ({', '.join(sorted(VIDEO_SUFFIXES))}) or a folder of images")
    if len(arrays) < 2:
        raise V2M4Error(f"{path.name} has {len(arrays)} frame(s); a video needs at least 2")
    h0, w0 = arrays[0].shape[:2]
    for a, n in zip(arrays, names):
        if a.shape[:2] != (h0, w0):
            raise V2M4Error(f"{n} is {a.shape[1]}x{a.shape[0]} but the first frame is {w0}x{h0}; "
                            f"all frames must share one size")
    if masks is not None:
        mfolder = Path(masks)
        if not mfolder.is_dir():
            raise V2M4Error(f"mask folder {mfolder} does not exist")
        mfiles = _images_in(mfolder)
        if len(mfiles) != len(arrays):
            raise V2M4Error(f"mask folder {mfolder} has {len(mfiles)} masks but there are {len(arrays)} frames")
        alphas = []
        for f in mfiles:
            m = np.asarray(_open(f).convert("L"))
            if m.shape != (h0, w0):
                raise V2M4Error(f"mask {f.name} is {m.shape[1]}x{m.shape[0]} but the frames are {w0}x{h0}")
            alphas.append(m)
        arrays = [np.concatenate([a[..., :3], m[..., None]], -1) for a, m in zip(arrays, alphas)]
    arrays = [a if a.shape[-1] == 4 else np.concatenate([a, np.full(a.shape[:2] + (1,), 255, np.uint8)], -1)
              for a in arrays]
    rgba = torch.as_tensor(np.stack([_fit(a, max_size) for a in arrays]))
    return Frames(rgba=rgba, fps=float(rate), source=str(path))
