"""TRELLIS (Xiang et al. 2024, image-to-3D v1) as the per-frame generator (paper Sec. 3).

No faithful TRELLIS package is on PyPI: the user installs the official checkout (github.com/microsoft/TRELLIS,
its ``setup.sh``), makes it importable (``PYTHONPATH`` or ``$V2M4_TRELLIS``), and has the weights in the Hugging
Face cache (``huggingface-cli download JeffreyXiang/TRELLIS-image-large``) or in a local folder. Everything is
imported lazily; a missing piece is one line naming it.

The official v1 mesh is z-up in [-0.5, 0.5]^3 with per-vertex colours; it is converted once here to our
convention (+Y up, centred, largest side 1) by the rotation the official GLB export uses.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..camera import DEFAULT_FOV_DEG
from ..errors import V2M4Error
from ..types import Mesh
from .base import canonicalise

DEFAULT_MODEL = "JeffreyXiang/TRELLIS-image-large"
# z-up -> y-up, as trellis.utils.postprocessing_utils.to_glb rotates its vertices: (x, y, z) -> (x, z, -y)
Z_UP_TO_Y_UP = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=np.float64)


def _import_pipeline():
    """The official pipeline class, and which of spconv / flash_attn run as our pure-PyTorch stand-ins."""
    checkout = os.environ.get("V2M4_TRELLIS")
    if checkout:
        if not (Path(checkout) / "trellis").is_dir():
            raise V2M4Error(f"V2M4_TRELLIS={checkout} is not a TRELLIS checkout (no trellis/ folder in it)")
        sys.path.insert(0, checkout)
    from .trellis_fallbacks import install_fallbacks

    extensions = install_fallbacks()  # before TRELLIS's modules read their backend switches
    try:
        from trellis.pipelines import TrellisImageTo3DPipeline
    except ImportError as exc:
        raise V2M4Error(
            f"TRELLIS is not installed ({exc.name or exc} is missing); it needs its checkout (git clone "
            f"--recurse-submodules https://github.com/microsoft/TRELLIS, run its setup.sh, set V2M4_TRELLIS to the "
            f"checkout), its weights and a CUDA GPU; or use --generator meshes:DIR (a mesh per frame from any tool) "
            f"or --generator hunyuan (pip install 'v2m4[hunyuan]')") from None
    return TrellisImageTo3DPipeline, extensions


def _weights(model: str) -> str:
    """A local folder with pipeline.json, or a Hugging Face id already in the local cache."""
    p = Path(model)
    if p.is_dir():
        if not (p / "pipeline.json").is_file():
            raise V2M4Error(f"TRELLIS weights folder {p} has no pipeline.json")
        return str(p)
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # TRELLIS needs it to load an id; without it only a folder can be read
        raise V2M4Error(f"TRELLIS weights {model} are not a folder, and huggingface_hub is not installed to find "
                        f"them in the Hugging Face cache: pip install huggingface_hub, then download them once: "
                        f"huggingface-cli download {model}") from None
    try:
        cached = try_to_load_from_cache(model, "pipeline.json")
    except Exception:  # an id that is not a repo name, an old huggingface_hub
        cached = None
    if not isinstance(cached, str):
        from huggingface_hub.constants import HF_HUB_CACHE
        raise V2M4Error(f"TRELLIS weights {model} are not in the Hugging Face cache ({HF_HUB_CACHE}) and not a "
                        f"folder; download them once: huggingface-cli download {model}")
    return model


def to_mesh(result) -> Mesh:
    """The official MeshExtractResult (vertices (N, 3) z-up, faces (F, 3), vertex_attrs (N, C) with colours in
    the first 3 channels) -> our Mesh (+Y up, canonical box, vertex colours)."""
    v = result.vertices.detach().double().cpu().numpy() @ Z_UP_TO_Y_UP.T
    f = result.faces.detach().long().cpu()
    attrs = getattr(result, "vertex_attrs", None)
    col = attrs[:, :3].detach().float().cpu().clamp(0, 1) if attrs is not None and attrs.shape[-1] >= 3 else None
    return canonicalise(Mesh(torch.as_tensor(v, dtype=torch.float32), f, vertex_colors=col))


def render_extract(ctx, result, cameras, *, background: float = 0.5) -> dict:
    """Render an official MeshExtractResult with its vertex colours, differentiably in its vertices and colours:
    turned +Y up and put into the canonical box as ``to_mesh`` does (the box held fixed, so gradients move the
    surface, not the frame). cameras: cam_from_canonical, as the camera search finds them."""
    from .. import render as R

    rot = torch.as_tensor(Z_UP_TO_Y_UP, dtype=torch.float32, device=result.vertices.device)
    v = result.vertices.float() @ rot.T
    lo, hi = v.detach().amin(0), v.detach().amax(0)
    v = (v - (lo + hi) / 2) / (hi - lo).max().clamp_min(1e-12)
    col = result.vertex_attrs[:, :3].float().clamp(0, 1)
    return R.render(ctx, Mesh(v, result.faces.long(), vertex_colors=col), cameras, channels=("rgb", "mask"),
                    background=background)


def randomise_zero_layers(model, std: float = 0.02):
    """A model built without weights, made to compute: TRELLIS zero-initialises its output layers, so a fresh
    model hides every path but its skips; those get a small normal draw. Returns the model, frozen (tests and
    benchmarks of the official classes without weights)."""
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, std)
    return model.requires_grad_(False)


class TrellisGenerator:
    name = "trellis"
    fov_deg = DEFAULT_FOV_DEG  # the official code renders and conditions at 40 degrees

    def __init__(self, model: str = DEFAULT_MODEL, *, device: str = "cuda", seed: int = 0, ss_steps: int = 25,
                 slat_steps: int = 25, cfg_strength: tuple[float, float] = (7.5, 3.0)):
        # the sampler settings are the official run()'s defaults, except 25 steps per stage (Appendix A)
        Pipeline, self.extensions = _import_pipeline()
        path = _weights(model)
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            raise V2M4Error("TRELLIS needs a CUDA GPU here (its sparse ops and rasterisers are CUDA-only); use "
                            "--generator meshes:DIR with meshes made elsewhere")
        from .trellis_fallbacks import device_safe_defaults
        try:
            device_safe_defaults(device)  # FlexiCubes builds its grids on the device the models will run on
        except (ImportError, AttributeError):  # another TRELLIS version: its own defaults stand
            pass
        self.pipe = Pipeline.from_pretrained(path)
        self.pipe.to(torch.device(device))
        self.seed = seed
        self.ss = {"steps": ss_steps, "cfg_strength": cfg_strength[0]}
        self.slat = {"steps": slat_steps, "cfg_strength": cfg_strength[1]}

    def generate(self, image: Tensor, index: int) -> Mesh:
        from PIL import Image
        rgba = (image.detach().cpu().clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        out = self.pipe.run(Image.fromarray(rgba, "RGBA"), seed=self.seed + index, formats=["mesh"],
                            preprocess_image=True, sparse_structure_sampler_params=self.ss,
                            slat_sampler_params=self.slat)
        return to_mesh(out["mesh"][0])

    @torch.no_grad()
    def generate_batch(self, images, indices) -> list[Mesh]:
        """One mesh per image, sampled together: one conditioning pass, one batch through each flow model and
        decoder. Frame ``index`` draws its noise from ``seed + index`` on the CPU in the order ``run`` draws it
        (the structure's, then its voxels' features), so a frame's mesh is ``generate``'s, alone or in a batch (up
        to floating point); a frame whose structure has no voxel gives an empty mesh."""
        from PIL import Image

        from trellis.modules import sparse as sp

        pipe = self.pipe
        indices = [int(i) for i in indices]
        pil = [pipe.preprocess_image(Image.fromarray(
            (im.detach().cpu().clamp(0, 1).numpy() * 255).round().astype(np.uint8), "RGBA")) for im in images]
        cond = pipe.get_cond(pil)
        gens = [torch.Generator().manual_seed(self.seed + i) for i in indices]
        ss_flow, slat_flow = pipe.models["sparse_structure_flow_model"], pipe.models["slat_flow_model"]
        r = ss_flow.resolution
        noise = torch.cat([torch.randn(1, ss_flow.in_channels, r, r, r, generator=g) for g in gens]).to(pipe.device)
        z = pipe.sparse_structure_sampler.sample(ss_flow, noise, **cond,
                                                 **{**pipe.sparse_structure_sampler_params, **self.ss},
                                                 verbose=False).samples
        coords = torch.argwhere(pipe.models["sparse_structure_decoder"](z) > 0)[:, [0, 2, 3, 4]].int()
        counts = torch.bincount(coords[:, 0].long(), minlength=len(gens)).tolist()  # argwhere: batch-major order
        live = [b for b, n in enumerate(counts) if n > 0]
        out = [Mesh(torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.int64))] * len(gens)
        if not live:
            return out
        feats = torch.cat([torch.randn(counts[b], slat_flow.in_channels, generator=gens[b]) for b in live])
        keep = torch.isin(coords[:, 0], torch.tensor(live, device=coords.device, dtype=coords.dtype))
        coords = coords[keep]
        for new, b in enumerate(live):  # the sparse batch index must be dense (0..len(live)-1)
            coords[coords[:, 0] == b, 0] = new
        sub = {k: v[live] for k, v in cond.items()}
        x = sp.SparseTensor(feats=feats.to(pipe.device), coords=coords)
        slat = pipe.slat_sampler.sample(slat_flow, x, **sub, **{**pipe.slat_sampler_params, **self.slat},
                                        verbose=False).samples
        norm = pipe.slat_normalization
        slat = slat * torch.tensor(norm["std"], device=slat.device)[None] + \
            torch.tensor(norm["mean"], device=slat.device)[None]
        meshes = pipe.decode_slat(slat, ["mesh"])["mesh"]
        for b, m in zip(live, meshes):
            out[b] = to_mesh(m)
        return out

    def refine(self, frame: Tensor, index: int, camera, *, scorer=None, config=None, render_backend: str = "auto",
               progress=None) -> Mesh:
        """Sec. 4.2: frame ``index`` generated again with its negative condition embedding optimised so that the
        decoded mesh, rendered under ``camera`` (this frame's cam_from_canonical from the camera search, at the
        frame's resolution), matches ``frame`` (H, W, 4). Same seed as ``generate``, so the same voxels.

        The loss is the scorer's (weight-free silhouette + colour by default; DreamSim/LPIPS scorers where
        installed) on renders of the decoded mesh with its vertex colours, plus the MSE term of the config.
        """
        from PIL import Image

        from .. import render as R
        from ..scoring import SilhouetteColourScorer
        from ..stages.appearance import AppearanceConfig, refine_negative_condition
        from trellis.modules import sparse as sp

        pipe = self.pipe
        scorer = scorer or SilhouetteColourScorer()
        config = config or AppearanceConfig()
        device = next(pipe.models["slat_flow_model"].parameters()).device
        rgba = (frame.detach().cpu().clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        image = pipe.preprocess_image(Image.fromarray(rgba, "RGBA"))
        cond = pipe.get_cond([image])
        torch.manual_seed(self.seed + index)  # generate()'s seed: the same sparse structure
        coords = pipe.sample_sparse_structure(cond, 1, self.ss)
        flow = pipe.models["slat_flow_model"]
        # drawn on the CPU and moved, as the official sample_slat does: the same noise as generate()'s
        noise = sp.SparseTensor(feats=torch.randn(coords.shape[0], flow.in_channels).to(device), coords=coords)
        norm = pipe.slat_normalization
        std = torch.tensor(norm["std"], device=device)[None]
        mean = torch.tensor(norm["mean"], device=device)[None]
        ctx = R.context(render_backend, device)
        target = frame.to(device)
        cam = camera.to(device)

        def velocity(x, t, c):
            return flow(x, torch.full((1,), 1000.0 * t, device=device), c)  # TRELLIS's sampler passes 1000 t

        def render_loss(x0):
            out = render_extract(ctx, pipe.models["slat_decoder_mesh"](x0 * std + mean)[0], cam)
            return scorer(out["rgb"], out["mask"], target)[0]

        params = {**getattr(pipe, "slat_sampler_params", {}), **self.slat}
        result = refine_negative_condition(velocity, render_loss, noise, cond["cond"], cond["neg_cond"],
                                           steps=params["steps"], cfg_strength=params["cfg_strength"],
                                           rescale_t=params.get("rescale_t", 3.0), config=config,
                                           sigma_min=getattr(getattr(pipe, "slat_sampler", None), "sigma_min", 1e-5),
                                           progress=progress)
        self.last_refinement = result
        with torch.no_grad():
            return to_mesh(pipe.decode_slat(result.sample * std + mean, ["mesh"])["mesh"][0])
