"""The rigged GLB (``v2m4 run --rig``) in a real engine: three.js (GLTFLoader -> SkinnedMesh) in headless Chromium
renders animation_rigged.glb at sampled times, and its silhouette matches our renderer's silhouette of the morph
animation at those times (IoU >= 0.95), and of the skinned pose the file states (glTF's skinning evaluated here
with numpy, IoU >= 0.98: the engine plays the file as the spec says). Skips, saying why, where Chromium is absent."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from browser import browse, demo_outputs, iou, needs_browser, png_mask, silhouettes  # noqa: E402

# every other frame of the demo's walk: the default bone count fits it to 0.6% RMS of the diagonal
PICK = (0, 2, 4, 6)


def _quat_matrix(q: np.ndarray) -> np.ndarray:
    x, y, z, w = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def skinned_positions(path: Path, frame: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions (V, 3), faces (F, 3)) of the GLB's skinned mesh at its animation's sample `frame` (glTF 2.0:
    joint matrix = global joint transform @ inverse bind matrix; the mesh node's own transform is ignored)."""
    from v2m4.export.readback import GlbAnimation

    glb = GlbAnimation(path)
    g = glb.gltf
    node_of = next(i for i, n in enumerate(g.nodes) if n.skin is not None)
    prim = g.meshes[g.nodes[node_of].mesh].primitives[0]
    trs = {i: {"translation": np.array(n.translation or [0, 0, 0], float),
               "rotation": np.array(n.rotation or [0, 0, 0, 1], float),
               "scale": np.array(n.scale or [1, 1, 1], float)} for i, n in enumerate(g.nodes)}
    for ch in g.animations[0].channels:
        s = g.animations[0].samplers[ch.sampler]
        trs[ch.target.node][ch.target.path] = glb.read(s.output).astype(float)[frame]
    local = {}
    for i, n in enumerate(g.nodes):
        M = np.eye(4)
        if n.matrix:
            M = np.array(n.matrix, float).reshape(4, 4).T
        else:
            M[:3, :3] = _quat_matrix(trs[i]["rotation"]) * trs[i]["scale"]
            M[:3, 3] = trs[i]["translation"]
        local[i] = M
    world = {}

    def walk(i, parent):
        world[i] = parent @ local[i]
        for c in g.nodes[i].children or []:
            walk(c, world[i])

    for root in g.scenes[g.scene or 0].nodes:
        walk(root, np.eye(4))
    skin = g.skins[g.nodes[node_of].skin]
    ibm = glb.read(skin.inverseBindMatrices).reshape(-1, 4, 4).transpose(0, 2, 1)
    joint_mats = np.stack([world[j] @ ibm[k] for k, j in enumerate(skin.joints)])
    rest = glb.read(prim.attributes.POSITION).astype(float)
    joints = glb.read(prim.attributes.JOINTS_0).astype(np.int64)
    weights = glb.read(prim.attributes.WEIGHTS_0).astype(float)
    hom = np.concatenate([rest, np.ones((len(rest), 1))], 1)
    skinned = np.einsum("vk,vkij,vj->vi", weights, joint_mats[joints], hom)[:, :3]
    return skinned, glb.read(prim.indices).reshape(-1, 3).astype(np.int64)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from v2m4.export.rig import DEFAULT_BONES

    out = tmp_path_factory.mktemp("rig") / "out"
    return {"out": out, **demo_outputs(out, frames_picked=PICK, rig_bones=DEFAULT_BONES)}


@needs_browser
def test_three_js_skinned_mesh_matches_the_morph_animation(run):
    from v2m4.export.viewer import write_viewer
    from v2m4.types import Animation, Mesh

    anim, camera = run["anim"], run["camera"]
    page = write_viewer(run["out"], camera=camera, times=anim.times.numpy(), glb=run["out"] / "animation_rigged.glb",
                        name="viewer_rigged.html")
    sampled = [1, 2, 3]
    r = browse(page, ["(() => { let n = 0; v2m4.viewer.root.traverse((o) => { n += o.isSkinnedMesh ? 1 : 0; });"
                      " return n; })()", "v2m4.setMode('silhouette')",
                      *[f"(v2m4.setTime({float(anim.times[i])}), v2m4.capture())" for i in sampled]],
               size=(720, 600))  # a canvas of about 340 px
    assert r["pageErrors"] == [] and [c for c in r["console"] if c["type"] == "error"] == [] and r["refused"] == []
    assert r["results"][0] == 1  # three.js made a SkinnedMesh of it
    engine = [png_mask(u) for u in r["results"][2:]]
    morph = silhouettes(anim, camera, sampled, engine[0].shape)
    to_morph = [iou(a, b) for a, b in zip(engine, morph)]
    assert min(to_morph) >= 0.95, (to_morph, run["report"]["rig"])
    # the pose the file states, evaluated here: the engine's departures from the morph animation are the rig's own
    posed = [skinned_positions(run["out"] / "animation_rigged.glb", i) for i in sampled]
    mesh = Mesh(torch.from_numpy(posed[0][0]).float(), torch.from_numpy(posed[0][1]))
    stated_anim = Animation(mesh, torch.stack([torch.from_numpy(v).float() for v, _ in posed]),
                            anim.times[:len(sampled)], torch.arange(len(sampled)))
    stated = silhouettes(stated_anim, camera, range(len(sampled)), engine[0].shape)
    to_file = [iou(a, b) for a, b in zip(engine, stated)]
    print(f"three.js skinned vs morph IoU {to_morph}, vs the file's pose {to_file}")
    assert min(to_file) >= 0.98, to_file
