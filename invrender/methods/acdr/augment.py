"""Augmentation by rescaling and rotation about the image centre (ACDRNet, Sec. 4.1)."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def rescale_and_rotate(
    images: torch.Tensor, masks: torch.Tensor, scales: list[float], angles: list[float], generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample zoomed by a factor drawn from `scales` (> 1 enlarges the object) and rotated by an
    angle drawn from `angles` (degrees), bilinearly; what comes in from outside the image is 0.

    images (B, C, S, S), masks (B, S, S) 0/1 -> the same shapes; masks stay 0/1 (threshold 1/2).
    """
    n = len(images)
    scale = torch.tensor(scales, dtype=images.dtype)[torch.randint(len(scales), (n,), generator=generator)]
    angle = torch.tensor(angles, dtype=images.dtype)[torch.randint(len(angles), (n,), generator=generator)] * (
        math.pi / 180
    )
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # affine_grid maps output to input coordinates: the inverse of the zoom and rotation.
    theta = torch.stack(
        [torch.stack([cos, sin, torch.zeros_like(cos)], -1), torch.stack([-sin, cos, torch.zeros_like(cos)], -1)], 1
    )
    grid = F.affine_grid(theta.to(images.device), list(images.shape), align_corners=False)
    moved = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    moved_masks = F.grid_sample(masks[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]
    return moved, (moved_masks > 0.5).to(masks.dtype)
