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
