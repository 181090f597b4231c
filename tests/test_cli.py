"""The command line: bad input gives one line on stderr, exit code 2, and no traceback."""

import subprocess
import sys

import pytest

from conftest import DEMO_DIR, bad_frames_input, write_pngs


from test_pipeline import v2m4  # noqa: E402 -- `v2m4 ARGS` in this process, as the console script runs it


@pytest.mark.parametrize("case", ["missing", "empty", "video", "sizes", "mesh_count"])
def test_bad_input_one_line_exit_2(tmp_path, case):
    extra = []
    if case == "mesh_count":
        import trimesh

        target = tmp_path / "frames"
        write_pngs(target, 3)
        meshes = tmp_path / "meshes"
        meshes.mkdir()
        for i in range(2):
            trimesh.creation.box().export(meshes / f"{i}.ply")
        extra = ["--meshes", meshes]
    else:
        target = bad_frames_input(tmp_path, case)
    r = v2m4("inspect", target, *extra)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("v2m4: error:"), r.stderr
    assert "Traceback" not in r.stderr


def test_inspect_reads_the_demo_frames():
    r = v2m4("inspect", DEMO_DIR / "demo" / "frames")
    assert r.returncode == 0 and "24 frames, 256x256" in r.stdout


def bench(*args):
    """`python -m v2m4.bench ARGS` in this process (its ``main``), as ``v2m4`` runs the console script."""
    import contextlib
    import io

    from v2m4.bench.__main__ import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def test_bench_quick_on_demo_writes_table(tmp_path):
    # no novel views: their columns are tested on their own (tests/metrics/test_novel_view.py), and they were a
    # third of this run
    r = bench("--method", "naive", "--items", "demo", "--bench-dir", DEMO_DIR, "--quick", "--novel-views", "0",
              "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    assert "| demo |" in r.stdout
    import json

    res = json.loads((tmp_path / "naive.json").read_text())
    row = res["items"]["demo"]
    for k in ["mask_iou", "psnr", "ssim", "chamfer_once", "fscore1_once", "fscore2_once", "chamfer_per_frame",
              "fscore2_per_frame", "topology_constant", "jitter", "sec_per_frame"]:
        assert k in row, k
    assert row["topology_constant"] == 0  # per-frame generated meshes never share a topology


def test_unknown_method_is_one_line():
    r = bench("--method", "magic", "--items", "demo", "--bench-dir", DEMO_DIR)
    assert r.returncode == 2 and "unknown bench method" in r.stderr


def test_missing_pyav_is_one_line_before_any_work(tmp_path, monkeypatch):
    """An image without PyAV: the preview's need is named at once, and the output folder is not made."""
    demo = DEMO_DIR / "demo"
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` raises ImportError while this holds
    r = v2m4("run", demo / "frames", "--generator", f"synthetic:{demo}", "-o", tmp_path / "out")
    assert r.returncode == 2, r.stderr
    assert "pip install av" in r.stderr and "--no-preview" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()
