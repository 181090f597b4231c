"""Hunyuan3D-2 (Tencent, 2025) shape generation as the per-frame generator, over PyPI's ``hy3dgen`` (2.0.2).

``pip install 'v2m4[hunyuan]'`` installs the package; the weights are read from the Hugging Face cache
(``huggingface-cli download tencent/Hunyuan3D-2 --include 'hunyuan3d-dit-v2-0/*'``), from hy3dgen's own folder
(``$HY3DGEN_MODELS``, default ``~/.cache/hy3dgen``) or from a local folder, and are never downloaded here: loading
runs with the Hugging Face hub offline. Everything is imported lazily; a missing piece is one line naming it.
Hunyuan3D-2's weights carry Tencent's Hunyuan community licence.

Only the shape stage is used (a flow DiT on an image's DINOv2 tokens, a shape VAE whose volume decoder is queried
on a dense grid, marching cubes): the meshes carry no colour, and the texture comes from the video. The package's
mesh is glTF-style +Y up in [-1.01, 1.01]^3 (its GLB export writes it as it is); it is only centred and scaled
into our canonical box here. Its facing about +Y is whatever the model chose, which the camera search recovers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import types
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..camera import DEFAULT_FOV_DEG
from ..errors import V2M4Error
from ..types import Mesh
from .base import canonicalise

DEFAULT_MODEL = "2"
# name -> (Hugging Face repo, DiT subfolder, FlashVDM VAE subfolder (turbo) or None, sampling steps): the
# single-image models the package loads; "-fast" is guidance-distilled, "-turbo" step-distilled (5 steps, as the
# official turbo demo) with its FlashVDM decoder
MODELS = {
    "2": ("tencent/Hunyuan3D-2", "hunyuan3d-dit-v2-0", None, 50),
    "2-fast": ("tencent/Hunyuan3D-2", "hunyuan3d-dit-v2-0-fast", None, 50),
    "2-turbo": ("tencent/Hunyuan3D-2", "hunyuan3d-dit-v2-0-turbo", "hunyuan3d-vae-v2-0-turbo", 5),
    "2mini": ("tencent/Hunyuan3D-2mini", "hunyuan3d-dit-v2-mini", None, 50),
    "2mini-fast": ("tencent/Hunyuan3D-2mini", "hunyuan3d-dit-v2-mini-fast", None, 50),
    "2mini-turbo": ("tencent/Hunyuan3D-2mini", "hunyuan3d-dit-v2-mini-turbo", "hunyuan3d-vae-v2-mini-turbo", 5),
}
WEIGHT_FILES = ("model.fp16.safetensors", "model.safetensors", "model.fp16.ckpt", "model.ckpt")
INSTALL = "pip install 'v2m4[hunyuan]'"


def _transforms_stand_in() -> types.ModuleType:
    """The four ``torchvision.transforms`` that hy3dgen's image encoder uses, in plain PyTorch (on tensors:
    torchvision's tensor path), for installs without a working torchvision (a CPU-only torch has none on PyPI)."""
    import torch.nn.functional as F

    class InterpolationMode:
        BILINEAR = "bilinear"

    class Compose:
        def __init__(self, steps):
            self.steps = steps

        def __call__(self, x):
            for step in self.steps:
                x = step(x)
            return x

    class Resize:  # an int: the shorter side to that size, the aspect kept
        def __init__(self, size, interpolation=InterpolationMode.BILINEAR, antialias=True):
            self.size, self.antialias = int(size), antialias

        def __call__(self, x):
            h, w = x.shape[-2:]
            s = self.size / min(h, w)
            return F.interpolate(x, size=(round(h * s), round(w * s)), mode="bilinear", align_corners=False,
                                 antialias=self.antialias)

    class CenterCrop:
        def __init__(self, size):
            self.size = int(size)

        def __call__(self, x):
            h, w = x.shape[-2:]
            top, left = (h - self.size) // 2, (w - self.size) // 2
            return x[..., top:top + self.size, left:left + self.size]

    class Normalize:
        def __init__(self, mean, std):
            self.mean, self.std = torch.tensor(mean), torch.tensor(std)

        def __call__(self, x):
            return (x - self.mean.to(x)[:, None, None]) / self.std.to(x)[:, None, None]

    mod = types.ModuleType("torchvision.transforms")
    mod.Compose, mod.Resize, mod.CenterCrop, mod.Normalize = Compose, Resize, CenterCrop, Normalize
    mod.InterpolationMode = InterpolationMode
    return mod


