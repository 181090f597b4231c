"""The command line: bad input gives one line on stderr, exit code 2, and no traceback."""

import subprocess
import sys

import pytest

from conftest import DEMO_DIR, bad_frames_input, write_pngs


def v2m4(*args):
    return subprocess.run([sys.executable, "-m", "v2m4.cli", *map(str, args)], capture_output=True, text=True)


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
    return subprocess.run([sys.executable, "-m", "v2m4.bench", *map(str, args)], capture_output=True, text=True)


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


def test_missing_pyav_is_one_line_before_any_work(tmp_path):
    """An image without PyAV: the preview's need is named at once, and the output folder is not made."""
    demo = DEMO_DIR / "demo"
    code = ("import sys; sys.modules['av'] = None; from v2m4.cli import main; "
            f"sys.exit(main(['run', {str(demo / 'frames')!r}, '--generator', 'synthetic:{demo}', "
            f"'-o', {str(tmp_path / 'out')!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "pip install av" in r.stderr and "--no-preview" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()
