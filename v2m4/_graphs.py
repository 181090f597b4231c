"""Optimisation steps replayed as CUDA graphs.

Why: a registration step is some thousand small kernels (renders of a few hundred views, Chamfer, shape energies,
the optimiser), each a few microseconds of GPU work; launched one by one from Python, the GPU waits on the host
for most of the step. A CUDA graph records the step's kernels once and replays them with one launch. What a graph
needs from the step: static shapes, no host synchronisation, inputs read from and outputs written to the same
tensors on every replay (the parameters and optimiser state are updated in place; per-step choices are copied
into fixed buffers before the replay).
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Hashable, NamedTuple

import torch
from torch import Tensor

from . import render as R
from .camera import Camera
from .types import Mesh


class StepGraphs:
    """Runs ``body`` (forward, backward and optimiser step of the parameters ``params``) as a CUDA graph, one graph
    per key (steps whose loss has other terms are other graphs). The first ``warmup`` calls of a key run eagerly
    on a side stream (they are real steps; the CUDA libraries set themselves up there, as capture requires); the
    next call captures the graph and replays it, and later calls replay it. Graphs share one memory pool: they are
    only ever replayed one after another. enabled=False (or a CPU tensor): every call runs ``body`` eagerly.

    The gradients of a replayed step live in the graph's memory, not in ``param.grad`` as the caller set it:
    read nothing from ``.grad`` between steps."""

    def __init__(self, params: list[torch.Tensor], *, enabled: bool = True, warmup: int = 2):
        self.params = params
        self.enabled = enabled and all(p.is_cuda for p in params)
        self.warmup = warmup
        self.graphs: dict[Hashable, torch.cuda.CUDAGraph] = {}
        self.calls: Counter = Counter()
        self.pool = None

    def _zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def __call__(self, key: Hashable, body: Callable[[], None]) -> None:
        if not self.enabled:
            self._zero_grad()
            body()
            return
        g = self.graphs.get(key)
        if g is not None:
            g.replay()
            return
        self.calls[key] += 1
        if self.calls[key] <= self.warmup:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self._zero_grad()
                body()
            torch.cuda.current_stream().wait_stream(side)
            return
        self._zero_grad()  # the captured backward allocates the gradients in the graph's pool
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, pool=self.pool):
            body()
        self.pool = g.pool()
        self.graphs[key] = g
        g.replay()

    def reset(self) -> None:
        """Forget every graph (their buffers changed shape): the next calls warm up and capture again."""
        self.graphs.clear()
        self.calls.clear()
        self.pool = None
        self._zero_grad()


class RenderPass(NamedTuple):
    """One render of a step, as ``render`` takes it: mesh (its faces, colours), cameras, vertices (V, 3) or
    (B, V, 3) replacing the mesh's (None: its own), topology (its edge topology), near and far (B,) (None: the
    vertices' own range)."""

    mesh: Mesh
    cameras: Camera
    vertices: Tensor | None
    topology: tuple
    near: Tensor | None = None
    far: Tensor | None = None


class StepVisibility:
    """The visibility of a step's renders at the step's positions, found before the step (``update``), and the
    fixed sizes their ``render_visible`` needs: crossing slots and covered-pixel rows, half again as many as
    needed, in blocks of 4096, so that a growing silhouette re-captures a graph rarely. The tensors are updated in
    place where their shape allows: a captured step reads them.

    graphs: where ``update`` is given a function for its renders, on CUDA, that function's work, the renders'
    projections and their silhouette counts are replayed as one CUDA graph (``StepGraphs``, one per key). Before
    it, a pass's host work (some hundred small kernels launched from Python) took longer than the GPU's; the
    rasteriser, whose buffer checks wait on the device, stays outside."""

    def __init__(self, *, graphs: bool = False):
        self.tri_id: dict[str, Tensor] = {}
        self.slots: dict[str, list[int]] = {}  # per render: [crossings, pixels]
        self.before = StepGraphs([], enabled=graphs)
        self._projected: dict[str, tuple[RenderPass, Tensor, Tensor]] = {}

    def _project(self, passes: dict[str, RenderPass]) -> None:
        self._projected = {}
        for name, p in passes.items():
            pos = R.clip_positions(p.mesh, p.cameras, vertices=p.vertices, near=p.near, far=p.far)
            self._projected[name] = (p, pos, R.silhouette_crossings(p.mesh, p.cameras, topology=p.topology, pos=pos))

    @torch.no_grad()
    def update(self, ctx, passes: dict[str, RenderPass] | Callable[[], dict[str, RenderPass]],
               key: Hashable = ()) -> bool:
        """Visibility of each named render; one host wait for all their sizes. True if some size grew (captured
        steps are then stale). passes: the renders, or a function that makes them from tensors whose storage stays
        the same from step to step (parameters, buffers the step's draws are copied into), replayed as a graph
        with ``graphs`` (key: which graph, for functions whose renders differ)."""
        if callable(passes):
            self.before(key, lambda: self._project(passes()))
        else:
            self._project(passes)
        need = {}
        for name, (p, pos, crossings) in self._projected.items():
            tri_id = R.visible_faces(ctx, p.mesh, p.cameras, pos=pos)
            old = self.tri_id.get(name)
            if old is not None and old.shape == tri_id.shape:
                old.copy_(tri_id)
            else:
                self.tri_id[name] = tri_id
            need[name] = torch.stack([crossings, (tri_id >= 0).sum()])
        grew = False
        for name, counts in zip(need, torch.stack(list(need.values())).tolist() if need else []):
            have = self.slots.setdefault(name, [0, 0])
            for i, n in enumerate(counts):
                if n > have[i]:
                    have[i], grew = -(-int(n * 1.5) // 4096) * 4096, True
        return grew

    def key(self) -> tuple:
        return tuple((k, *v) for k, v in self.slots.items())

    def render(self, ctx, name: str, p: RenderPass, channels: tuple[str, ...], **kw) -> dict[str, Tensor]:
        """``render_visible`` of pass p (the one ``update`` saw as ``name``, at the positions it had then)."""
        crossings, pixels = self.slots[name]
        return R.render_visible(ctx, p.mesh, p.cameras, self.tri_id[name], crossings=crossings, pixels=pixels,
                                channels=channels, vertices=p.vertices, topology=p.topology, near=p.near, far=p.far,
                                **kw)
