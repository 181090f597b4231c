"""`v2m4 run`: the whole pipeline from frames to files; bad input gives one line, exit 2 and no output; an
interrupted run resumes to the same result as an uninterrupted one."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import DEMO_DIR, TINY_CONFIG, bad_frames_input, write_pngs
from v2m4.export.validate import validator_available

DEMO = DEMO_DIR / "demo"
TINY = json.loads(TINY_CONFIG.read_text())


def v2m4(*args, env=None):
    """`v2m4 ARGS` as a user runs it: its exit code, stdout and stderr. In this process (``cli.main``, the console
    script's entry) unless the test changes the environment, which needs a process of its own; a fresh process
    pays seconds of imports (torch and the package's own) that the suite need not repeat."""
    if env:
        return subprocess.run([sys.executable, "-m", "v2m4.cli", *map(str, args)], capture_output=True, text=True,
                              env={**os.environ, **env})
    import contextlib
    import io
    import warnings

    from v2m4.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("default")  # as a fresh process shows them: once per place, not once per session
        code = main([str(a) for a in args])
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def small_demo(tmp_path, n=8):
    """The first n demo frames at their size, with a matching synthetic item (same frames, same ground truth)."""
    item = tmp_path / "item"
    shutil.copytree(DEMO, item)
    frames = sorted((item / "frames").iterdir())
    for f in frames[n:]:
        f.unlink()
    gt = dict(np.load(item / "gt_mesh.npz"))
    gt["verts"] = gt["verts"][:n]
    gt["times"] = gt["times"][:n]
    np.savez(item / "gt_mesh.npz", **gt)
    meta = json.loads((item / "meta.json").read_text())
    meta["n_frames"] = n
    if "times" in meta:
        meta["times"] = meta["times"][:n]
    (item / "meta.json").write_text(json.dumps(meta))
    return item


def run_tiny(item, out, *extra, env=None):
    return v2m4("run", item / "frames", "-o", out, "--generator", f"synthetic:{item}", "--config", TINY_CONFIG,
                "--resolution", "64", "--quiet", *extra, env=env)


def test_run_writes_a_valid_asset(tmp_path):
    item = small_demo(tmp_path)
    out = tmp_path / "out"
    r = run_tiny(item, out, "--also", "ply,usd", "--rig", "4")
    assert r.returncode == 0, r.stderr
    assert {p.name for p in out.iterdir()} >= {"animation.glb", "preview.mp4", "report.json", "checkpoints",
                                                "meshes_ply", "animation.usda", "animation_rigged.glb"}
    assert len(list((out / "meshes_ply").glob("*.ply"))) == 8
    rep = json.loads((out / "report.json").read_text())
    assert rep["keyframes"][0] == 0 and rep["keyframes"][-1] == 7
    assert 0 < rep["input_view"]["mask_iou"] <= 1
    if validator_available() is None:
        assert rep["glb"]["validator"]["errors"] == 0 and rep["glb"]["validator"]["warnings"] == 0
    # the rig: 4 bones fitted to the vertex animation, its error against it reported
    assert rep["rig"]["bones"] == 4 and 0 <= rep["rig"]["rms_err"] <= rep["rig"]["max_err"] < 1
    # a second run into the same folder is refused, and leaves it as it was
    before = sorted(p.name for p in out.rglob("*"))
    r2 = run_tiny(item, out)
    assert r2.returncode == 2 and "--force" in r2.stderr
    assert sorted(p.name for p in out.rglob("*")) == before


def test_resume_after_interrupt_matches_uninterrupted(tmp_path, interrupt_after, monkeypatch):
    import contextlib

    from v2m4 import pipeline
    from v2m4.cli import main

    @contextlib.contextmanager
    def interrupt_mid_registration(step):
        original = pipeline.register_clip

        def cut_short(*a, progress=None, **kw):
            def tick(done, total):
                if done >= step:
                    raise KeyboardInterrupt(f"test interrupt at registration step {done}")
                progress(done, total)
            return original(*a, progress=tick, **kw)
        with monkeypatch.context() as m:
            m.setattr(pipeline, "register_clip", cut_short)
            yield

    item = small_demo(tmp_path)
    full, cut = tmp_path / "full", tmp_path / "cut"

    def run(out, *extra):
        return main(["run", str(item / "frames"), "-o", str(out), "--generator", f"synthetic:{item}", "--config",
                     str(TINY_CONFIG), "--resolution", "64", "--quiet", "--no-preview", *extra])

    assert run(full) == 0
    with interrupt_after("gen_", 2):
        assert run(cut) == 130
    assert not (cut / "animation.glb").exists()
    assert len(list((cut / "checkpoints").glob("gen_*.npz"))) == 2
    # Ctrl-C inside the whole-clip fit (its 2nd step, after the 3 of the global alignment): resume refits it
    with interrupt_mid_registration(step=TINY["joint"]["global_iters"] + 2):
        assert run(cut, "--resume") == 130
    assert (cut / "checkpoints" / "camera.npz").exists()
    assert not (cut / "checkpoints" / "registration.npz").exists()
    with interrupt_after("registration", 1):
        assert run(cut, "--resume") == 130
    assert not (cut / "animation.glb").exists()
    assert run(cut, "--resume") == 0
    a = np.load(full / "checkpoints" / "animation.npz")
    b = np.load(cut / "checkpoints" / "animation.npz")
    assert np.allclose(a["anim_vertices"], b["anim_vertices"], atol=1e-5)
    assert np.allclose(a["mesh_texture"], b["mesh_texture"], atol=1e-5)


def _nan_meshes(tmp_path, n):
    import trimesh

    d = tmp_path / "meshes"
    d.mkdir()
    for i in range(n):
        m = trimesh.creation.icosphere(subdivisions=2)
        v = m.vertices * (1 + 0.05 * i)
        if i == 3:
            v = v.copy()
            v[0, 0] = np.nan
        trimesh.Trimesh(v, m.faces, process=False).export(d / f"{i:03d}.ply")
    return d


@pytest.mark.parametrize("case", ["missing", "empty", "single", "sizes", "video", "transparent", "no_alpha",
                                  "mesh_count", "generator", "keyframes", "scorer_weights", "stereo_path"])
def test_bad_input_one_line_exit_2_no_output(tmp_path, case):
    gen = f"synthetic:{DEMO}"
    extra = []
    if case == "transparent":
        target = tmp_path / "frames"
        write_pngs(target, 4, value_step=0)
    elif case == "no_alpha":
        target = tmp_path / "frames"
        write_pngs(target, 4, mode="RGB")
    elif case == "mesh_count":
        target = DEMO / "frames"
        gen = f"meshes:{_nan_meshes(tmp_path, 5)}"
    elif case == "generator":
        target = DEMO / "frames"
        gen = "dreamfusion"
    elif case == "keyframes":
        target = DEMO / "frames"
        extra = ["--keyframes", "many"]
    elif case == "scorer_weights":  # a learned scorer asked for by name, without its package or weights
        target = DEMO / "frames"
        extra = ["--scorer", "dreamsim", "--weights", str(tmp_path / "none")]
    elif case == "stereo_path":
        target = DEMO / "frames"
        extra = ["--stereo", str(tmp_path)]
    else:
        target = bad_frames_input(tmp_path, case)
    out = tmp_path / "out"
    r = v2m4("run", target, "-o", out, "--generator", gen, "--config", TINY_CONFIG, *extra)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("v2m4: error:"), r.stderr
    assert not out.exists()


def test_nan_mesh_frame_is_skipped_and_interpolated(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    src = sorted((DEMO / "frames").iterdir())[:7]
    for f in src:
        shutil.copy(f, frames / f.name)
    meshes = _nan_meshes(tmp_path, 7)
    out = tmp_path / "out"
    r = v2m4("run", frames, "-o", out, "--generator", f"meshes:{meshes}", "--config", TINY_CONFIG, "--resolution", "64",
             "--keyframes", "7", "--quiet", "--no-preview")
    assert r.returncode == 0, r.stderr
    rep = json.loads((out / "report.json").read_text())
    assert 3 not in rep["keyframes"] and any("frame 3" in w for w in rep["warnings"])
    anim = np.load(out / "checkpoints" / "animation.npz")
    assert anim["anim_vertices"].shape[0] == 7 and np.isfinite(anim["anim_vertices"]).all()


def test_bench_full_is_the_run_of_v2m4_run(tmp_path):
    """`v2m4 run --generator synthetic:ITEM` and the bench's `full` method run one code path: the bench's config
    is the run's, and reconstruct with it gives the run's animation to the bit."""
    from dataclasses import asdict

    from v2m4.bench import PIPELINE_METHODS, BenchSettings, pipeline_config
    from v2m4.checkpoint import jsonable
    from v2m4.generators import make_generator
    from v2m4.io.frames import read_frames
    from v2m4.pipeline import reconstruct

    item = small_demo(tmp_path, n=6)
    fps = json.loads((item / "meta.json").read_text())["fps"]
    out = tmp_path / "out"
    r = run_tiny(item, out, "--keyframes", "3", "--fps", fps, "--no-preview")
    assert r.returncode == 0, r.stderr
    cfg = PIPELINE_METHODS["full"](pipeline_config(BenchSettings(method="full", resolution=64, max_frames=3,
                                                                 overrides=TINY)))
    assert json.loads((out / "report.json").read_text())["config"] == jsonable(asdict(cfg))
    frames = read_frames(item / "frames", fps=fps, max_size=64)
    result = reconstruct(frames, make_generator(f"synthetic:{item}", len(frames)), cfg, log="quiet")
    ran = np.load(out / "checkpoints" / "animation.npz")
    assert np.array_equal(ran["anim_vertices"], result.animation.vertices.numpy())


def test_bench_register_is_the_pipeline_without_its_texture(tmp_path):
    """`register` and `full` differ by the texture alone: same cameras and registered geometry, vertex colours
    instead of a texture map, and still a valid GLB."""
    from v2m4.bench import BenchSettings, bench_item

    item = small_demo(tmp_path, n=6)
    rows = {m: bench_item(str(item), BenchSettings(method=m, resolution=64, max_frames=3, overrides=TINY,
                                                   novel_views=0))
            for m in ("register", "full")}
    geometry = ("chamfer_once", "fscore2_once", "rot_err_med_deg", "trans_err_med", "flipped_frac",
                "edge_change_p99", "chamfer_generated")
    assert {k: rows["register"][k] for k in geometry} == {k: rows["full"][k] for k in geometry}
    # the textured mesh is split at its UV seams; render welds the copies, so only float noise may remain
    assert abs(rows["register"]["mask_iou"] - rows["full"]["mask_iou"]) < 0.01
    assert "unreached_frac" not in rows["register"] and "unreached_frac" in rows["full"]
    assert rows["register"]["psnr"] != rows["full"]["psnr"]  # the colours differ
    if "validator_errors" in rows["register"]:
        assert rows["register"]["validator_errors"] == 0


def test_the_chain_of_pairs_still_runs_for_the_bench(tmp_path, monkeypatch):
    """`register_seq`, the whole-clip fit's baseline: the pipeline's chain branch, not the fit, and a sane result."""
    from v2m4 import pipeline
    from v2m4.bench import BenchSettings, bench_item

    def no_fit(*a, **k):
        raise AssertionError("register_seq ran the whole-clip fit")

    monkeypatch.setattr(pipeline, "register_clip", no_fit)
    item = small_demo(tmp_path, n=6)
    row = bench_item(str(item), BenchSettings(method="register_seq", resolution=64, max_frames=3, overrides=TINY,
                                              novel_views=0))
    assert row["topology_constant"] == 1 and 0.5 < row["mask_iou"] <= 1 and 0 < row["fscore2_once"] <= 1


def test_true_pose_iou_puts_the_generated_meshes_back_where_they_were(tmp_path):
    """With the generator's perturbations off, its mesh is the ground truth moved: undone, it must render exactly
    the ground truth's silhouette; with them on, the silhouette changes a little."""
    from v2m4 import render as R
    from v2m4.bench import _true_pose_iou, load_selected_item
    from v2m4.generators.synthetic import SyntheticConfig, SyntheticGenerator
    from v2m4.metrics.image import mask_iou
    from v2m4.types import Mesh

    item = load_selected_item(str(small_demo(tmp_path, n=4)), 3, 64)
    exact = SyntheticConfig(remesh=False, noise_amplitude=0.0, color_jitter=0.0, flip_prob=1.0)  # turns only
    gen = SyntheticGenerator(item, config=exact)
    ctx = R.context("torch", torch.device("cpu"))
    gt = [R.render(ctx, Mesh(item.gt_vertices[t], item.faces), item.camera, channels=("mask",))["mask"][0]
          for t in range(3)]
    want = float(mask_iou(torch.stack(gt), item.frames.rgba[..., 3]).median())
    assert abs(_true_pose_iou(item, gen, [gen.generate(None, t) for t in range(3)]) - want) < 1e-3
    noisy = SyntheticGenerator(item)
    got = _true_pose_iou(item, noisy, [noisy.generate(None, t) for t in range(3)])
    assert 0.6 < got < want


def test_bench_true_pose_row_is_the_ceiling_of_re_posing(tmp_path, monkeypatch):
    """The `true_pose` row: zero pose error by construction, its input-view IoU is `mask_iou_true_pose`, and
    with the generator's perturbations off it is the ground truth itself (F-score 1 at every frame)."""
    from v2m4.bench import BenchSettings, bench_item
    from v2m4.generators import synthetic

    item = str(small_demo(tmp_path, n=4))
    row = bench_item(item, BenchSettings(method="true_pose", resolution=64, max_frames=3))
    assert row["rot_err_med_deg"] < 0.01 and row["trans_err_med"] < 1e-4
    assert row["mask_iou"] == row["mask_iou_true_pose"]
    exact = synthetic.SyntheticConfig(remesh=False, noise_amplitude=0.0, color_jitter=0.0, flip_prob=1.0)

    class Exact(synthetic.SyntheticGenerator):
        def __init__(self, item, *, seed=0, config=None):
            super().__init__(item, seed=seed, config=exact)

    monkeypatch.setattr(synthetic, "SyntheticGenerator", Exact)
    clean = bench_item(item, BenchSettings(method="true_pose", resolution=64, max_frames=3))
    assert clean["fscore2_once_first"] == clean["fscore2_once_last"] == 1.0
    assert clean["fscore2_once"] >= row["fscore2_once"]
    # from every side: the ground truth's own shape, coloured at its vertices (the generator's appearance)
    assert clean["nv_mask_iou"] > 0.98 and clean["nv_psnr"] > 15  # 19.3 dB: vertex colours, not the texture
    assert row["nv_mask_iou"] < clean["nv_mask_iou"] and row["nv_psnr"] < clean["nv_psnr"]


def test_run_without_weights_uses_the_weight_free_path_and_says_so_once(tmp_path):
    item = small_demo(tmp_path, n=4)
    out = tmp_path / "out"
    r = v2m4("run", item / "frames", "-o", out, "--generator", f"synthetic:{item}", "--config", TINY_CONFIG,
             "--resolution", "48", "--no-preview", env={"V2M4_WEIGHTS": str(tmp_path / "no-weights")})
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("learned parts unavailable") == 1, r.stdout
    learned = json.loads((out / "report.json").read_text())["learned"]
    assert learned["scorer"] == "silhouette-colour" and learned["stereo"] is None
    assert any(n.startswith("DreamSim") for n in learned["unavailable"])


@pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX resource limits")
@pytest.mark.parametrize("limit_bytes,stage", [(60_000, "generate"), (400_000, "export")])
def test_disk_full_mid_run_leaves_no_partial_output(tmp_path, limit_bytes, stage):
    """A write that fails part-way (RLIMIT_FSIZE: a file growing past the limit fails, as on a full disk) ends with
    one line and exit 2; no temporary file and no final output stays; checkpoints do (for --resume)."""
    import resource

    # 8 frames: the first generated mesh (about 90 KB) passes 60 KB; every checkpoint stays under 400 KB, and the
    # export's viewer page (about 850 KB) passes it
    item = small_demo(tmp_path, n=8)
    out = tmp_path / "out"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    r = subprocess.run([sys.executable, "-m", "v2m4.cli", "run", str(item / "frames"), "-o", str(out), "--generator",
                        f"synthetic:{item}", "--config", TINY_CONFIG, "--resolution", "64", "--quiet"],
                       capture_output=True, text=True, preexec_fn=limit)
    assert r.returncode == 2, (r.stdout, r.stderr[-2000:])
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "could not write" in lines[0], r.stderr[-2000:]
    left = [p.name for p in out.rglob("*") if p.is_file()]
    assert not [n for n in left if ".part" in n or n.endswith(".tmp.npz") or n.startswith("tmp")], left
    assert not {"animation.glb", "preview.mp4", "report.json"} & set(left)
    if stage == "export":  # every stage before the export finished and is kept
        assert "texture.npz" in left


def test_registration_warnings_reach_the_report(tmp_path):
    """A gpytoolbox that cannot be imported (as with a numpy it was not built for) leaves the rest mesh as
    generated, which folds more under registration: the run goes on, and report.json says so."""
    fake = tmp_path / "fake"
    (fake / "gpytoolbox").mkdir(parents=True)
    (fake / "gpytoolbox" / "__init__.py").write_text(
        "raise ImportError('numpy.core.multiarray failed to import')\n")
    item = small_demo(tmp_path, n=4)
    out = tmp_path / "out"
    path = os.pathsep.join([str(fake)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    r = run_tiny(item, out, "--no-preview", env={"PYTHONPATH": path})
    assert r.returncode == 0, r.stderr
    warns = json.loads((out / "report.json").read_text())["warnings"]
    assert any(w.startswith("registration: rest mesh kept as generated") and "numpy.core.multiarray" in w
               for w in warns), warns


def test_registration_fits_every_frame(tmp_path):
    """The whole-clip registration (the default): every input frame gets its own fitted positions (none
    interpolated), one topology; the generator's noise is measured for the smoothing."""
    item = small_demo(tmp_path, n=5)
    out = tmp_path / "out"
    r = v2m4("run", item / "frames", "-o", out, "--generator", f"synthetic:{item}",
             "--config", TINY_CONFIG, "--resolution", "32", "--keyframes", "3", "--quiet", "--no-preview")
    assert r.returncode == 0, r.stderr
    rep = json.loads((out / "report.json").read_text())
    assert rep["keyframes"] == [0, 2, 4] and len(rep["registration"]["flipped"]) == 5
    # the generator's noise measured on a keyframe drawn again (the tiny config's one; the smoothing's bound), and
    # reported
    noise = json.loads((out / "checkpoints" / "noise.json").read_text())
    assert noise["frames"] == [0] and noise["variance"] > 0 and "noise_weight" in rep["registration"]
    anim = np.load(out / "checkpoints" / "animation.npz")
    assert anim["keyframes"].tolist() == [0, 1, 2, 3, 4] and np.isfinite(anim["anim_vertices"]).all()


def test_texture_from_the_video_of_frames_between_keyframes(tmp_path, monkeypatch):
    """``TextureConfig.video_frames``: the texture is fitted to the video of frames the whole-clip registration
    fitted, at their own registered positions, not only to the keyframes'."""
    import v2m4.pipeline as P
    seen = []
    real = P.bake_texture

    def spy(frames, reposed, seq, *args, **kw):
        seen.append((len(frames), tuple(seq.vertices.shape), kw.get("first")))
        return real(frames, reposed, seq, *args, **kw)
    monkeypatch.setattr(P, "bake_texture", spy)
    item = small_demo(tmp_path, n=5)
    cfg = json.loads(open(TINY_CONFIG).read())
    cfg["texture"]["video_frames"] = 4
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    r = v2m4("run", item / "frames", "-o", tmp_path / "out", "--generator", f"synthetic:{item}", "--config",
             tmp_path / "cfg.json", "--resolution", "32", "--keyframes", "2", "--quiet", "--no-preview")
    assert r.returncode == 0, r.stderr
    (n, shape, first), = seen
    assert n == 4 and shape[0] == 4 and first == 0  # frames 0, 1, 3, 4 of 5 (the keyframes alone: 2)
