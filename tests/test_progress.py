"""Progress: every stage that can take long shows a bar with an estimate; with ``--json-log`` each bar is JSON
lines of {"stage", "progress", "total", "elapsed_s", "eta_s"}, from 0 up to total."""

import json

from conftest import TINY_CONFIG
from test_pipeline import DEMO, v2m4
from v2m4.data.bench import looped_item
from v2m4.progress import Log


# A run's stages longer than 5 s show a moving bar. The test's clip and config make the stages' work about a
# hundred times smaller, so its threshold is too; the property checked is the same. What a stage does outside
# its bar (imports, set-up) does not shrink with the work, so that is held to the real threshold.
THRESHOLD_S = 0.25
SILENT_S = 5.0
# tests/tiny_config.json, lighter still where the work does not grow with the clip's frames, and a preview at
# the frames' size: the bars' units and the stages that show them are the same
CONFIG = {"camera": {"n_samples": 32, "refine_iters": 3},
          "joint": {"global_iters": 2, "iters": 3},
          "output": {"preview_resolution": 64}}


def long_demo(tmp_path, n=48):
    """A clip of n frames: the demo's 24 frames over and over (its walk loops), with a synthetic item to match."""
    return looped_item(DEMO, n, tmp_path / "item")


def silent_stages(events: list[dict], seconds: dict[str, float], threshold: float,
                  silent: float = SILENT_S) -> dict[str, str]:
    """The stages of a run (``seconds``, report.json's) longer than ``threshold`` without a moving bar, and why: a
    moving bar is the stage's own (named after it), at least two progress events, strictly increasing from where
    it opened to its total (the last event's: a stage may add work as it goes, as registration does when it fits a
    smoothed clip again), with an estimate of the time left on every event after the first; and the stage
    spends no more than ``silent`` seconds outside its bar."""
    bars: dict[str, list[dict]] = {}
    for e in events:
        if "progress" in e:
            bars.setdefault(e["stage"], []).append(e)
    out = {}
    for stage, secs in seconds.items():
        evs = bars.get(stage, [])
        if secs <= threshold:
            continue
        done = [e["progress"] for e in evs]
        if len(evs) < 2:
            out[stage] = f"{secs:.2f} s with {len(evs)} progress events"
        elif not all(a < b for a, b in zip(done, done[1:])) or done[-1] != evs[-1]["total"]:
            out[stage] = f"its bar went {done} of {evs[-1]['total']}"
        elif any(e["eta_s"] is None for e in evs[1:]):
            out[stage] = "no estimate of the time left"
        elif secs - evs[-1]["elapsed_s"] > silent:
            out[stage] = f"{secs - evs[-1]['elapsed_s']:.2f} s of {secs:.2f} s outside its bar"
    return out


def test_every_long_stage_of_a_48_frame_run_shows_a_moving_bar(tmp_path):
    item = long_demo(tmp_path)
    config = tmp_path / "config.json"
    tiny = json.loads(TINY_CONFIG.read_text())
    config.write_text(json.dumps({k: {**tiny.get(k, {}), **CONFIG.get(k, {})} for k in {*tiny, *CONFIG}}))
    r = v2m4("run", item / "frames", "-o", tmp_path / "out", "--generator", f"synthetic:{item}", "--config", config,
             "--resolution", "64", "--keyframes", "3", "--json-log")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["frames"] == 48
    seconds = report["seconds"]
    long = {s for s, v in seconds.items() if v > THRESHOLD_S}
    # not an empty check: the longest stage is held to it (which others pass the threshold depends on the
    # machine's speed and load: a quiet one searches the cameras, bakes the tiny texture and writes the outputs in
    # under it; the bars of those are checked below by their totals)
    assert "register" in long, seconds
    assert silent_stages(events, seconds, THRESHOLD_S) == {}, seconds
    totals = {e["stage"]: e["total"] for e in events if "progress" in e}
    K = len(report["keyframes"])
    assert totals["generate"] == K and totals["camera"] == 2 * K - 1  # the fast preset's backward pass: K - 1 more
    # a step a unit: the keyframes' global alignment's 2, then the whole-clip fit's 3 (the config above), and where
    # the clip was smoothed the second fit's quarter of them (at least 1)
    again = 1 if report["registration"]["temporal_weight"] > 0 else 0
    assert totals["register"] == 2 + 3 + again and totals["texture"] == 5
    assert totals["report"] == 48 + 1  # every frame's input-view figures, then the stages' own
    assert totals["export"] == 2 + 48  # the GLB, every frame of the preview, the viewer


