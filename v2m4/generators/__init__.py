"""Per-frame 3D generators (Sec. 3): the interface and the backends, chosen by a spec string."""

from __future__ import annotations

from ..errors import V2M4Error


def make_generator(spec: str, n_frames: int, *, seed: int = 0, device: str = "cpu"):
    """``synthetic:ITEM_DIR`` (a bench-format item's ground truth, for tests and demos), ``meshes:DIR`` (one mesh
    per frame from any tool), ``trellis[:MODEL_OR_FOLDER]`` (the paper's generator; needs its package, weights
    and a GPU) or ``hunyuan[:MODEL_OR_FOLDER]`` (Hunyuan3D-2's shape stage, colourless; its package, weights and a
    GPU)."""
    kind, _, arg = spec.partition(":")
    if kind == "synthetic":
        from ..data.bench import load_item
        from .synthetic import SyntheticGenerator
        if not arg:
            raise V2M4Error("--generator synthetic:ITEM_DIR needs the item folder (with meta.json and gt_mesh.npz)")
        item = load_item(arg)
        if len(item.frames) != n_frames:
            raise V2M4Error(f"synthetic item {arg} has {len(item.frames)} frames but the input has {n_frames}")
        return SyntheticGenerator(item, seed=seed)
    if kind == "meshes":
        from .mesh_folder import MeshFolderGenerator
        if not arg:
            raise V2M4Error("--generator meshes:DIR needs the folder of per-frame meshes")
        return MeshFolderGenerator(arg, n_frames)
    if kind == "trellis":
        from .trellis import DEFAULT_MODEL, TrellisGenerator
        return TrellisGenerator(arg or DEFAULT_MODEL, device=device, seed=seed)
    if kind == "hunyuan":
        from .hunyuan import DEFAULT_MODEL, HunyuanGenerator
        return HunyuanGenerator(arg or DEFAULT_MODEL, device=device, seed=seed)
    raise V2M4Error(f"unknown generator {spec!r}; choose synthetic:ITEM_DIR, meshes:DIR, trellis or hunyuan")
