"""Stand-ins for the CUDA extensions the official TRELLIS code imports, over v2m4.generators.sparse.

TRELLIS's sparse modules import ``spconv.pytorch`` (SparseConvTensor, SubMConv3d) and, for attention over sparse
tensors, ``flash_attn`` (its varlen functions) or ``xformers``; its FlexiCubes mesh extraction imports one input
check from ``kaolin``. ``install_fallbacks()`` puts pure-PyTorch modules
under those names when, and only when, the real package cannot be imported, and selects them through TRELLIS's
own environment switches; the dense transformers use TRELLIS's built-in ``sdpa`` backend. Only what the image-to-3D
v1 models call is provided: submanifold convolutions (stride 1, no padding) and attention; a strided or inverse
sparse convolution raises a one-line error naming spconv.
"""

from __future__ import annotations

import enum
import importlib.machinery
import importlib.util
import os
import sys
import types

import torch
from torch import Tensor, nn

from .sparse import neighbour_map, submanifold_conv3d, varlen_attention

__all__ = ["install_fallbacks", "device_safe_defaults", "SparseConvTensor", "SubMConv3d", "check_tensor"]


class ConvAlgo(enum.Enum):
    Native = 0
    MaskImplicitGemm = 1
    MaskSplitImplicitGemm = 2


class SparseConvTensor:
    """The part of spconv.pytorch.SparseConvTensor that TRELLIS uses: features over integer voxel indices."""

    def __init__(self, features: Tensor, indices: Tensor, spatial_shape, batch_size: int, grid=None,
                 voxel_num=None, indice_dict=None, benchmark: bool = False, **_):
        self._features = features
        self.indices = indices
        self.spatial_shape = [int(s) for s in spatial_shape]
        self.batch_size = int(batch_size)
        self.grid = grid
        self.voxel_num = voxel_num
        self.indice_dict = {} if indice_dict is None else indice_dict
        self.benchmark = benchmark
        self.benchmark_record = {}
        self.thrust_allocator = None
        self._timer = None
        self.force_algo = None
        self.int8_scale = None

    @property
    def features(self) -> Tensor:
        return self._features

    @features.setter
    def features(self, value: Tensor):
        self._features = value

    def replace_feature(self, features: Tensor) -> "SparseConvTensor":
        out = SparseConvTensor(features, self.indices, self.spatial_shape, self.batch_size, self.grid,
                               self.voxel_num, self.indice_dict, self.benchmark)
        return out

    def shadow_copy(self) -> "SparseConvTensor":
        return self.replace_feature(self._features)

    def dense(self, channels_first: bool = True) -> Tensor:
        f = self._features.reshape(self._features.shape[0], -1)
        out = f.new_zeros(self.batch_size, *self.spatial_shape, f.shape[1])
        idx = self.indices.long()
        out[idx[:, 0], idx[:, 1], idx[:, 2], idx[:, 3]] = f
        return out.permute(0, 4, 1, 2, 3).contiguous() if channels_first else out