def test_a_silent_stage_is_found():
    """What the run above is held to: a long stage with no bar, a bar that stays at 0, or one that opens late."""
    bar = [{"stage": "texture", "progress": 0, "total": 4, "elapsed_s": 0.0, "eta_s": None},
           {"stage": "texture", "progress": 1, "total": 4, "elapsed_s": 0.5, "eta_s": 1.5},
           {"stage": "texture", "progress": 4, "total": 4, "elapsed_s": 2.0, "eta_s": 0.0}]
    assert silent_stages(bar, {"texture": 2.1, "keyframes": 0.1}, 1.0, 1.0) == {}
    assert "0 progress events" in silent_stages(bar, {"texture": 2.1, "export": 3.0}, 1.0, 1.0)["export"]
    assert "went [0, 0]" in silent_stages(bar[:1] * 2, {"texture": 2.1}, 1.0, 1.0)["texture"]
    assert "estimate" in silent_stages([bar[0], {**bar[2], "eta_s": None}], {"texture": 2.1}, 1.0, 1.0)["texture"]
    assert "outside its bar" in silent_stages(bar, {"texture": 3.5}, 1.0, 1.0)["texture"]


def test_json_bar_is_throttled_but_keeps_first_and_last(capsys):
    log = Log("json")
    with log.bar(1000, "texture", unit="step") as bar:
        for i in range(1, 1001):
            bar.to(i)
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    done = [e["progress"] for e in lines]
    assert done[:2] == [0, 1] and done[-1] == 1000 and len(done) < 50


def test_a_bar_whose_work_grows_reports_the_new_total(capsys):
    # a stage that finds more work on its way (registration fitting the clip a second time) says so, in both modes
    log = Log("json")
    with log.bar(10, "register", unit="step") as bar:
        bar.to(10)
        bar.to(15, 20)
        bar.to(20, 20)
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines[-1]["progress"] == 20 and lines[-1]["total"] == 20 and lines[-1]["eta_s"] == 0.0
    with Log("bars").bar(10, "register", unit="step") as bar:
        bar.to(10)
        bar.to(12, 20)
        assert bar._tqdm.total == 20 and bar._tqdm.n == 12


def test_human_bar_shows_an_estimate(capsys):
    log = Log("bars")
    with log.bar(4, "camera", unit="keyframe") as bar:
        bar._tqdm.mininterval = 0  # draw every update
        for _ in range(4):
            bar.update(1)
    err = capsys.readouterr().err
    assert "camera" in err and "4/4" in err and "<" in err  # tqdm's "elapsed<remaining"


def test_estimate_leaves_out_the_first_unit_and_what_a_resumed_stage_had_done(monkeypatch, capsys):
    from v2m4 import progress

    now = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    bar = Log("quiet").bar(11, "texture", unit="step")
    now[0] = 10.0  # the stage's set-up and its first step
    bar.update(1)
    assert bar.eta(now[0]) == 100.0  # only the first unit's pace is known yet
    for _ in range(5):
        now[0] += 1.0
        bar.update(1)
    assert bar.eta(now[0]) == 5.0  # 5 steps left at the steps' pace, 1 s (the mean since the start is 2.5 s)
    resumed = Log("json").bar(10, "camera", unit="keyframe", initial=4)
    now[0] += 2.0
    resumed.update(1)
    first, second = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert first["progress"] == 4 and first["eta_s"] is None
    assert second["progress"] == 5 and second["eta_s"] == 10.0  # 5 left at this run's pace, not 2/5 s each
