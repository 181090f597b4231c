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
from typing import Callable, Hashable

import torch


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