class SubMConv3d(nn.Module):
    """spconv.pytorch.SubMConv3d's parameters (weight (out, kx, ky, kz, in), bias (out,)) and result."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, indice_key=None, algo=None, name=None):
        super().__init__()
        k = (kernel_size,) * 3 if isinstance(kernel_size, int) else tuple(kernel_size)
        if any(s != 1 for s in ((stride,) * 3 if isinstance(stride, int) else stride)) or groups != 1:
            raise NotImplementedError("the pure-PyTorch SubMConv3d has stride 1 and one group; install spconv")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, k
        self.dilation = dilation
        self.indice_key = indice_key
        self.weight = nn.Parameter(torch.empty(out_channels, *k, in_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        bound = 1 / (in_channels * k[0] * k[1] * k[2]) ** 0.5
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: SparseConvTensor) -> SparseConvTensor:
        nbr = None
        if self.kernel_size != (1, 1, 1):
            # layers sharing an indice_key run on the same sites: find the neighbours once, as spconv does
            key = (self.indice_key, self.kernel_size, self.dilation)
            cached = x.indice_dict.get(key) if self.indice_key is not None else None
            if cached is not None and cached[0] is x.indices:
                nbr = cached[1]
            else:
                nbr = neighbour_map(x.indices, self.kernel_size, self.dilation)
                if self.indice_key is not None:
                    x.indice_dict[key] = (x.indices, nbr)
        f = x.features.reshape(x.features.shape[0], -1)
        out = submanifold_conv3d(f, x.indices, self.weight, self.bias, dilation=self.dilation, neighbours=nbr)
        return x.replace_feature(out)


class _NeedsSpconv(nn.Module):
    def __init__(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no pure-PyTorch fallback here (TRELLIS image-to-3D "
                                  f"v1 does not use it); install spconv")


class SparseConv3d(_NeedsSpconv):
    pass


class SparseInverseConv3d(_NeedsSpconv):
    pass


def check_tensor(tensor: Tensor, shape=None, dtype=None, device=None, throw: bool = True) -> bool:
    """kaolin.utils.testing.check_tensor: shape (None matches any size), dtype and device of a tensor."""
    problem = None
    if shape is not None and (tensor.dim() != len(shape) or
                              any(s is not None and s != t for s, t in zip(shape, tensor.shape))):
        problem = f"tensor shape is {tuple(tensor.shape)}, should be {tuple(shape)}"
    elif dtype is not None and tensor.dtype != dtype:
        problem = f"tensor dtype is {tensor.dtype}, should be {dtype}"
    elif device is not None and tensor.device != torch.device(device):
        problem = f"tensor device is {tensor.device}, should be {device}"
    if problem and throw:
        raise ValueError(problem)
    return problem is None


def device_safe_defaults(device: str | torch.device) -> None:
    """TRELLIS builds its FlexiCubes grids on "cuda" by default, at model construction: make that default the
    device at hand, so the official models also build (and run) on a CPU. Call after importing trellis."""
    import trellis.representations.mesh.cube2mesh as c2m

    init = c2m.SparseFeatures2Mesh.__init__
    init.__defaults__ = (str(torch.device(device)),) + tuple(init.__defaults__[1:])


def _lens(cu_seqlens: Tensor) -> list[int]:
    return (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q=None, max_seqlen_k=None,
                           dropout_p=0.0, softmax_scale=None, causal=False, **_):
    if causal or dropout_p:
        raise NotImplementedError("the pure-PyTorch flash_attn fallback has no causal mask or dropout")
    return varlen_attention(q, k, v, _lens(cu_seqlens_q), _lens(cu_seqlens_k), scale=softmax_scale)


def flash_attn_varlen_kvpacked_func(q, kv, cu_seqlens_q, cu_seqlens_k, max_seqlen_q=None, max_seqlen_k=None,
                                    **kw):
    k, v = kv.unbind(1)
    return flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, **kw)


def flash_attn_varlen_qkvpacked_func(qkv, cu_seqlens, max_seqlen=None, **kw):
    q, k, v = qkv.unbind(1)
    return flash_attn_varlen_func(q, k, v, cu_seqlens, cu_seqlens, **kw)


def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, **_):
    """(B, L, H, C) layout, as flash_attn."""
    out = torch.nn.functional.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                           dropout_p=dropout_p, is_causal=causal, scale=softmax_scale)
    return out.transpose(1, 2)


def flash_attn_kvpacked_func(q, kv, **kw):
    k, v = kv.unbind(2)
    return flash_attn_func(q, k, v, **kw)


def flash_attn_qkvpacked_func(qkv, **kw):
    q, k, v = qkv.unbind(2)
    return flash_attn_func(q, k, v, **kw)


def _available(name: str) -> bool:
    mod = sys.modules.get(name)
    if mod is not None:
        return not getattr(mod, "__v2m4_fallback__", False)
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _stand_in(name: str) -> types.ModuleType:
    """An empty module registered as ours. It carries a spec (no loader, no file, no version), so libraries that
    probe with ``importlib.util.find_spec`` (transformers does, for flash_attn) get an answer instead of a
    ValueError, and read it as no real installation."""
    m = types.ModuleType(name)
    m.__spec__ = importlib.machinery.ModuleSpec(name, None)
    m.__v2m4_fallback__ = True
    return m


def install_fallbacks(*, force: bool = False) -> dict[str, str]:
    """Register the stand-ins for what is not installed and point TRELLIS's switches at them.

    Returns {extension: "installed" | "pure-torch fallback"} for spconv, flash_attn and kaolin. Call before importing
    trellis (its modules read the switches at import). Real packages are never shadowed, unless force (tests
    that compare the fallbacks with the real packages in a separate process).
    """
    used = {}
    if _available("spconv") and not force:
        used["spconv"] = "installed"
    else:
        root, sub = _stand_in("spconv"), _stand_in("spconv.pytorch")
        for obj in (SparseConvTensor, SubMConv3d, SparseConv3d, SparseInverseConv3d, ConvAlgo):
            setattr(sub, obj.__name__, obj)
        root.pytorch = sub
        sys.modules["spconv"], sys.modules["spconv.pytorch"] = root, sub
        used["spconv"] = "pure-torch fallback"
        os.environ.setdefault("SPCONV_ALGO", "native")  # the stand-in has one algorithm
    os.environ.setdefault("SPARSE_BACKEND", "spconv")
    if _available("flash_attn") and not force:
        used["flash_attn"] = "installed"
    else:
        fa = _stand_in("flash_attn")
        for fn in (flash_attn_func, flash_attn_kvpacked_func, flash_attn_qkvpacked_func, flash_attn_varlen_func,
                   flash_attn_varlen_kvpacked_func, flash_attn_varlen_qkvpacked_func):
            setattr(fa, fn.__name__, fn)
        sys.modules["flash_attn"] = fa
        used["flash_attn"] = "pure-torch fallback"
        os.environ.setdefault("ATTN_BACKEND", "sdpa")  # TRELLIS's dense attention has its own SDPA path
    os.environ.setdefault("SPARSE_ATTN_BACKEND", "flash_attn")
    if _available("kaolin") and not force:
        used["kaolin"] = "installed"
    else:
        names = ("kaolin", "kaolin.utils", "kaolin.utils.testing")
        mods = [_stand_in(n) for n in names]
        mods[0].utils, mods[1].testing = mods[1], mods[2]
        mods[2].check_tensor = check_tensor
        for n, m in zip(names, mods):
            sys.modules[n] = m
        used["kaolin"] = "pure-torch fallback"
    return used
