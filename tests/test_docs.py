"""docs/api.md's example runs as written: its python block is executed from a folder that sees the repository's
examples/, with only its ``cfg = ...`` line replaced by a tiny configuration (64 px frames, 3 keyframes)."""

import json
import re
import time

from conftest import REPO, tiny_config

API_DOC = REPO / "docs" / "api.md"
CONFIG_LINE = re.compile(r"^cfg = PipelineConfig\.fast\(\)(\s*#.*)?$", re.M)


def python_block(text: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1, f"docs/api.md should hold one python block, has {len(blocks)}"
    return blocks[0]


def test_api_example_runs(tmp_path, monkeypatch, capsys):
    code = python_block(API_DOC.read_text())
    assert len(CONFIG_LINE.findall(code)) == 1, "the example's config line changed: update this test"
    tiny = tiny_config(resolution=64).with_overrides({"keyframes": {"budget": 3}, "generation": {"max_faces": 800},
                                                      "output": {"preview_resolution": 64}})
    code = CONFIG_LINE.sub("cfg = TINY_CONFIG", code)
    (tmp_path / "examples").symlink_to(REPO / "examples", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    t0 = time.perf_counter()
    exec(compile(code, str(API_DOC), "exec"), {"TINY_CONFIG": tiny, "__name__": "__docs__"})
    seconds = time.perf_counter() - t0
    out = tmp_path / "out"
    assert {"animation.glb", "viewer.html", "preview.mp4", "report.json", "checkpoints"} <= {
        p.name for p in out.iterdir()}
    report = json.loads((out / "report.json").read_text())
    assert len(report["keyframes"]) == 3 and report["frames"] == 24
    assert 0.5 < report["input_view"]["mask_iou"] <= 1
    printed = capsys.readouterr().out
    assert "24 frames" in printed and "mask IoU" in printed
    print(f"docs/api.md example: {seconds:.1f} s")


def test_overview_figure_shows_the_input_above_the_reconstruction_turned(tmp_path):
    """docs/make_figure.py on a run folder: the input frames in the top row as they are, and below, the
    reconstruction from a camera turned about the object (a bar along x, seen end-on once turned by 90 degrees)."""
    import importlib.util

    import numpy as np
    import torch
    import trimesh
    from PIL import Image

    from v2m4.camera import orbit_camera
    from v2m4.stages.camera import CameraResult
    from v2m4.types import Animation, Mesh

    spec = importlib.util.spec_from_file_location("make_figure", REPO / "docs" / "make_figure.py")
    fig = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fig)
    box = trimesh.creation.box((1.0, 0.2, 0.2))
    mesh = Mesh(torch.tensor(box.vertices, dtype=torch.float32), torch.tensor(box.faces),
                vertex_colors=torch.full((len(box.vertices), 3), 0.9))
    moves = torch.tensor([[0.0, 0, 0], [0, 0.1, 0], [0, 0.2, 0]])
    anim = Animation(mesh, mesh.vertices[None] + moves[:, None], torch.arange(3.0) / 10, torch.arange(3))
    run = tmp_path / "run"
    anim.save(run / "checkpoints" / "animation.npz")
    cam = orbit_camera(torch.zeros(1), torch.zeros(1), torch.full((1,), 3.0), torch.zeros(1, 3), fov_deg=40,
                       resolution=(64, 64))
    CameraResult(cam, torch.ones(1), torch.ones(1, dtype=torch.bool), torch.zeros(1)).save(
        run / "checkpoints" / "camera.npz")
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    inputs = [rng.integers(0, 255, (64, 64, 4), dtype=np.uint8) | np.array([0, 0, 0, 255], np.uint8)
              for _ in range(3)]
    for i, a in enumerate(inputs):
        Image.fromarray(a).save(frames / f"{i:04d}.png")
    out = fig.overview(run, frames, tmp_path / "overview.png", columns=3, size=64, turn_deg=90)
    page = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert page.shape == (2 * (22 + 64), 3 * 64 + 2 * 4, 3)
    top = page[22:22 + 64, 2 * (64 + 4):]  # the last input frame, opaque: as it is
    assert np.abs(top - inputs[2][..., :3]).mean() < 2
    # the bar seen along its length is narrower than seen from the video camera's side
    width = lambda turn: int((np.abs(fig.render_turned(anim, cam, [0], turn, 64)[0].astype(int) - 128)  # noqa: E731
                              .sum(-1) > 30).any(0).sum())
    assert width(90) < 0.5 * width(0)
    bottom = page[2 * 22 + 64:, :64]
    assert np.array_equal(bottom, fig.render_turned(anim, cam, [0], 90, 64)[0])
