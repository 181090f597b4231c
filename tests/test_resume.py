"""`v2m4 run --resume` after Ctrl-C: the camera search continues with the next keyframe (each keyframe's pose is
checkpointed as it is settled) to the uninterrupted run's cameras, and the run says where it goes on."""

import json

import numpy as np

from conftest import TINY_CONFIG
from test_pipeline import small_demo, v2m4


def test_camera_search_resumes_mid_stage_to_the_uninterrupted_result(tmp_path, interrupt_after):
    item = small_demo(tmp_path, n=8)
    full, cut = tmp_path / "full", tmp_path / "cut"

    def run(out, *extra):
        return v2m4("run", item / "frames", "-o", out, "--generator", f"synthetic:{item}", "--config", TINY_CONFIG,
                    "--resolution", "64", "--keyframes", "3", "--no-preview", "--json-log", *extra)

    def events(r):
        return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]

    def messages(r):
        return [e["message"] for e in events(r) if "message" in e]

    assert run(full).returncode == 0
    with interrupt_after("camera_search", 2):  # Ctrl-C once two keyframes' poses are settled
        r = run(cut)
    assert r.returncode == 130 and "--resume" in r.stderr
    assert not (cut / "checkpoints" / "camera.npz").exists()
    with interrupt_after("registration", 1):  # and again once registration is done, before the texture
        r = run(cut, "--resume")
    assert r.returncode == 130
    assert "resuming: the camera search continues after 2 of 3 keyframes" in messages(r)
    camera = [e for e in events(r) if e["stage"] == "camera" and "progress" in e]
    assert camera[0]["progress"] == 2 and camera[-1]["progress"] == camera[0]["total"] == 3 + 2  # + backward pass
    r = run(cut, "--resume")
    assert r.returncode == 0
    assert "resuming: the texture stage was not finished and starts again from its beginning" in messages(r)
    a, b = np.load(full / "checkpoints" / "camera.npz"), np.load(cut / "checkpoints" / "camera.npz")
    assert np.array_equal(a["cam_from_world"], b["cam_from_world"]) and np.array_equal(a["scales"], b["scales"])
    a, b = np.load(full / "checkpoints" / "animation.npz"), np.load(cut / "checkpoints" / "animation.npz")
    assert np.allclose(a["anim_vertices"], b["anim_vertices"], atol=1e-5)
    assert np.allclose(a["mesh_texture"], b["mesh_texture"], atol=1e-5)
