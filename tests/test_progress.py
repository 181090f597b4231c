"""Progress: every stage that can take long shows a bar with an estimate; with ``--json-log`` each bar is JSON
lines of {"stage", "progress", "total", "elapsed_s", "eta_s"}, from 0 up to total."""

import json

from conftest import TINY_CONFIG
from test_pipeline import small_demo, v2m4
from v2m4.progress import Log


def test_json_log_has_a_moving_bar_per_long_stage(tmp_path):
    item = small_demo(tmp_path, n=6)
    config = tmp_path / "tiny.json"  # tests/tiny_config.json with coarser generated meshes: a faster run
    config.write_text(json.dumps({**json.loads(TINY_CONFIG.read_text()), "generation": {"max_faces": 800}}))
    r = v2m4("run", item / "frames", "-o", tmp_path / "out", "--generator", f"synthetic:{item}", "--config", config,
             "--resolution", "64", "--keyframes", "3", "--json-log")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    bars: dict[str, list[dict]] = {}
    for e in events:
        if "progress" in e:
            bars.setdefault(e["stage"], []).append(e)
    # the stages that grow with the clip and the config: generation, the camera search (a keyframe a unit),
    # registration (a step of the whole-clip fit a unit) and the texture fit (a step a unit)
    assert {"generate", "camera", "register", "texture"} <= set(bars), sorted(bars)
    for stage in ("generate", "camera", "register", "texture"):
        evs = bars[stage]
        done = [e["progress"] for e in evs]
        total = evs[0]["total"]
        assert total >= 2 and all(e["total"] == total for e in evs), (stage, evs)
        assert done[0] == 0 and done[-1] == total, (stage, done)
        assert all(a < b for a, b in zip(done, done[1:])), (stage, done)
        assert all(e["eta_s"] is not None and e["eta_s"] >= 0 for e in evs[1:]), (stage, evs)
        assert evs[-1]["eta_s"] == 0
    assert bars["texture"][0]["total"] == 5  # tests/tiny_config.json's texture iters
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert bars["camera"][0]["total"] == len(report["keyframes"])


def test_json_bar_is_throttled_but_keeps_first_and_last(capsys):
    log = Log("json")
    with log.bar(1000, "texture", unit="step") as bar:
        for i in range(1, 1001):
            bar.to(i)
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    done = [e["progress"] for e in lines]
    assert done[:2] == [0, 1] and done[-1] == 1000 and len(done) < 50


def test_human_bar_shows_an_estimate(capsys):
    log = Log("bars")
    with log.bar(4, "camera", unit="keyframe") as bar:
        bar._tqdm.mininterval = 0  # draw every update
        for _ in range(4):
            bar.update(1)
    err = capsys.readouterr().err
    assert "camera" in err and "4/4" in err and "<" in err  # tqdm's "elapsed<remaining"
