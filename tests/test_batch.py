"""`v2m4 batch`: three small clips, one broken on purpose, give two complete outputs, one reported failure and a
correct summary, locally (Ray never imported) and on a local Ray; complete clips are skipped; a worker killed
mid-clip is rerun by Ray from the checkpoints and ends with the uninterrupted run's result."""

import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_CONFIG, write_pngs
from test_pipeline import small_demo, v2m4

# one worker runs this module when the suite is spread over processes (pytest-xdist): two local Ray clusters
# started at once would each see the other's worker processes in /proc
pytestmark = pytest.mark.xdist_group("ray")

# the tiny config without the texture stage (its fixed-size coverage figure costs seconds), 2 keyframes of 4 frames
TEST_ARGS = ["--config", str(TINY_CONFIG), "--resolution", "64", "--keyframes", "2", "--no-preview", "--no-texture"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """clip_a and clip_b: 4-frame bench-format items (frames + their synthetic generator's ground truth);
    clip_bad: fully transparent frames, which the run refuses."""
    root = tmp_path_factory.mktemp("clips")
    for name in ("clip_a", "clip_b"):
        tmp = root / f"tmp_{name}"
        tmp.mkdir()
        small_demo(tmp, n=4).rename(root / name)
        shutil.rmtree(tmp)
    write_pngs(root / "clip_bad" / "frames", 4, value_step=0)
    return [root / n / "frames" for n in ("clip_a", "clip_b", "clip_bad")]


def batch_args(clips, out, *extra):
    return ["batch", *clips, "-o", out, "--generator", "synthetic:{parent}", *TEST_ARGS, *extra]


@pytest.fixture(scope="module")
def local_batch(clips, tmp_path_factory):
    """The three clips through `v2m4 batch` here, with Ray made unimportable: the local path never needs it."""
    out = tmp_path_factory.mktemp("batch") / "out"
    with pytest.MonkeyPatch.context() as m:
        m.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError while this holds
        r = v2m4(*batch_args(clips, out))
    return r, out


def check_three_clip_summary(summary: dict, out: Path, executor: str) -> None:
    assert summary["executor"] == executor
    assert (summary["done"], summary["skipped"], summary["failed"]) == (2, 0, 1)
    by = {c["name"]: c for c in summary["clips"]}
    assert list(by) == ["clip_a", "clip_b", "clip_bad"]  # input order
    for name in ("clip_a", "clip_b"):
        c = by[name]
        assert c["status"] == "done" and c["error"] is None and c["attempts"] == 1
        assert c["figures"]["frames"] == 4 and c["figures"]["keyframes"] == 2 and 0 < c["figures"]["mask_iou"] <= 1
        assert {p.name for p in (out / name).iterdir()} >= {"animation.glb", "viewer.html", "report.json",
                                                             "checkpoints"}
    bad = by["clip_bad"]
    assert bad["status"] == "failed" and bad["attempts"] == 2  # retried once, then reported
    assert bad["error"] == "every frame is fully transparent: there is no object to reconstruct"
    assert not (out / "clip_bad" / "report.json").exists() and (out / "clip_bad" / "error.txt").is_file()


def test_local_batch_two_outputs_one_failure_and_a_summary(local_batch):
    r, out = local_batch
    assert r.returncode == 1, r.stderr  # a clip failed; the others still ran
    check_three_clip_summary(json.loads((out / "summary.json").read_text()), out, "local")
    table = r.stdout[r.stdout.index("| clip |"):]
    assert "| clip_bad | failed | 2 |" in table and "2 done, 0 skipped, 1 failed" in table


def test_batch_skips_complete_clips_and_refuses_a_changed_config(local_batch, clips):
    _, out = local_batch
    glb = out / "clip_a" / "animation.glb"
    before = glb.stat().st_mtime_ns
    r = v2m4(*batch_args(clips, out), "--quiet")
    assert r.returncode == 1
    s = json.loads((out / "summary.json").read_text())
    assert [(c["name"], c["status"], c["attempts"]) for c in s["clips"]] == [
        ("clip_a", "skipped", 0), ("clip_b", "skipped", 0), ("clip_bad", "failed", 2)]
    assert s["clips"][0]["figures"]["keyframes"] == 2 and glb.stat().st_mtime_ns == before
    # another seed would resume from checkpoints made with the first one: refused, per clip, in one line
    r = v2m4(*batch_args(clips[:1], out), "--seed", "1", "--quiet")
    s = json.loads((out / "summary.json").read_text())
    assert r.returncode == 1 and s["clips"][0]["status"] == "failed" and "--force" in s["clips"][0]["error"]
    assert glb.stat().st_mtime_ns == before
    # two inputs that would share an output folder: one line, exit 2, nothing run
    r = v2m4("batch", clips[0], clips[0], "-o", out / "clash", "--generator", "synthetic:{parent}")
    assert r.returncode == 2 and "both write" in r.stderr and not (out / "clash").exists()


def _ray_workers(title: bytes) -> list[int]:
    """Processes whose title (Ray names a busy worker ``ray::TASK``) starts with ``title``."""
    pids = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and (p / "cmdline").read_bytes().startswith(title):
                pids.append(int(p.name))
        except OSError:
            pass
    return pids


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'v2m4[cluster]'): the Ray path of "
                              "v2m4 batch is not tested")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds Ray's worker processes in /proc")
