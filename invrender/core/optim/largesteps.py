"""Large steps in inverse rendering of geometry (Nicolet, Jacobson, Jakob 2021), on the CPU.

Vertices v are optimised through u = (I + lambda L) v, L the mesh's uniform (combinatorial)
Laplacian: the gradient with respect to u is (I + lambda L)^-1 dLoss/dv, and a step on u moves v
by (I + lambda L)^-1 of it, so plain gradient descent on u is descent on v preconditioned by
(I + lambda L)^-2, which smooths the update without a smoothness term in the loss. The system is
factored once per mesh connectivity with a sparse Cholesky factorisation (cholespy); the
`largesteps` package builds its Laplacian on CUDA only, so it is built here with scipy.

Optimise u with `AdamUniform` (`adam_variants.py`): one second-moment scale for the whole tensor,
so that the step keeps the preconditioned direction.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


def uniform_laplacian(n_vertices: int, faces: np.ndarray) -> sp.csr_matrix:
    """(V, V) L = D - A of the mesh's edge graph (each edge counted once)."""
    edges = np.sort(np.asarray(faces)[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    edges = np.unique(edges, axis=0)
    rows, cols = np.concatenate([edges[:, 0], edges[:, 1]]), np.concatenate([edges[:, 1], edges[:, 0]])
    adjacency = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_vertices, n_vertices))
    return sp.diags(np.asarray(adjacency.sum(axis=1)).ravel()) - adjacency


class LaplacianParametrisation:
    """u = (I + lambda L) v and back, with the solve as an autograd function."""

    def __init__(self, n_vertices: int, faces: np.ndarray, lam: float):
        from cholespy import CholeskySolverD, MatrixType

        system = (sp.identity(n_vertices) + lam * uniform_laplacian(n_vertices, faces)).tocoo()
        self.matrix = torch.sparse_coo_tensor(
            np.vstack([system.row, system.col]), system.data, system.shape, check_invariants=True
        ).coalesce()
        self.solver = CholeskySolverD(
            n_vertices,
            torch.from_numpy(system.row.astype(np.int32)),
            torch.from_numpy(system.col.astype(np.int32)),
            torch.from_numpy(system.data),
            MatrixType.COO,
        )

    def to_differential(self, vertices: torch.Tensor) -> torch.Tensor:
        """u = (I + lambda L) v, (V, 3)."""
        return torch.sparse.mm(self.matrix, vertices.detach().double())

    def to_vertices(self, u: torch.Tensor) -> torch.Tensor:
        """v = (I + lambda L)^-1 u, differentiable in u (the system is symmetric: the backward is the same solve)."""
        return _Solve.apply(u, self.solver)


class _Solve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rhs, solver):
        ctx.solver = solver
        out = torch.empty_like(rhs, dtype=torch.float64).contiguous()
        solver.solve(rhs.detach().double().contiguous(), out)
        return out

    @staticmethod
    def backward(ctx, grad):
        out = torch.empty_like(grad, dtype=torch.float64).contiguous()
        ctx.solver.solve(grad.double().contiguous(), out)
        return out, None
