"""Frames and meshes from files; every bad input gives one clear line."""

import numpy as np
import pytest
import torch

from conftest import bad_frames_input, write_pngs
from v2m4 import Mesh
from v2m4.errors import V2M4Error
from v2m4.io.frames import read_frames
from v2m4.io.mesh import load_mesh, save_mesh


def test_folder_natural_sort_alpha_and_masks(tmp_path):
    write_pngs(tmp_path / "fr", 3, mode="RGB", names=["f10.png", "f2.png", "f1.png"])
    f = read_frames(tmp_path / "fr", fps=12)
    assert f.rgba.shape == (3, 6, 8, 4) and f.fps == 12
    # f1 (value 20), f2 (10), f10 (0) in natural order
    assert [round(float(x) * 255) for x in f.rgba[:, 0, 0, 0]] == [20, 10, 0]
    assert (f.mask == 1).all()
    write_pngs(tmp_path / "m", 3, mode="L")
    fm = read_frames(tmp_path / "fr", masks=tmp_path / "m")
    assert round(float(fm.mask[1, 0, 0]) * 255) == 10


def test_video_roundtrip(tmp_path):
    import av

    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 32, 16, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((16, 32, 3), 40 * i, np.uint8), format="rgb24")
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    f = read_frames(path, max_size=16)
    assert f.rgba.shape == (5, 8, 16, 4) and abs(f.fps - 10) < 1e-6


@pytest.mark.parametrize("case,match", [
    ("missing", "does not exist"),
    ("empty", "has no images"),
    ("single", "at least 2"),
    ("sizes", "all frames must share one size"),
    ("video", "cannot decode video"),
    ("mask_count", "masks but there are"),
    ("corrupt_image", "cannot read image"),
])
def test_bad_inputs(tmp_path, case, match):
    kw = {}
    if case == "mask_count":
        path = tmp_path / "fr"
        write_pngs(path, 3)
        write_pngs(tmp_path / "m", 2, mode="L")
        kw["masks"] = tmp_path / "m"
    elif case == "corrupt_image":
        path = tmp_path / "fr"
        write_pngs(path, 2)
        (path / "f5.png").write_bytes(b"garbage")
    else:
        path = bad_frames_input(tmp_path, case)
    with pytest.raises(V2M4Error, match=match) as e:
        read_frames(path, **kw)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("suffix", [".obj", ".ply", ".glb"])
def test_mesh_roundtrip_with_colours(tmp_path, suffix):
    v = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float32)
    f = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    c = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], dtype=torch.float32)
    save_mesh(Mesh(v, f, vertex_colors=c), tmp_path / f"m{suffix}")
    m = load_mesh(tmp_path / f"m{suffix}")
    assert m.faces.shape == (4, 3)
    torch.testing.assert_close(m.vertices[m.faces].mean(1).sort(0).values, v[f].mean(1).sort(0).values)
    if suffix != ".obj":
        assert m.vertex_colors is not None


def test_mesh_errors(tmp_path):
    with pytest.raises(V2M4Error, match="does not exist"):
        load_mesh(tmp_path / "x.obj")
    (tmp_path / "bad.ply").write_bytes(b"ply\nformat nonsense\n")
    with pytest.raises(V2M4Error):
        load_mesh(tmp_path / "bad.ply")


def test_selected_frames_keep_their_times(tmp_path):
    from v2m4.types import Frames

    frames = Frames(torch.rand(6, 4, 4, 4), fps=10.0)
    torch.testing.assert_close(frames.times, torch.arange(6, dtype=torch.float32) / 10)
    picked = frames.select([0, 2, 5])  # uneven steps, as the bench's keyframes are
    torch.testing.assert_close(picked.times, torch.tensor([0.0, 0.2, 0.5]))
    torch.testing.assert_close(picked.select([1, 2]).times, torch.tensor([0.0, 0.3]))
    picked.save(tmp_path / "f.npz")
    torch.testing.assert_close(Frames.load(tmp_path / "f.npz").times, picked.times)
    with pytest.raises(V2M4Error, match="timestamps"):
        Frames(torch.rand(3, 4, 4, 4), fps=10.0, timestamps=torch.zeros(2))
