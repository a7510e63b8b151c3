"""The scene's PSF, a sharp Gaussian plus a wide halo, applied to a frame in one FFT.

    blurred = (1 - w) G_sigma * image + w G_halo * image

is the same as two calls of core's `gaussian_blur` (each Gaussian sampled at integer offsets up to
its radius ceil(3 sigma), normalised to sum 1; borders replicated), but costs one forward and one
inverse real FFT of the frame instead of two separable convolutions per Gaussian: torch's direct
convolution of one large single-channel image with a long (49-tap for the halo) kernel unfolds the
image once per tap, and was two thirds of the time of a fitting step (forward and backward).

Why it is exact: blurring the rows with replicated borders, then the columns with replicated
borders, equals blurring both ways the frame whose borders are replicated in 2D (a replicated row
of the row-blurred frame is the row-blur of the replicated row). The 2D kernel of the mixture,
(1 - w) g_s g_s^T + w g_h g_h^T, then acts on the frame padded by the larger radius R; a circular
convolution of any length >= H + 2R reads no wrapped-around pixel for the H x W outputs kept. The
kernel's transform is real (the kernel is even) and separable per Gaussian: sum_k g_k cos(2 pi f k / L).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from scipy import fft as scipy_fft


def gaussian_taps(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """(radius + 1,) the normalised Gaussian of standard deviation `sigma` px, sampled at offsets
    0..radius, cut at its own radius max(1, ceil(3 sigma)) (zeros beyond); differentiable in sigma."""
    own = max(1, math.ceil(3.0 * float(sigma.detach())))
    offsets = torch.arange(radius + 1, dtype=sigma.dtype, device=sigma.device)
    taps = torch.exp(-0.5 * (offsets / sigma) ** 2) * (offsets <= own)
    return taps / (2 * taps.sum() - taps[0])  # the kernel is taps[k] at -k and +k


def even_kernel_transform(taps: torch.Tensor, length: int, real_half: bool) -> torch.Tensor:
    """The DFT of length `length` of the even kernel with `taps` (r + 1,) at offsets 0..r (and -k = k),
    centred at index 0: (length,) or, with `real_half`, the (length // 2 + 1,) bins of an rfft."""
    bins = length // 2 + 1 if real_half else length
    frequency = torch.arange(bins, dtype=taps.dtype, device=taps.device)
    offsets = torch.arange(len(taps), dtype=taps.dtype, device=taps.device)
    weights = torch.where(offsets > 0, 2.0, 1.0) * taps
    return torch.cos((2 * math.pi / length) * frequency[:, None] * offsets) @ weights


def two_gaussian_blur(
    image: torch.Tensor, sigma: torch.Tensor, halo_sigma: torch.Tensor, halo_weight: torch.Tensor
) -> torch.Tensor:
    """(1 - halo_weight) G_sigma * image + halo_weight G_halo_sigma * image, of an image (H, W);
    sigmas in px (0-dim tensors), borders replicated (see the module's docstring)."""
    height, width = image.shape
    radius = max(1, math.ceil(3.0 * max(float(sigma.detach()), float(halo_sigma.detach()))))
    rows, cols = scipy_fft.next_fast_len(height + 2 * radius), scipy_fft.next_fast_len(width + 2 * radius, real=True)
    padded = F.pad(image[None, None], (radius, radius, radius, radius), mode="replicate")[0, 0]
    transfer = 0
    for weight, s in ((1 - halo_weight, sigma), (halo_weight, halo_sigma)):
        taps = gaussian_taps(s, radius)
        transfer = transfer + weight * (
            even_kernel_transform(taps, rows, False)[:, None] * even_kernel_transform(taps, cols, True)
        )
    blurred = _EvenFilter.apply(padded, transfer, rows, cols)
    return blurred[radius : radius + height, radius : radius + width]


class _EvenFilter(torch.autograd.Function):
    """irfft2(rfft2(image, s) * transfer, s), s = (rows, cols): the circular convolution of the image
    (h, w), zero-padded to s, with an even kernel of real transfer function `transfer` (rows,
    cols // 2 + 1). Written out because its backward pass is two real FFTs where autograd's takes a
    complex one and more: an even kernel is its own adjoint, so the image's gradient is the same
    filter applied to the output's gradient G; and with X, G the spectra of image and gradient,
    dL/dtransfer = Re(X conj(G)) / (rows cols), twice that in the columns of the half spectrum that
    also stand for their mirror images (all but the first and, for even cols, the last)."""

    @staticmethod
    def forward(ctx, image, transfer, rows: int, cols: int):
        spectrum = torch.fft.rfft2(image, s=(rows, cols))
        ctx.save_for_backward(spectrum, transfer)
        ctx.size = image.shape
        return torch.fft.irfft2(spectrum * transfer, s=(rows, cols))

    @staticmethod
    def backward(ctx, grad):
        spectrum, transfer = ctx.saved_tensors
        rows, cols = grad.shape
        grad_spectrum = torch.fft.rfft2(grad)
        grad_image = torch.fft.irfft2(grad_spectrum * transfer, s=(rows, cols))[: ctx.size[0], : ctx.size[1]]
        mirrored = torch.full((cols // 2 + 1,), 2.0 / (rows * cols), dtype=transfer.dtype, device=transfer.device)
        mirrored[0] /= 2
        if cols % 2 == 0:
            mirrored[-1] /= 2
        grad_transfer = (spectrum * grad_spectrum.conj()).real * mirrored
        return grad_image, grad_transfer, None, None
