"""OUT/viewer.html in a real browser (headless Chromium, offline): it loads from file:// with no request leaving the
page, plays, its canvas at three sampled times matches our renderer's silhouettes of the same frames, scrubbing
changes the frame, and no console errors. ``v2m4 view`` finds the page.

``python tests/export/test_viewer.py`` writes the two screenshots of docs/ (docs/viewer_t0.png, docs/viewer_t1.png)
from the bundled demo at its own size."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from browser import browse, demo_outputs, iou, needs_browser, png_mask, silhouettes  # noqa: E402

DOCS = Path(__file__).resolve().parents[2] / "docs"


# a mouse drag on the canvas (OrbitControls), then the canvas
ORBIT = """(() => { const c = document.getElementById('view'); const b = c.getBoundingClientRect();
  const ev = (type, x, y) => c.dispatchEvent(new PointerEvent(type, { clientX: b.left + x, clientY: b.top + y,
    pointerId: 1, pointerType: 'mouse', button: 0, buttons: 1, bubbles: true }));
  ev('pointerdown', 100, 100); ev('pointermove', 180, 120); ev('pointerup', 180, 120);
  return v2m4.capture(); })()"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("viewer") / "out"
    return {"out": out, **demo_outputs(out)}


def test_every_run_writes_a_self_contained_viewer(run):
    page = (run["out"] / "viewer.html").read_text()
    assert "three.js" in page and "Permission is hereby granted" in page  # the vendored library and its licence
    assert "<script src" not in page and "import(" not in page  # nothing loaded from elsewhere
    assert len(run["report"]["input_view_frames"]["mask_iou"]) == len(run["anim"])


@needs_browser
def test_viewer_plays_scrubs_and_matches_our_silhouettes(run):
    times = [float(t) for t in run["anim"].times]
    sampled = [0, 1, 3]
    scrub = ("(() => { const s = document.getElementById('scrub'); s.value = String(v2m4.times[2]);"
             " s.dispatchEvent(new Event('input')); return [v2m4.frameIndex(), document.getElementById('frame').src,"
             " v2m4.capture()]; })()")
    r = browse(run["out"] / "viewer.html", [
        "document.getElementById('frame').src",
        "(v2m4.play(), v2m4.playing())", {"wait_ms": 300}, "v2m4.time()", "(v2m4.pause(), v2m4.playing())",
        "v2m4.setMode('silhouette')",
        *[f"(v2m4.setTime({times[i]}), v2m4.capture())" for i in sampled],
        "v2m4.setTime(v2m4.times[0])", scrub, ORBIT, "(v2m4.resetView(), v2m4.capture())"])
    res = r["results"]
    assert r["pageErrors"] == [] and [c for c in r["console"] if c["type"] == "error"] == []
    assert r["refused"] == []
    first_src, playing, t_played, paused = res[0], res[1], res[3], res[4]
    assert playing is True and paused is False and t_played > times[0]
    masks = [png_mask(u) for u in res[6:9]]
    ours = silhouettes(run["anim"], run["camera"], sampled, masks[0].shape)
    ious = [iou(a, b) for a, b in zip(masks, ours)]
    assert min(ious) >= 0.9, ious
    assert all(m.mean() > 0.02 for m in masks)  # the object is in view, not an empty frame matching an empty one
    index, src, shot = res[10]
    assert index == 2 and src != first_src  # the scrubber moved both panes
    moved = png_mask(shot)
    assert iou(moved, masks[0]) < 0.99 and iou(moved, silhouettes(run["anim"], run["camera"], [2], moved.shape)[0]) >= 0.9
    orbited, reset = png_mask(res[11]), png_mask(res[12])  # a drag orbits the view; "input view" brings it back
    assert iou(orbited, moved) < 0.9 and iou(reset, moved) == 1.0


@needs_browser
def test_lit_view_shows_the_base_colour_under_the_pages_lights(run):
    r = browse(run["out"] / "viewer.html", [
        "v2m4.setTime(v2m4.times[0])", "(v2m4.setMode('texture'), v2m4.capture())",
        "(v2m4.setMode('lit'), v2m4.capture())", "document.getElementById('mode').value"])
    assert r["pageErrors"] == [] and [c for c in r["console"] if c["type"] == "error"] == []
    unlit, lit, chosen = r["results"][1:4]
    assert chosen == "lit" and lit != unlit


def screenshots(page: Path, shots: list[Path]) -> dict:
    """The page at its first frame (texture), then at its third with the wireframe on."""
    return browse(page, [
        "v2m4.setTime(v2m4.times[0])", {"screenshot": str(shots[0])},
        "(document.getElementById('wire').click(), v2m4.setTime(v2m4.times[2]))", {"screenshot": str(shots[1])}],
        size=(1000, 700))


@needs_browser
def test_viewer_screenshots(run, tmp_path):
    shots = [tmp_path / "viewer_t0.png", tmp_path / "viewer_t1.png"]
    r = screenshots(run["out"] / "viewer.html", shots)
    assert r["pageErrors"] == [] and [c for c in r["console"] if c["type"] == "error"] == []
    assert shots[0].read_bytes() != shots[1].read_bytes()


def test_view_command(run, monkeypatch, capsys):
    import webbrowser

    from v2m4.cli import main

    opened = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
    assert main(["view", str(run["out"])]) == 0
    assert capsys.readouterr().out.strip() == str((run["out"] / "viewer.html").resolve())
    assert opened == [(run["out"] / "viewer.html").resolve().as_uri()]
    assert main(["view", str(run["out"] / "checkpoints")]) == 2
    assert "viewer.html" in capsys.readouterr().err


if __name__ == "__main__":  # docs/viewer_t0.png and docs/viewer_t1.png from the demo at 256 px, every other frame
    import tempfile

    sys.path.insert(0, str(DOCS.parent))
    with tempfile.TemporaryDirectory() as tmp:
        demo_outputs(Path(tmp) / "out", frames_picked=range(0, 24, 2), size=256)
        screenshots(Path(tmp) / "out" / "viewer.html", [DOCS / "viewer_t0.png", DOCS / "viewer_t1.png"])


def test_a_missing_bundle_costs_the_page_not_the_run(tmp_path, monkeypatch):
    import v2m4.export.viewer as viewer

    monkeypatch.setattr(viewer, "BUNDLE", tmp_path / "absent.js")
    with pytest.warns(UserWarning, match="npm run build-viewer"):
        report = demo_outputs(tmp_path / "out", frames_picked=(0, 6))["report"]
    assert any("build-viewer" in w for w in report["warnings"])
    assert (tmp_path / "out" / "animation.glb").is_file() and not (tmp_path / "out" / "viewer.html").exists()
