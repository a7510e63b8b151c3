"""The encoder-decoder with U-Net skips of ACDRNet (Gur, Shaharabany, Wolf, Sec. 3.1).

Encoder block: three sub-blocks of a 3x3 convolution followed by dropout, then ReLU, batch
normalisation and 2x2 max-pooling; the tensor before the pooling is the block's skip. Decoder
block, its mirror: batch normalisation, ReLU, bilinear up-sampling to the skip's size,
concatenation with the skip, three sub-blocks of convolution and dropout (no dropout in the last
block). A 1x1 convolution maps the last block's features to the output channels.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _convolutions(channels_in: int, channels_out: int, count: int, dropout: float, relu_each: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(count):
        layers.append(nn.Conv2d(channels_in if i == 0 else channels_out, channels_out, 3, padding=1))
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        if relu_each:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class EncoderBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, convs: int, dropout: float, relu_each: bool):
        super().__init__()
        self.convs = _convolutions(channels_in, channels_out, convs, dropout, relu_each)
        self.norm = nn.BatchNorm2d(channels_out)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.norm(F.relu(self.convs(x)))
        return skip, F.max_pool2d(skip, 2)


class DecoderBlock(nn.Module):
    def __init__(
        self, channels_in: int, channels_skip: int, channels_out: int, convs: int, dropout: float, relu_each: bool
    ):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels_in)
        self.convs = _convolutions(channels_in + channels_skip, channels_out, convs, dropout, relu_each)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(F.relu(self.norm(x)), size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.convs(torch.cat([x, skip], dim=1))


class UNet(nn.Module):
    """(B, channels_in, H, W) -> (B, channels_out, H, W); H and W need not be powers of two.

    widths: the channels of the encoder blocks, from the finest level down (their count is the depth).
    relu_each: a ReLU after every convolution, not only once per block (the paper's blocks stack
    their three convolutions without one in between).
    """

    def __init__(
        self,
        channels_in: int,
        channels_out: int,
        widths: list[int],
        convs: int = 3,
        dropout: float = 0.2,
        relu_each: bool = False,
    ):
        super().__init__()
        self.encoder = nn.ModuleList(
            EncoderBlock(c_in, c_out, convs, dropout, relu_each)
            for c_in, c_out in zip([channels_in, *widths[:-1]], widths)
        )
        self.decoder = nn.ModuleList(
            DecoderBlock(
                widths[i + 1] if i + 1 < len(widths) else widths[-1],
                widths[i],
                widths[i],
                convs,
                dropout if i > 0 else 0.0,
                relu_each,
            )
            for i in reversed(range(len(widths)))
        )
        self.head = nn.Conv2d(widths[0], channels_out, 1)
        self.convs = convs

    @property
    def field_of_view(self) -> int:
        """An upper bound, in px, on how far from an output pixel the input pixels lie that it
        depends on: at level l (pixels of 2**l px) each 3x3 convolution and each 2x2 pooling reach
        2**l px further, and each bilinear up-sampling from level l+1 reaches 2**(l+1) px; over the
        encoder and decoder of depth d that sums to (2 convs + 3) (2**d - 1)."""
        return (2 * self.convs + 3) * (2 ** len(self.encoder) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.encoder:
            skip, x = block(x)
            skips.append(skip)
        for block, skip in zip(self.decoder, reversed(skips)):
            x = block(x, skip)
        return self.head(x)
