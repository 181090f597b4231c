"""What the CPU's compiled kernels (``render/_cpu.py``, ``_nearest_cpu.py``) share: numba, if installed; each
kernel compiled once and cached; a kernel run over row ranges on a thread pool.

Threads rather than numba's own parallel loops: the kernels release the GIL, and a pool of ours stays safe when
several threads render at once (numba's default threading layer is not) and sizes itself by torch's thread count.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch

try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; without it the tensor code paths do the work
    numba = None

_compiled: dict[Callable, Callable] = {}
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def available() -> bool:
    return numba is not None


def compiled(kernel: Callable) -> Callable:
    """kernel, compiled (nopython, GIL released) on first use."""
    fn = _compiled.get(kernel)
    if fn is None:
        try:  # compiled once per machine, kept beside the kernel's file or in the user's cache
            fn = numba.njit(cache=True, nogil=True)(kernel)
        except RuntimeError:  # nowhere writable to keep it: compile in every process (about 2 s)
            fn = numba.njit(nogil=True)(kernel)
        _compiled[kernel] = fn
    return fn


def _split(n: int, job: Callable[[int, int], None]) -> None:
    """job(r0, r1) for one range [r0, r1) of range(n) per thread (torch's thread count, the pool grown to that),
    the ranges run at once; one call over everything where one thread is all there is."""
    global _pool, _pool_size
    k = max(1, min(n, torch.get_num_threads()))
    if k == 1:
        job(0, n)
        return
    if _pool is None or _pool_size < k:
        _pool, _pool_size = ThreadPoolExecutor(max_workers=k, thread_name_prefix="v2m4-kernel"), k
    cuts = [n * i // k for i in range(k + 1)]
    for j in [_pool.submit(job, r0, r1) for r0, r1 in zip(cuts, cuts[1:]) if r1 > r0]:
        j.result()


def over_rows(kernel: Callable, sliced: list[np.ndarray], shared: tuple, out: np.ndarray) -> None:
    """compiled(kernel)(*sliced, *shared, out), with ``sliced`` and ``out`` (rows first, R rows each) cut into one
    row range per thread (torch's thread count), the ranges run at once."""
    fn = compiled(kernel)
    _split(out.shape[0], lambda r0, r1: fn(*(a[r0:r1] for a in sliced), *shared, out[r0:r1]))


def over_range(kernel: Callable, n: int, args: tuple) -> None:
    """compiled(kernel)(r0, r1, *args) for one range [r0, r1) of range(n) per thread, the ranges run at once: for
    kernels whose rows are not the arrays' first axis (each call writes only its own range)."""
    fn = compiled(kernel)
    _split(n, lambda r0, r1: fn(r0, r1, *args))
