"""The benchmark items: rendered animated assets with ground-truth meshes and cameras.

The benchmark folder is the caller's ``bench_dir`` argument, else ``$V2M4_BENCH_DIR``. Layout of an item folder
(see the benchmark folder's README.md): frames/0000.png... (RGBA), gt_mesh.npz (verts (T, V, 3),
faces, uv, face_material, times), meta.json (fps, K, world_to_camera_opengl, resolution), materials/, source/.
The pipeline sees only the frames; everything else is for scoring and for the synthetic generator.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..camera import Camera
from ..errors import V2M4Error
from ..types import Frames, Mesh


def bench_dir(path: str | os.PathLike | None = None) -> Path:
    """The benchmark folder: the argument, else $V2M4_BENCH_DIR."""
    given = path or os.environ.get("V2M4_BENCH_DIR")
    if not given:
        raise V2M4Error("no benchmark folder given; set V2M4_BENCH_DIR to the folder of benchmark items, "
                        "or pass bench_dir (--bench-dir on the command line)")
    p = Path(given)
    if not p.is_dir():
        raise V2M4Error(f"bench folder {p} does not exist; set V2M4_BENCH_DIR or pass --bench-dir")
    return p


def list_items(bench_dir: str | os.PathLike | None = None) -> list[str]:
    """Sorted ids of the items (folders with a meta.json) in the bench folder."""
    root = globals()["bench_dir"](bench_dir)
    return sorted(d.name for d in root.iterdir() if (d / "meta.json").is_file())


@dataclass(frozen=True)
class Material:
    factor: Tensor            # (4,) base colour factor, linear RGBA
    texture: Tensor | None    # (Ht, Wt, 4) sRGB RGBA in [0, 1], or None for a flat colour


@dataclass(frozen=True)
class BenchItem:
    """One bench item, frames selected and resized as asked. gt_vertices (T, V, 3) are the selected frames'."""

    id: str
    frames: Frames
    gt_vertices: Tensor
    faces: Tensor
    uv: Tensor
    face_material: Tensor
    materials: list[Material]
    camera: Camera
    times: Tensor
    frame_indices: list[int]


