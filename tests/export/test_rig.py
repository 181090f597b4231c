"""The rig (`v2m4 run --rig`): bones joined into one tree, the hierarchical GLB poses the mesh exactly as the flat
linear-blend skinning does (read back and evaluated here independently of the writer), <= 4 influences, and the
report's figures on a tiny run."""

import json
import math

import numpy as np
import pytest
import torch
import trimesh

from v2m4.export.readback import GlbAnimation
from v2m4.export.rig import fit_rig, rig_errors, rig_vertices, write_rigged_glb
from v2m4.export.skinning import skin_vertices
from v2m4.export.validate import validate_glb, validator_available
from v2m4.types import Animation, Mesh


def rot(axis, a):
    c, s = math.cos(a), math.sin(a)
    i, j = [k for k in range(3) if k != axis]
    m = torch.eye(3, dtype=torch.float64)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def three_segment_arm(T=10):
    """A cylinder along z in three segments: the middle bends at z = -1/3 about x, the top at z = 1/3 about y (on
    top of the middle's bend), and the whole drifts along x."""
    tm = trimesh.creation.cylinder(radius=0.15, height=2.0, sections=12).subdivide()
    rest = torch.tensor(tm.vertices, dtype=torch.float64)
    z = rest[:, 2]
    frames = []
    for t in range(T):
        a1, a2 = 0.6 * math.sin(t / 3), 0.5 * math.cos(t / 4)
        j1, j2 = torch.tensor([0, 0, -1 / 3.0], dtype=torch.float64), torch.tensor([0, 0, 1 / 3.0],
                                                                                    dtype=torch.float64)
        v = rest.clone()
        mid = z > -1 / 3
        v[mid] = (rest[mid] - j1) @ rot(0, a1).T + j1
        top = z > 1 / 3
        v[top] = ((rest[top] - j2) @ rot(1, a2).T + j2 - j1) @ rot(0, a1).T + j1
        frames.append(v + torch.tensor([0.03 * t, 0, 0], dtype=torch.float64))
    mesh = Mesh(rest.float(), torch.tensor(tm.faces), vertex_colors=torch.full((len(rest), 3), 0.6))
    return mesh, rest, torch.stack(frames)


@pytest.fixture(scope="module")
def arm():
    mesh, rest, frames = three_segment_arm()
    rig = fit_rig(rest, frames, n_bones=5, faces=mesh.faces)
    return mesh, rest, frames, rig


