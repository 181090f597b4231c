"""Large steps in inverse rendering of geometry (Nicolet et al. 2021): the smooth parameterisation and its optimiser.

A mesh's positions x (V, 3) are optimised through u = M x with M = I + lambda L (L the uniform Laplacian of the
mesh graph), so a gradient step on u moves x smoothly; ``UniformAdam`` normalises every entry's step by one
scalar so that the smoothing survives the optimiser.

Owned rather than imported: ``largesteps`` (PyPI) builds its matrices on 'cuda' unconditionally, so it cannot run
on a CPU. M^-1 is a dense Cholesky inverse (one factorisation per mesh; V <= ``dense_max``) or a ``cholespy``
sparse solve beyond.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .errors import V2M4Error
from .geometry import unique_edges


def uniform_laplacian(n: int, faces: Tensor) -> Tensor:
    """Dense (n, n) float64 combinatorial Laplacian D - A of the graph of faces (F, 3) over n vertices."""
    e = unique_edges(faces)
    L = torch.zeros(n, n, dtype=torch.float64, device=faces.device)
    L[e[:, 0], e[:, 1]] = -1
    L[e[:, 1], e[:, 0]] = -1
    L -= torch.diag(L.sum(1))
    return L


class SmoothSolver:
    """x = (I + lambda L)^-1 u for one mesh's connectivity (n vertices, faces (F, 3)); differentiable (M is
    symmetric, so the backward pass is the same solve, which autograd derives from the matrix product).

    ``to_u(x)`` (n, 3) -> u (n, 3) and ``to_x(u)`` its inverse. dense_max: above this many vertices the solve needs
    cholespy instead of a dense inverse."""

    def __init__(self, n: int, faces: Tensor, lam: float, *, dense_max: int = 12000):
        self.n = n
        if n <= dense_max:
            M = torch.eye(n, dtype=torch.float64, device=faces.device) + lam * uniform_laplacian(n, faces)
            self.inv = torch.cholesky_inverse(torch.linalg.cholesky(M)).float().contiguous()  # it comes column-major
            self.M = M.float()
            self._chol = None
        else:
            try:
                from cholespy import CholeskySolverF, MatrixType
            except ImportError:
                raise V2M4Error(f"registration of a {n}-vertex mesh needs the cholespy package "
                                f"(pip install cholespy), or simplify the mesh below {dense_max} vertices") from None
            e = unique_edges(faces)
            deg = torch.zeros(n, device=faces.device).index_add(0, e.flatten(), torch.ones(e.numel(), device=faces.device))
            ii = torch.cat([e[:, 0], e[:, 1], torch.arange(n, device=faces.device)])
            jj = torch.cat([e[:, 1], e[:, 0], torch.arange(n, device=faces.device)])
            vals = torch.cat([torch.full((2 * len(e),), -lam, device=faces.device), 1 + lam * deg]).float()
            self._chol = CholeskySolverF(n, ii.int(), jj.int(), vals.double(), MatrixType.COO)
            self.inv = None
            self.M = torch.sparse_coo_tensor(torch.stack([ii, jj]), vals, (n, n)).coalesce()

    def to_u(self, x: Tensor) -> Tensor:
        return self.M @ x

    def to_x(self, u: Tensor) -> Tensor:
        if self.inv is not None:
            # inv is symmetric, so this is inv @ u; written this way neither pass multiplies by a transposed
            # (column-major) inv, which on the CPU is 4x slower (1.6k vertices: 29 -> 7.6 ms per step, fwd+bwd)
            return (u.T @ self.inv).T
        return _CholespySolve.apply(u, self._chol)


class _CholespySolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, solver):
        x = torch.empty_like(u)
        solver.solve(u.detach().contiguous(), x)
        ctx.solver = solver
        return x

    @staticmethod
    def backward(ctx, g):
        out = torch.empty_like(g)
        ctx.solver.solve(g.contiguous(), out)
        return out, None


class Optimizer:
    """What the fits need of ``torch.optim.Optimizer``: the parameters, ``zero_grad``, ``step`` and a state that
    saves and loads (``state_dict``: the per-parameter state by position). Why not torch.optim: constructing any of
    its optimisers imports ``torch._dynamo`` (measured: 3.2 s on an H100 machine, 0.85 s on a 2-core CPU), the
    first time in a process, for a compiler the pipeline never uses."""

    def __init__(self, params, lr: float):
        self.params = list(params)
        self.lr = lr
        self.state: list[dict[str, Tensor]] = [{} for _ in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict:
        return {"lr": self.lr, "state": [dict(s) for s in self.state]}

    def load_state_dict(self, saved: dict) -> None:
        if len(saved["state"]) != len(self.params):
            raise V2M4Error(f"an optimiser state of {len(saved['state'])} parameters cannot be loaded into one of "
                            f"{len(self.params)}")
        self.lr = saved["lr"]
        self.state = [{k: v.to(p.device) for k, v in s.items()} for s, p in zip(saved["state"], self.params)]


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with torch.optim.Adam's single-tensor arithmetic, op for op, so that on the CPU its
    steps are torch's to the bit (tested); no weight decay or amsgrad. capturable: the step count lives on the
    parameters' device and the bias corrections are computed there, so a CUDA graph that captures a step counts
    on each replay (torch's ``capturable`` arithmetic)."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, *,
                 capturable: bool = False):
        super().__init__(params, lr)
        self.betas, self.eps, self.capturable = betas, eps, capturable

    @torch.no_grad()
    def step(self) -> None:
        b1, b2 = self.betas
        for p, st in zip(self.params, self.state):
            if p.grad is None:
                continue
            if not st:
                st["step"] = torch.zeros((), dtype=torch.float32, device=p.device if self.capturable else "cpu")
                st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            g, m, v, t = p.grad, st["exp_avg"], st["exp_avg_sq"], st["step"]
            t += 1
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            if self.capturable:
                step_size_neg = (self.lr / (1 - b1 ** t)).neg()
                denom = (v.sqrt() / ((1 - b2 ** t).sqrt() * step_size_neg)).add_(self.eps / step_size_neg)
                p.addcdiv_(m, denom)
            else:
                n = t.item()  # a CPU tensor: no device wait
                denom = (v.sqrt() / (1 - b2 ** n) ** 0.5).add_(self.eps)
                p.addcdiv_(m, denom, value=-self.lr / (1 - b1 ** n))


class UniformAdam(Optimizer):
    """Adam whose second-moment normalisation is one scalar, the max over all entries (Nicolet et al. 2021, Sec. 5):
    a step moves every entry by the same scale, which keeps the large-steps parameterisation's smoothing intact.

    per_row: one scalar per row of the first dimension instead (u (T, V, 3), one frame a row): each frame steps as
    its own large-steps fit would, so frames with strong evidence do not shrink the steps of the others."""

    def __init__(self, params, lr=0.01, betas=(0.9, 0.999), *, per_row: bool = False):
        super().__init__(params, lr)
        self.betas, self.per_row = betas, per_row

    @torch.no_grad()
    def step(self):
        b1, b2 = self.betas
        for p, st in zip(self.params, self.state):
            if p.grad is None:
                continue
            if not st:
                # the step count is a tensor, counted in place: a CUDA graph that captures this step then counts
                # on each replay (a Python number would be frozen into it); float64, so that the bias
                # corrections are those of a Python float, to the bit
                st["t"] = torch.zeros((), dtype=torch.float64, device=p.device)
                st["m"], st["v"] = torch.zeros_like(p), torch.zeros_like(p)
            st["t"].add_(1)
            st["m"].mul_(b1).add_(p.grad, alpha=1 - b1)
            st["v"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            m_hat = st["m"] / (1 - b1 ** st["t"])
            v_hat = st["v"] / (1 - b2 ** st["t"])
            scale = v_hat.sqrt().amax(dim=tuple(range(1, p.ndim)), keepdim=True) if self.per_row else \
                v_hat.sqrt().max()
            p.sub_(self.lr * m_hat / (scale + 1e-8))