def _read_rgba(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    try:
        im = Image.open(path).convert("RGBA")
    except Exception:  # PIL raises many types for a broken file
        raise V2M4Error(f"cannot read image {path}") from None
    if size is not None and im.size != (size[1], size[0]):
        from ..io.frames import resize_rgba
        return resize_rgba(np.asarray(im, dtype=np.float32) / 255, size)
    return np.asarray(im, dtype=np.float32) / 255


def item_dir(item: str | os.PathLike, bench_dir: str | os.PathLike | None = None) -> Path:
    """An item's folder, by path or by id in the bench folder."""
    path = Path(item)
    if not (path / "meta.json").is_file():
        if not (bench_dir or os.environ.get("V2M4_BENCH_DIR")):
            raise V2M4Error(f"no bench item at {path} (expected a folder with meta.json); to load an item by id, "
                            "set V2M4_BENCH_DIR to the folder of benchmark items or pass bench_dir")
        path = globals()["bench_dir"](bench_dir) / str(item)
    if not (path / "meta.json").is_file():
        raise V2M4Error(f"no bench item at {path} (expected a folder with meta.json)")
    return path


def looped_item(item: str | os.PathLike, n: int, dest: str | os.PathLike) -> Path:
    """A copy of the item folder ``item`` at ``dest`` whose clip is its frames and ground truth repeated to n frames
    (for an item whose motion loops: a longer clip the synthetic generator and the scoring read as the original)."""
    out = Path(dest)
    shutil.copytree(item, out)
    frames = sorted((out / "frames").iterdir())
    for i in range(len(frames), n):
        shutil.copy(frames[i % len(frames)], out / "frames" / f"{i:04d}.png")
    gt = dict(np.load(out / "gt_mesh.npz"))
    meta = json.loads((out / "meta.json").read_text())
    gt["verts"] = np.concatenate([gt["verts"]] * -(-n // len(frames)))[:n]
    gt["times"] = (np.arange(n) / meta["fps"]).astype(np.float32)
    np.savez(out / "gt_mesh.npz", **gt)
    meta.update(n_frames=n, times=gt["times"].tolist())
    (out / "meta.json").write_text(json.dumps(meta))
    return out


def load_item(item: str | os.PathLike, *, bench_dir: str | os.PathLike | None = None, frames: list[int] | None = None,
              resolution: tuple[int, int] | None = None) -> BenchItem:
    """Load an item by id (in the bench folder) or by path. frames: indices to keep (default all);
    resolution: (H, W) to resize the frames to (K is scaled to match)."""
    path = item_dir(item, bench_dir)
    meta = json.loads((path / "meta.json").read_text())
    files = sorted((path / "frames").glob("*.png"))
    if not files:
        raise V2M4Error(f"bench item {path.name} has no frames/*.png")
    sel = list(range(len(files))) if frames is None else list(frames)
    if any(i < 0 or i >= len(files) for i in sel):
        raise V2M4Error(f"frame indices {sel} out of range for {path.name} ({len(files)} frames)")
    rgba = torch.as_tensor(np.stack([_read_rgba(files[i], resolution) for i in sel]))
    gt = np.load(path / "gt_mesh.npz")
    h0, w0 = meta["resolution"][1], meta["resolution"][0]
    cam = Camera(torch.tensor(meta["K"], dtype=torch.float32)[None],
                 torch.tensor(meta["world_to_camera_opengl"], dtype=torch.float32)[None], (h0, w0))
    if resolution is not None:
        cam = cam.with_resolution(resolution)
    mats = []
    mj = json.loads((path / "materials" / "materials.json").read_text())
    for m in mj["materials"]:
        tex = None
        if m.get("texture"):
            tex = torch.as_tensor(np.asarray(Image.open(path / "materials" / m["texture"]).convert("RGBA"),
                                             dtype=np.float32) / 255)
        mats.append(Material(torch.tensor(m["base_color_factor"], dtype=torch.float32), tex))
    times = torch.as_tensor(gt["times"][sel], dtype=torch.float64)
    return BenchItem(id=path.name, frames=Frames(rgba, float(meta["fps"]), source=str(path), timestamps=times),
                     gt_vertices=torch.as_tensor(gt["verts"][sel], dtype=torch.float32),
                     faces=torch.as_tensor(gt["faces"], dtype=torch.int64),
                     uv=torch.as_tensor(gt["uv"], dtype=torch.float32),
                     face_material=torch.as_tensor(gt["face_material"].astype(np.int64)),
                     materials=mats, camera=cam, times=times.float(),
                     frame_indices=sel)


def linear_to_srgb(x: Tensor) -> Tensor:
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(1e-8) ** (1 / 2.4) - 0.055)


def vertex_colors(item: BenchItem) -> Tensor:
    """(V, 3) sRGB base colour at every ground-truth vertex: factor x texture(uv) of the vertex's material.

    The ground truth is split at uv seams, so each vertex has one uv and (almost always) one material. The factor
    is linear; it is converted to sRGB before it multiplies the (sRGB) texture: exact for flat colours and for the
    factors of 1 that textured materials use.
    """
    V = item.uv.shape[0]
    mat_of_vertex = torch.zeros(V, dtype=torch.int64)
    mat_of_vertex[item.faces.reshape(-1)] = item.face_material.repeat_interleave(3)
    out = torch.zeros(V, 3)
    for k, mat in enumerate(item.materials):
        sel = mat_of_vertex == k
        if not sel.any():
            continue
        col = linear_to_srgb(mat.factor[:3]).expand(int(sel.sum()), 3)
        if mat.texture is not None:
            tex = mat.texture[..., :3]
            h, w = tex.shape[:2]
            uv = item.uv[sel] % 1.0  # glTF samplers repeat by default
            x = (uv[:, 0] * w).long().clamp(0, w - 1)
            y = (uv[:, 1] * h).long().clamp(0, h - 1)
            col = col * tex[y, x]
        out[sel] = col
    return out


def gt_mesh(item: BenchItem, t: int) -> Mesh:
    """The ground-truth mesh of selected frame t, with its base colour as vertex colours."""
    return Mesh(item.gt_vertices[t], item.faces, vertex_colors=vertex_colors(item))


def render_ground_truth(item: BenchItem, vertices: Tensor, cameras: Camera, ctx) -> tuple[Tensor, Tensor]:
    """The textured ground truth at positions ``vertices`` (V, 3) through cameras (N views): unlit base colour
    (factor x texture(uv) of each face's material, as the bench's frames were textured, bilinear, repeating)
    over black, and the antialiased coverage: rgb (N, H, W, 3), mask (N, H, W), as ``render.render`` gives them
    for an output mesh."""
    from .. import render as R

    v = vertices
    # one pass for coverage (antialiased, like the output's), one for the surface's uv and face, read exactly
    mask = R.render(ctx, Mesh(v, item.faces.to(v.device)), cameras, channels=("mask",))["mask"]
    uvw = torch.cat([item.uv, torch.zeros_like(item.uv[:, :1])], -1).to(v)
    attr = R.render(ctx, Mesh(v, item.faces.to(v.device), vertex_colors=uvw), cameras, channels=("rgb", "tri_id"),
                    antialias_edges=False)
    uv, tri = attr["rgb"][..., :2] % 1.0, attr["tri_id"]
    seen = tri >= 0
    mat = item.face_material.to(tri.device)[tri.clamp_min(0)]
    col = torch.zeros(*tri.shape, 3, dtype=v.dtype, device=v.device)
    for k, m in enumerate(item.materials):
        sel = seen & (mat == k)
        if not bool(sel.any()):
            continue
        c = linear_to_srgb(m.factor[:3].to(v)).expand(int(sel.sum()), 3)
        if m.texture is not None:
            c = c * R.sample_texture(m.texture[..., :3].to(v), uv[sel])
        col[sel] = c
    return col * mask[..., None], mask
