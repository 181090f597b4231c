"""nvdiffrast backend (opt-in, CUDA only; its licence is non-commercial, so it is never the only way).

Installed from the PyPI package ``diffrp-nvdiffrast``, which JIT-compiles its CUDA plugin on first use. On
torch >= 2.5 the plugin module must be registered in ``sys.modules`` before nvdiffrast imports it by name:
nvdiffrast 0.3.3 loads its plugin with ``torch.utils.cpp_extension.load`` and then calls
``importlib.import_module``, and recent torch no longer registers the module it returns, so the import fails
with ``ModuleNotFoundError: No module named 'nvdiffrast_plugin_...'``. ``load_nvdiffrast`` applies that fix once,
inside this backend.
"""

from __future__ import annotations

import importlib
import sys

import torch
from torch import Tensor

from ..errors import V2M4Error


def _register_modules(fn):
    def wrapped(*args, **kwargs):
        mod = fn(*args, **kwargs)
        if mod is not None and getattr(mod, "__name__", None):
            sys.modules.setdefault(mod.__name__, mod)
        return mod

    wrapped._v2m4_wrapped = True
    return wrapped


def load_nvdiffrast():
    """Import ``nvdiffrast.torch`` with the plugin-registration fix; a one-line V2M4Error if it cannot work."""
    import torch

    if not torch.cuda.is_available():
        raise V2M4Error("the nvdiffrast backend needs a CUDA GPU; use backend='torch' on this machine")
    try:
        from torch.utils import cpp_extension
    except ImportError as exc:  # pragma: no cover - torch always ships it
        raise V2M4Error(f"torch.utils.cpp_extension is unavailable ({exc}); use backend='torch'") from None
    for name in ("load", "_import_module_from_library"):
        fn = getattr(cpp_extension, name, None)
        if fn is not None and not getattr(fn, "_v2m4_wrapped", False):
            setattr(cpp_extension, name, _register_modules(fn))
    try:
        return importlib.import_module("nvdiffrast.torch")
    except ImportError:
        raise V2M4Error("nvdiffrast is not installed: pip install 'v2m4[gpu]' (diffrp-nvdiffrast), "
                        "or use backend='torch'") from None


def make_context(device):
    dr = load_nvdiffrast()
    try:
        return dr, dr.RasterizeCudaContext(device=device)
    except Exception as exc:  # the JIT build fails with compiler errors of many types
        raise V2M4Error(f"nvdiffrast could not build or start its CUDA plugin ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}); check nvcc/ninja or use backend='torch'") from None


def raster_context(ctx, shape: tuple[int, int, int], keep: int = 4):
    """The nvdiffrast rasteriser context for batches of this shape (views, height, width).

    Why one per shape: nvdiffrast's CUDA rasteriser frees and reallocates its internal buffers whenever a call's
    view count or resolution differs from the previous call's, and each cudaFree waits on the whole device. A step
    that renders two shapes (the keyframes' views, then the video's frames) would pay that on every call. The
    ``keep`` most recently used shapes keep their own context; an older one is dropped (its buffers freed)."""
    cache = ctx._glctxs
    glctx = cache.pop(shape, None)
    if glctx is None:
        glctx = ctx._glctx if not any(g is ctx._glctx for g in cache.values()) else \
            ctx._dr.RasterizeCudaContext(device=ctx.device)
    cache[shape] = glctx  # most recent last
    while len(cache) > keep:
        cache.pop(next(iter(cache)))
    return glctx


class DenseFragments:
    """The nvdiffrast counterpart of _torch.Fragments: the same methods on dense (B, H, W, C) tensors, so that
    render() has one shading code path while each backend keeps its fast layout (nvdiffrast's interpolate and
    texture kernels work on whole images; on the GPU dense is cheaper than compacting)."""

    def __init__(self, dr, rast: Tensor):
        self.dr = dr
        self.rast = rast
        self.covered = (rast[..., 3] > 0).to(rast.dtype)

    def coverage(self) -> Tensor:
        return self.covered

    def ones(self) -> Tensor:
        return self.covered[..., None]

    def full(self, channels: int, value: float) -> Tensor:
        return self.covered[..., None].expand(*self.covered.shape, channels) * value

    def interpolate(self, attr: Tensor, tri: Tensor) -> Tensor:
        # a (V, C) attribute goes in as it is: nvdiffrast broadcasts 2-D attributes over the batch itself
        out, _ = self.dr.interpolate(attr.float().contiguous(), self.rast, tri.int().contiguous())
        return out

    def texture(self, tex: Tensor, uv: Tensor) -> Tensor:
        t = tex if tex.ndim == 4 else tex[None]
        if t.shape[0] == 1 and uv.shape[0] > 1:
            # one texture for every view: fold the views into the image height so nvdiffrast reads it once
            B, h, w, _ = uv.shape
            out = self.dr.texture(t.contiguous(), uv.reshape(1, B * h, w, 2).contiguous(), filter_mode="linear",
                                  boundary_mode="clamp")
            return out.reshape(B, h, w, -1)
        return self.dr.texture(t.contiguous(), uv.contiguous(), filter_mode="linear", boundary_mode="clamp")

    def dense(self, vals: Tensor, background: float | Tensor = 0.0) -> Tensor:
        # one pass over the images (these are the largest tensors of a batched render)
        # a number stays a number: as a tensor it would be copied to the device, and the host would wait for it
        bg = background.to(vals) if isinstance(background, Tensor) else float(background)
        return torch.where(self.covered[..., None] > 0, vals, bg)

    def rows(self, vals: Tensor) -> Tensor:
        """vals (B, H, W, C) -> (B * H * W, C), one row per pixel, 0 where nothing is covered."""
        return self.dense(vals).reshape(-1, vals.shape[-1])

    def row_pixels(self) -> Tensor:
        """(B * H * W,) each row's pixel (itself), or B * H * W where nothing is covered."""
        cov = self.covered.reshape(-1) > 0
        return torch.where(cov, torch.arange(cov.numel(), device=cov.device), cov.numel())

    def guard_slivers(self, sliver: Tensor) -> "DenseFragments":
        B, F = sliver.shape
        face = (self.rast[..., 3].detach().long() - 1).clamp_min(0)
        s = torch.gather(sliver, 1, face.reshape(B, -1)).view_as(face) & (self.covered > 0)
        return DenseFragments(self.dr, torch.where(s[..., None], self.rast.detach(), self.rast))

    def depth_buffer(self) -> Tensor:
        z = torch.where(self.covered > 0, self.rast[..., 2].detach(), torch.full_like(self.covered, float("inf")))
        return z.reshape(-1)

    def tri_id(self) -> Tensor:
        return self.rast[..., 3].detach().long() - 1