def _import_shapegen():
    """(Hunyuan3DDiTFlowMatchingPipeline, ShapeVAE), importing only the shape stage (not gradio, rembg or the paint
    stage). Where torchvision does not import, the image encoder's transforms are our stand-in, visible only while
    hy3dgen imports."""
    try:
        import diffusers.utils.torch_utils  # noqa: F401  (before any stand-in: diffusers probes torchvision)
        import transformers  # noqa: F401
        import hy3dgen  # noqa: F401
    except ImportError as exc:
        raise V2M4Error(f"Hunyuan3D-2 is not installed ({exc.name or exc} is missing): {INSTALL}") from None
    stand_in = False
    if "hy3dgen.shapegen" not in sys.modules:
        try:
            import torchvision.transforms  # noqa: F401
        except Exception:  # absent, or a build for another torch (its operators fail to register)
            for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
                del sys.modules[name]
            tv = types.ModuleType("torchvision")
            tv.transforms = _transforms_stand_in()
            sys.modules["torchvision"], sys.modules["torchvision.transforms"] = tv, tv.transforms
            stand_in = True
    try:
        from hy3dgen.shapegen.models.autoencoders import ShapeVAE
        from hy3dgen.shapegen.pipelines import Hunyuan3DDiTFlowMatchingPipeline
    except ImportError as exc:
        raise V2M4Error(f"Hunyuan3D-2's shape stage does not import ({exc.name or exc} is missing): "
                        f"{INSTALL}") from None
    finally:
        if stand_in:  # the encoder keeps its reference; nothing else sees a torchvision that is not one
            sys.modules.pop("torchvision.transforms", None)
            sys.modules.pop("torchvision", None)
    logging.getLogger("hy3dgen.shapgen").setLevel(logging.WARNING)  # its per-load INFO lines
    return Hunyuan3DDiTFlowMatchingPipeline, ShapeVAE


def _weights_in(folder: Path) -> Path | None:
    return next((folder / f for f in WEIGHT_FILES if (folder / f).is_file()), None)


def _cached(repo: str, sub: str) -> Path | None:
    """The folder of ``repo``'s ``sub`` in hy3dgen's own folder or the Hugging Face cache, or None."""
    own = Path(os.path.expanduser(os.path.join(os.environ.get("HY3DGEN_MODELS", "~/.cache/hy3dgen"), repo, sub)))
    if (own / "config.yaml").is_file():
        return own
    try:
        from huggingface_hub import try_to_load_from_cache
        found = try_to_load_from_cache(repo, f"{sub}/config.yaml")
    except Exception:  # no huggingface_hub, an id that is not a repo name
        return None
    return Path(found).parent if isinstance(found, str) else None


def resolve_model(model: str) -> tuple[Path, Path | None, int]:
    """``model`` (a name of ``MODELS``, ``REPO_ID[/SUBFOLDER]`` or a folder with config.yaml and the weights) ->
    (DiT folder, FlashVDM VAE folder or None, sampling steps); one line naming what is missing otherwise."""
    p = Path(model).expanduser()
    if p.is_dir():
        if not (p / "config.yaml").is_file():
            raise V2M4Error(f"Hunyuan3D weights folder {p} has no config.yaml (give the DiT folder itself, e.g. "
                            f".../hunyuan3d-dit-v2-0)")
        turbo = p.name.endswith("-turbo")
        vae = next((q for q in sorted(p.parent.glob("hunyuan3d-vae-*-turbo")) if q.is_dir()), None) if turbo else None
        dit, steps = p, 5 if turbo else 50
    else:
        if model in MODELS:
            repo, sub, vae_sub, steps = MODELS[model]
        else:
            parts = model.strip("/").split("/")
            repo = "/".join(parts[:2])
            known = [v for v in MODELS.values() if v[0] == repo]
            if len(parts) not in (2, 3) or (len(parts) == 2 and not known):
                raise V2M4Error(f"Hunyuan3D model {model!r} is not a folder, one of {', '.join(MODELS)}, nor "
                                f"REPO_ID/SUBFOLDER")
            sub = parts[2] if len(parts) == 3 else known[0][1]
            vae_sub = next((v[2] for v in MODELS.values() if v[:2] == (repo, sub)), None)
            steps = 5 if sub.endswith("-turbo") else 50
        found = {s: _cached(repo, s) for s in (sub, vae_sub) if s}
        missing = [s for s, f in found.items() if f is None]
        if missing:
            try:
                from huggingface_hub.constants import HF_HUB_CACHE
            except ImportError:
                HF_HUB_CACHE = "~/.cache/huggingface/hub"
            include = " ".join(f"--include '{s}/*'" for s in missing)
            raise V2M4Error(f"Hunyuan3D weights {repo} ({', '.join(missing)}) are not in the Hugging Face cache "
                            f"({HF_HUB_CACHE}) nor in $HY3DGEN_MODELS, and {model!r} is not a folder; download them "
                            f"once: huggingface-cli download {repo} {include}")
        dit, vae = found[sub], found.get(vae_sub) if vae_sub else None
    for folder in (dit, vae):
        if folder is not None and _weights_in(folder) is None:
            raise V2M4Error(f"Hunyuan3D weights folder {folder} has config.yaml but no {' or '.join(WEIGHT_FILES)}")
    return dit, vae, steps


