"""Trilinear sampling of a volume at points in world millimetres.

The volume is `(C, I, J, K)` in its file's voxel order with the affine that maps voxel index to
world mm (see `core/volumes.py`); points outside the volume take the value of the nearest border
voxel. Differentiable in the volume's values and in the points (grid_sample's gradient).
"""

from __future__ import annotations

import numpy as np
import torch


class VolumeSampler:
    """`sampler(points (N, 3) world mm) -> (N, C)` values, trilinear between voxel centres."""

    def __init__(self, volume: torch.Tensor, affine: np.ndarray):
        if volume.ndim == 3:
            volume = volume[None]
        self.volume = volume[None]  # (1, C, I, J, K): grid_sample's (N, C, D, H, W)
        inverse = torch.as_tensor(np.linalg.inv(affine), dtype=volume.dtype, device=volume.device)
        # world -> index -> grid_sample's [-1, 1] per axis (align_corners: -1 and 1 are the end voxels' centres)
        sizes = torch.tensor(volume.shape[1:], dtype=volume.dtype, device=volume.device)
        self.linear = inverse[:3, :3] * (2.0 / (sizes - 1))[:, None]
        self.offset = inverse[:3, 3] * (2.0 / (sizes - 1)) - 1.0

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        grid = self.normalised(points).flip(-1)[None, None, None]  # grid_sample wants (x, y, z) = (K, J, I) order
        values = torch.nn.functional.grid_sample(
            self.volume, grid, mode="bilinear", padding_mode="border", align_corners=True
        )
        return values[0, :, 0, 0].T  # (N, C)

    def inside(self, points: torch.Tensor) -> torch.Tensor:
        """(N,) bool: the points within the volume (between its end voxels' centres)."""
        return (self.normalised(points).abs() <= 1.0).all(-1)

    def normalised(self, points: torch.Tensor) -> torch.Tensor:
        """(N, 3) grid_sample's coordinates (-1 and 1 at the end voxels' centres) in i, j, k order."""
        return points.to(self.volume.dtype) @ self.linear.T + self.offset
