"""The spectral basis of a triangle mesh: the lowest eigenvectors of its Laplace-Beltrami operator.

With the cotangent Laplacian `L` (positive semi-definite here) and the lumped (Voronoi) mass matrix
`M`, the basis solves `L phi = lambda M phi`, sorted by frequency `lambda` (0 first: the constant),
and is `M`-orthonormal: `Phi^T M Phi = I`. A shape `X` (V, 3) then has coefficients
`U = Phi^T M X` (k, 3), and `X = Phi U` exactly when all V modes are kept. Low modes are smooth,
coarse deformations; high modes, fine detail.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import eigsh


def cotangent_laplacian(vertices: np.ndarray, faces: np.ndarray) -> tuple[sp.csc_matrix, sp.csc_matrix]:
    """The positive semi-definite cotangent Laplacian L (V, V) and the Voronoi mass matrix M (V, V)."""
    import igl

    vertices = np.ascontiguousarray(vertices, dtype=np.float64)
    faces = np.ascontiguousarray(faces, dtype=np.int64)
    stiffness = -igl.cotmatrix(vertices, faces)  # libigl's is negative semi-definite
    mass = igl.massmatrix(vertices, faces, igl.MASSMATRIX_TYPE_VORONOI)
    return sp.csc_matrix(stiffness), sp.csc_matrix(mass)


def laplacian_eigenbasis(vertices: np.ndarray, faces: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The k lowest modes: eigenvalues (k,) ascending, eigenvectors (V, k) M-orthonormal, and the
    lumped vertex masses (V,) (the diagonal of M, for projecting shapes onto the basis)."""
    stiffness, mass = cotangent_laplacian(vertices, faces)
    n = stiffness.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k = {k} modes asked for a mesh of {n} vertices")
    if k >= n - 1:  # eigsh needs k < n: solve the small dense problem instead
        from scipy.linalg import eigh

        values, vectors = eigh(stiffness.toarray(), mass.toarray())
        values, vectors = values[:k], vectors[:, :k]
    else:
        # Shift-invert just below 0 finds the smallest eigenvalues quickly and stays non-singular.
        values, vectors = eigsh(stiffness, k=k, M=mass, sigma=-1e-8, which="LM")
        order = np.argsort(values)
        values, vectors = values[order], vectors[:, order]
    masses = np.asarray(mass.diagonal())
    # eigsh normalises in M already; renormalise so both paths give Phi^T M Phi = I to round-off.
    vectors = vectors / np.sqrt(np.einsum("vk,v,vk->k", vectors, masses, vectors))
    return np.maximum(values, 0.0), vectors, masses


def spectral_coefficients(shape: np.ndarray, vectors: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """(V, 3) shape -> (k, 3) coefficients `Phi^T M X` (the M-orthogonal projection)."""
    return vectors.T @ (masses[:, None] * shape)