@contextlib.contextmanager
def _offline():
    """The hub offline while the package loads (its encoder would otherwise fetch a missing config by name)."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        import huggingface_hub.constants as hc
    except ImportError:
        hc = None
    was = getattr(hc, "HF_HUB_OFFLINE", None)
    if hc is not None and was is not None:
        hc.HF_HUB_OFFLINE = True  # read once at its import
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if hc is not None and was is not None:
            hc.HF_HUB_OFFLINE = was


def _load(Pipeline, ShapeVAE, dit: Path, vae: Path | None, device: str, dtype: torch.dtype):
    """The official pipeline from the DiT folder (its checkpoint holds the DiT, VAE and image encoder), with the
    turbo models' FlashVDM VAE and decoder where given (marching cubes, which needs no extension)."""
    def files(folder):
        w = _weights_in(folder)
        return str(w), str(folder / "config.yaml"), w.suffix == ".safetensors"

    try:
        with _offline():
            ckpt, config, st = files(dit)
            pipe = Pipeline.from_single_file(ckpt, config, device=device, dtype=dtype, use_safetensors=st)
            if vae is not None:
                ckpt, config, st = files(vae)
                pipe.vae = ShapeVAE.from_single_file(ckpt, config, device=device, dtype=dtype, use_safetensors=st)
                pipe.vae.enable_flashvdm_decoder(enabled=True, adaptive_kv_selection=True, topk_mode="mean",
                                                 mc_algo="mc")
    except (OSError, ValueError, KeyError, RuntimeError) as exc:  # a broken file, a config the package can't read
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise V2M4Error(f"Hunyuan3D weights in {dit} could not be loaded: {first}") from None
    return pipe


def to_mesh(out) -> Mesh:
    """The package's marching-cubes output (mesh_v (N, 3), mesh_f (F, 3), before its trimesh export flips the
    winding) -> our Mesh (+Y up, canonical box, no colours); None (no surface found) -> an empty mesh."""
    if out is None or len(out.mesh_f) == 0:
        return Mesh(torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.int64))
    v = torch.as_tensor(np.asarray(out.mesh_v, dtype=np.float32))
    f = torch.as_tensor(np.ascontiguousarray(np.asarray(out.mesh_f)[:, ::-1]).astype(np.int64))
    return canonicalise(Mesh(v, f))


def rgba_image(image: Tensor):
    """(H, W, 4) RGBA in [0, 1] -> the PIL image the package's processor takes (it recentres on the alpha)."""
    from PIL import Image
    rgba = (image.detach().cpu().clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(rgba, "RGBA")


class HunyuanGenerator:
    """``generate(image, index)`` and ``generate_batch(images, indices)``: the shape stage's mesh of each image,
    colourless, in our canonical frame. Frame ``index`` draws its noise from ``seed + index`` on the CPU, so a
    frame's mesh is the same alone or in a batch, on any device (up to floating point)."""

    name = "hunyuan"
    fov_deg = DEFAULT_FOV_DEG  # its renders and conditioning assume no camera; TRELLIS's, as for folders of meshes

    def __init__(self, model: str = DEFAULT_MODEL, *, device: str = "cuda", seed: int = 0, steps: int | None = None,
                 guidance_scale: float = 5.0, octree_resolution: int = 384, num_chunks: int = 8000,
                 mc_level: float = 0.0, dtype: torch.dtype | None = None):
        # the sampler and decoder settings are the package's __call__ defaults (5 steps for turbo models)
        Pipeline, ShapeVAE = _import_shapegen()
        dit, vae, default_steps = resolve_model(model)
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            raise V2M4Error("Hunyuan3D-2 needs a CUDA GPU here (a keyframe takes minutes on a CPU); use --generator "
                            "meshes:DIR with meshes made elsewhere")
        dtype = dtype or (torch.float16 if str(device).startswith("cuda") else torch.float32)
        self.pipe = _load(Pipeline, ShapeVAE, dit, vae, device, dtype)
        self.seed = seed
        self.call = {"num_inference_steps": steps or default_steps, "guidance_scale": guidance_scale,
                     "octree_resolution": octree_resolution, "num_chunks": num_chunks, "mc_level": mc_level}

    def generate(self, image: Tensor, index: int) -> Mesh:
        return self.generate_batch([image], [index])[0]

    def generate_batch(self, images, indices) -> list[Mesh]:
        """One mesh per image, all sampled together (one DiT batch, one volume decoding); an image with no
        foreground (nothing for the package to centre on) gives an empty mesh, which the generation stage drops."""
        images, indices = list(images), [int(i) for i in indices]
        live = [k for k, im in enumerate(images) if bool((im[..., 3] > 0).any())]
        out = [to_mesh(None)] * len(images)
        if live:
            gens = [torch.Generator().manual_seed(self.seed + indices[k]) for k in live]
            meshes = self.pipe(image=[rgba_image(images[k]) for k in live], generator=gens, output_type="mesh",
                               enable_pbar=False, **self.call)
            for k, m in zip(live, meshes):
                out[k] = to_mesh(m)
        return out
