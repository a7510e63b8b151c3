"""Small image filters used around renderers: Gaussian blur and a learned 3x3 convolution."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_blur(images: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of images (..., H, W) with standard deviation `sigma` pixels.

    Borders are replicated so that a blurred constant stays constant. sigma <= 0 returns the input.
    A tensor `sigma` (a learned PSF) gets its gradient through the kernel's values; the kernel's
    support (3 sigma) follows its current value.
    """
    value = float(sigma.detach()) if isinstance(sigma, torch.Tensor) else float(sigma)
    if value <= 0:
        return images
    radius = max(1, math.ceil(3.0 * value))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    shape = images.shape
    flat = images.reshape(-1, 1, *shape[-2:])
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), kernel.reshape(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"), kernel.reshape(1, 1, -1, 1))
    return flat.reshape(shape)


def convolve3x3(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Convolve each image (B, H, W) with its own 3x3 kernel (B, 3, 3), replicated borders."""
    B, H, W = images.shape
    padded = F.pad(images.unsqueeze(0), (1, 1, 1, 1), mode="replicate")  # (1, B, H+2, W+2)
    return F.conv2d(padded, kernels.unsqueeze(1), groups=B).squeeze(0)
