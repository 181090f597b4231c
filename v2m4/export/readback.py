"""An independent GLB reader for round-trip checks: pygltflib parses the file, this module decodes accessors and
evaluates the morph-weight animation the way the glTF spec says a player must (it shares no code with the writer).
"""

from __future__ import annotations

import os

import numpy as np

_COMPONENTS = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


class GlbAnimation:
    """The first mesh of a GLB and its weights animation: ``positions(t)`` evaluates the morphed vertices."""

    def __init__(self, path: str | os.PathLike):
        import pygltflib

        self.gltf = g = pygltflib.GLTF2().load(str(path))
        self.blob = g.binary_blob()
        prim = g.meshes[0].primitives[0]
        self.rest = self.read(prim.attributes.POSITION)
        self.faces = self.read(prim.indices).reshape(-1, 3).astype(np.int64)
        self.targets = np.stack([self.read(t["POSITION"]) for t in (prim.targets or [])]) if prim.targets else \
            np.zeros((0,) + self.rest.shape, np.float32)
        self.default_weights = np.array(g.meshes[0].weights or [0.0] * len(self.targets), np.float32)
        self.times = self.weights = None
        for anim in g.animations or []:
            for ch in anim.channels:
                if ch.target.path == "weights":
                    s = anim.samplers[ch.sampler]
                    if s.interpolation != "LINEAR":
                        raise ValueError(f"reader handles LINEAR weight samplers only, got {s.interpolation}")
                    self.times = self.read(s.input).reshape(-1)
                    self.weights = self.read(s.output).reshape(len(self.times), -1)

    def read(self, index: int) -> np.ndarray:
        acc = self.gltf.accessors[index]
        view = self.gltf.bufferViews[acc.bufferView]
        dtype = np.dtype(_COMPONENTS[acc.componentType])
        width = _WIDTH[acc.type]
        start = (view.byteOffset or 0) + (acc.byteOffset or 0)
        stride = view.byteStride or dtype.itemsize * width
        raw = np.frombuffer(self.blob, dtype=np.uint8, count=stride * (acc.count - 1) + dtype.itemsize * width,
                            offset=start)
        rows = [raw[i * stride: i * stride + dtype.itemsize * width].view(dtype) for i in range(acc.count)] \
            if stride != dtype.itemsize * width else [raw.view(dtype)]
        out = np.concatenate(rows).reshape(acc.count, width)
        return out[:, 0] if width == 1 else out

    def weights_at(self, t: float) -> np.ndarray:
        """Morph weights at time t (seconds): linear between samples, clamped outside (glTF 2.0, Sec. 3.11)."""
        if self.times is None:
            return self.default_weights
        tt = self.times
        if t <= tt[0]:
            return self.weights[0]
        if t >= tt[-1]:
            return self.weights[-1]
        i = int(np.searchsorted(tt, t, side="right")) - 1
        u = (t - tt[i]) / (tt[i + 1] - tt[i])
        return (1 - u) * self.weights[i] + u * self.weights[i + 1]

    def positions(self, t: float) -> np.ndarray:
        w = self.weights_at(t).astype(np.float64)
        return self.rest.astype(np.float64) + np.tensordot(w, self.targets.astype(np.float64), axes=1)