def glb_skinned_positions(path):
    """(T, V, 3) skinned positions at the animation's sample times, straight from the file: node TRS (animated
    channels override defaults), world matrices down the node tree, joint matrices world @ inverse bind, blend."""
    g = GlbAnimation(path)
    gl = g.gltf
    prim = gl.meshes[0].primitives[0]
    J = g.read(prim.attributes.JOINTS_0).astype(np.int64)
    W = g.read(prim.attributes.WEIGHTS_0).astype(np.float64)
    skin = gl.skins[0]
    ibm = g.read(skin.inverseBindMatrices).reshape(-1, 4, 4).transpose(0, 2, 1).astype(np.float64)
    anim = gl.animations[0]
    times = g.read(anim.samplers[0].input)
    tracks = {(ch.target.node, ch.target.path): g.read(anim.samplers[ch.sampler].output).astype(np.float64)
              for ch in anim.channels}
    out = []
    for k in range(len(times)):
        local = []
        for n, node in enumerate(gl.nodes):
            t = tracks.get((n, "translation"), [node.translation or [0, 0, 0]] * len(times))[k]
            x, y, z, w = tracks.get((n, "rotation"), [node.rotation or [0, 0, 0, 1]] * len(times))[k]
            m = np.eye(4)
            m[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                         [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                         [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
            m[:3, 3] = t
            local.append(m)
        world = {}

        def walk(n, parent):
            world[n] = parent @ local[n]
            for c in gl.nodes[n].children or []:
                walk(c, world[n])

        for n in gl.scenes[0].nodes:
            walk(n, np.eye(4))
        jm = np.stack([world[j] for j in skin.joints]) @ ibm                      # (B, 4, 4)
        skinmat = np.einsum("vi,vikl->vkl", W, jm[J])
        p = np.concatenate([g.rest.astype(np.float64), np.ones((len(g.rest), 1))], 1)
        out.append(np.einsum("vkl,vl->vk", skinmat, p)[:, :3])
    return np.stack(out)


def test_one_root_and_every_other_joint_has_a_parent(arm, tmp_path):
    mesh, rest, frames, rig = arm
    B = rig.skinning.weights.shape[1]
    assert rig.parents.count(-1) == 1 and len(rig.parents) == B
    for b in range(B):  # every bone reaches the root, without a cycle
        seen, x = set(), b
        while rig.parents[x] != -1:
            assert x not in seen and 0 <= rig.parents[x] < B
            seen.add(x)
            x = rig.parents[x]
    write_rigged_glb(tmp_path / "r.glb", mesh, rig, np.arange(len(frames)) / 24.0)
    gl = GlbAnimation(tmp_path / "r.glb").gltf
    joints = gl.skins[0].joints
    parent_of = {c: n for n, node in enumerate(gl.nodes) for c in (node.children or [])}
    roots = [j for j in joints if parent_of.get(j) not in joints]
    assert len(roots) == 1 and gl.skins[0].skeleton == roots[0]
    assert all(parent_of[j] == joints[rig.parents[b]] for b, j in enumerate(joints) if rig.parents[b] >= 0)


def test_hierarchical_glb_poses_as_the_flat_skinning(arm, tmp_path):
    mesh, rest, frames, rig = arm
    flat = skin_vertices(rig.skinning, rest)
    assert float((rig_vertices(rig) - flat).abs().max()) < 1e-10
    write_rigged_glb(tmp_path / "r.glb", mesh, rig, np.arange(len(frames)) / 24.0)
    got = glb_skinned_positions(tmp_path / "r.glb")
    assert got.shape == tuple(flat.shape)
    assert float(np.abs(got - flat.numpy()).max()) < 1e-5
    # and the rig follows the articulated motion it was fitted to
    anim = Animation(mesh, frames.float(), torch.arange(len(frames)) / 24.0, torch.tensor([0, len(frames) - 1]))
    e = rig_errors(anim, rig)
    assert e["bones"] == 5 and e["rms_err"] < 2e-3 and e["max_err"] < 1e-2, e


def test_at_most_four_influences(arm, tmp_path):
    mesh, rest, frames, _ = arm
    rig = fit_rig(rest, frames, n_bones=8, faces=mesh.faces)
    w = rig.skinning.weights
    assert int((w > 0).sum(1).max()) <= 4 and float(w.min()) >= 0
    assert torch.allclose(w.sum(1), torch.ones(len(w), dtype=w.dtype))
    write_rigged_glb(tmp_path / "r.glb", mesh, rig, np.arange(len(frames)) / 24.0)
    g = GlbAnimation(tmp_path / "r.glb")
    prim = g.gltf.meshes[0].primitives[0]
    assert getattr(prim.attributes, "JOINTS_1", None) is None and getattr(prim.attributes, "WEIGHTS_1", None) is None
    assert g.read(prim.attributes.JOINTS_0).shape[1] == 4
    assert np.allclose(g.read(prim.attributes.WEIGHTS_0).sum(1), 1, atol=1e-6)


@pytest.mark.skipif(validator_available() is not None, reason=f"{validator_available()}")
def test_rigged_glb_is_validator_clean(arm, tmp_path):
    mesh, rest, frames, rig = arm
    write_rigged_glb(tmp_path / "r.glb", mesh, rig, np.arange(len(frames)) / 24.0)
    r = validate_glb(tmp_path / "r.glb")
    assert (r["errors"], r["warnings"]) == (0, 0), r["messages"]


def test_write_outputs_reports_the_rig(arm, tmp_path):
    """write_outputs with --rig (what ``v2m4 run --rig 3`` ends with, here on the arm's animation in-process: the
    whole tiny CLI run is covered by tests/test_pipeline.py and takes ~40 s on a busy 2-core machine)."""
    import dataclasses
    from types import SimpleNamespace

    from v2m4.config import PipelineConfig
    from v2m4.pipeline import write_outputs

    mesh, rest, frames, _ = arm
    anim = Animation(mesh, frames.float(), torch.arange(len(frames)) / 24.0, torch.tensor([0, len(frames) - 1]))
    cfg = PipelineConfig()
    cfg = dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, preview=False, rig_bones=3))
    from v2m4.camera import Camera

    pose = torch.eye(4)[None].clone()
    pose[0, 2, 3] = -4.0
    cam = Camera(torch.tensor([[[64.0, 0, 32], [0, 64, 32], [0, 0, 1]]]), pose, (64, 64))
    result = SimpleNamespace(animation=anim, report={"seconds": {}}, video_camera=cam)
    rep = write_outputs(result, None, tmp_path, cfg)["rig"]
    assert rep == json.loads((tmp_path / "report.json").read_text())["rig"]
    assert rep["bones"] == 3 and 0 <= rep["rms_err"] <= rep["max_err"] < 1
    assert {"seconds", "bytes", "root"} <= set(rep)
    if validator_available() is None:
        assert (rep["validator"]["errors"], rep["validator"]["warnings"]) == (0, 0)
    gl = GlbAnimation(tmp_path / "animation_rigged.glb").gltf
    assert len(gl.skins[0].joints) == 3 and len(gl.nodes[1].children) == 1


def test_default_bone_count_grows_until_the_error_target(arm, tmp_path, monkeypatch):
    """Without a bone count the rig takes bones until its error target is met (here one at a time from one: the
    arm's decomposition first reaches 0.1% at six bones), and stops at the cap if it never is; a count the user
    gives is kept whatever its error."""
    import v2m4.export.rig as rig_mod

    mesh, rest, frames, _ = arm
    anim = Animation(mesh, frames.float(), torch.arange(len(frames)) / 24.0, torch.tensor([0, len(frames) - 1]))
    monkeypatch.setattr(rig_mod, "DEFAULT_BONES", 1)
    monkeypatch.setattr(rig_mod, "BONE_STEP", 1)
    monkeypatch.setattr(rig_mod, "TARGET_RMS", 1e-3)
    monkeypatch.setattr(rig_mod, "TARGET_MAX", 1.0)  # the RMS decides here
    monkeypatch.setattr(rig_mod, "MAX_BONES", 8)
    auto = rig_mod.write_rig(tmp_path / "auto.glb", anim, rig_mod.AUTO_BONES)
    assert auto["rms_err"] <= 1e-3
    for n in range(1, auto["bones"]):  # every smaller count misses the target
        fewer = rig_mod.write_rig(tmp_path / f"{n}.glb", anim, n)
        assert fewer["bones"] == n and fewer["rms_err"] > 1e-3
    monkeypatch.setattr(rig_mod, "MAX_BONES", auto["bones"] - 1)
    capped = rig_mod.write_rig(tmp_path / "capped.glb", anim, None)
    assert capped["bones"] == auto["bones"] - 1 and capped["rms_err"] > 1e-3
    # the largest error is held to its own target: one bone meets a loose RMS target but not a tight max
    monkeypatch.setattr(rig_mod, "MAX_BONES", 8)
    monkeypatch.setattr(rig_mod, "TARGET_RMS", 1.0)
    monkeypatch.setattr(rig_mod, "TARGET_MAX", 0.02)
    by_max = rig_mod.write_rig(tmp_path / "max.glb", anim, None)
    assert by_max["bones"] > 1 and by_max["max_err"] <= 0.02