def test_ray_batch_survives_a_killed_worker_with_the_local_result(local_ray, local_batch, clips, tmp_path):
    """The same three clips on a local Ray (2 CPUs), every keyframe a generation task of its own; once clip_a's
    camera search is checkpointed, the workers running the clips' stages are killed. Ray reruns their tasks,
    which resume from the checkpoints: the batch ends as the local one did, with the same animations."""
    from v2m4.batch import BatchOptions, plan_clips, run_batch
    from v2m4.cli import build_parser, config_from_args

    args = build_parser().parse_args([str(a) for a in batch_args(clips, tmp_path / "out")])
    cfg = config_from_args(args)
    out = tmp_path / "out"
    box = {}

    def run():
        try:
            box["summary"] = run_batch(plan_clips(args.inputs, args.generator), out, cfg,
                                       BatchOptions(keyframes_per_task=1), ray_address="local", log="quiet")
        except BaseException as exc:  # noqa: BLE001 -- reported by the test below
            box["error"] = exc

    th = threading.Thread(target=run)
    th.start()
    camera, killed, mid_clip = out / "clip_a" / "checkpoints" / "camera.npz", [], None
    deadline = time.monotonic() + 150
    while th.is_alive() and not killed and time.monotonic() < deadline:
        if camera.exists():
            mid_clip = not (out / "clip_a" / "checkpoints" / "animation.npz").exists()
            for pid in _ray_workers(b"ray::clip_stages"):
                os.kill(pid, 9)
                killed.append(pid)
        time.sleep(0.02)
    th.join(timeout=150)
    assert "error" not in box, box.get("error")
    assert killed and mid_clip, "no clip_stages worker was killed mid-clip"
    summary = box["summary"].to_json()
    check_three_clip_summary(summary, out, "ray")
    assert json.loads((out / "summary.json").read_text()) == summary
    _, local_out = local_batch
    for name in ("clip_a", "clip_b"):
        assert len(list((out / name / "checkpoints").glob("gen_*.npz"))) == 2  # each its own task
        a = np.load(local_out / name / "checkpoints" / "animation.npz")
        b = np.load(out / name / "checkpoints" / "animation.npz")
        assert np.allclose(a["anim_vertices"], b["anim_vertices"], atol=1e-5)


@pytest.mark.parametrize("cmd", ["run", "batch"])
def test_help_formats(cmd, capsys):
    """argparse %-formats every help text: a stray % in one breaks `--help` of every command sharing it."""
    from v2m4.cli import build_parser

    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([cmd, "--help"])
    assert exit_.value.code == 0 and "--generator" in capsys.readouterr().out
