"""Segmentation networks over the U-Net: ACDRNet's evolving polygon, and the plain pixel classifier.

Both take images `(B, C, S, S)` and give, through `predict`, masks `(B, S, S)` in [0, 1]; `loss`
returns the batch's training loss from the loss registry's terms and their weights.

ContourNet (Gur, Shaharabany, Wolf): the U-Net predicts a displacement field J = max_shift * S *
tanh(U(I)) `(B, 2, S, S)` once per image. A polygon of K vertices starts as a circle in the middle
of the image and moves T times by p <- p + J(p) (J sampled bilinearly at the vertices), clamped to
the image; every step is rendered to a soft mask by the polygon renderer, and the loss is summed over
the steps. The curvature term is computed in units of half the image size (the image spans 2), the
units of the paper's weights.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn import functional as F

from invrender.core.geometry.polygons import circle
from invrender.core.learn.unet import UNet
from invrender.core.losses import weighted_losses
from invrender.core.render.registry import PolygonRenderer
from invrender.methods.acdr.dihedral import dihedral_mean

#: What each model's loss gives the loss registry (config `loss` for contour, `pixel_loss` for pixel).
CONTOUR_QUANTITIES = frozenset({"render", "target", "polygon"})
PIXEL_QUANTITIES = frozenset({"logits", "target"})


class ContourNet(nn.Module):
    kind = "contour"

    def __init__(
        self,
        channels_in: int,
        widths: list[int],
        convs: int = 3,
        dropout: float = 0.2,
        relu_each: bool = False,
        vertices: int = 32,
        iterations: int = 3,
        init_diameter: float = 0.25,
        max_shift: float = 0.5,
    ):
        super().__init__()
        self.unet = UNet(channels_in, 2, widths, convs, dropout, relu_each)
        # J = 0 at the start: the polygon begins as the circle rather than jumping at random, and
        # the network learns to move it (faster to train; the paper does not say how it initialises).
        nn.init.zeros_(self.unet.head.weight)
        nn.init.zeros_(self.unet.head.bias)
        self.vertices, self.iterations = vertices, iterations
        self.init_diameter, self.max_shift = init_diameter, max_shift
        self.dihedral_average = False  # set by the caller (acdr-eval / acdr-predict --tta)
        self.render: PolygonRenderer | None = None  # set by the caller: a renderer is not a parameter

    def displacement(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> J (B, 2, S, S) in pixels."""
        return torch.tanh(self.unet(images)) * (self.max_shift * images.shape[-1])

    def initial_polygon(self, images: torch.Tensor) -> torch.Tensor:
        """The circle in the middle of each image: (B, K, 2) pixels."""
        height, width = images.shape[-2:]
        centre = images.new_tensor([(width - 1) / 2, (height - 1) / 2]).expand(len(images), 2)
        return circle(centre, self.init_diameter * min(height, width) / 2, self.vertices)

    def evolve(self, images: torch.Tensor, field: torch.Tensor) -> list[torch.Tensor]:
        """The polygons P_0 .. P_T, each (B, K, 2) in pixels, moved by the field (B, 2, S, S)."""
        height, width = images.shape[-2:]
        scale = images.new_tensor([2 / max(width - 1, 1), 2 / max(height - 1, 1)])
        low = images.new_tensor([-0.5, -0.5])
        high = images.new_tensor([width - 0.5, height - 0.5])
        polygons = [self.initial_polygon(images)]
        for _ in range(self.iterations):
            p = polygons[-1]
            grid = (p * scale - 1)[:, None]  # (B, 1, K, 2): pixel centres 0 .. S-1 -> -1 .. 1
            shift = F.grid_sample(field, grid, mode="bilinear", padding_mode="border", align_corners=True)[:, :, 0]
            polygons.append(torch.maximum(torch.minimum(p + shift.transpose(1, 2), high), low))
        return polygons

    def forward(self, images: torch.Tensor, field: torch.Tensor | None = None) -> dict[str, list[torch.Tensor]]:
        """The polygons and their rendered masks; `field` replaces the network's displacement."""
        if self.render is None:
            raise RuntimeError("ContourNet.render is not set")
        height, width = images.shape[-2:]
        polygons = self.evolve(images, self.displacement(images) if field is None else field)
        return {"polygons": polygons, "masks": [self.render(p, height, width) for p in polygons[1:]]}

    def loss(
        self, images: torch.Tensor, masks: torch.Tensor, weights: Mapping[str, float]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss summed over the steps, mean over the batch; and each unweighted term's sum."""
        out = self(images)
        half = images.shape[-1] / 2
        total, terms = 0.0, {}
        for polygon, rendered in zip(out["polygons"][1:], out["masks"]):
            step_total, step_terms = weighted_losses(
                {"render": rendered, "target": masks, "polygon": polygon / half}, weights
            )
            total = total + step_total.mean()
            for name, value in step_terms.items():
                terms[name] = terms.get(name, 0.0) + float(value.detach().mean())
        return total, terms

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """masks (B, S, S) of the final polygon, and the polygons (T+1, B, K, 2) in pixels."""
        out = self(
            images, dihedral_mean(self.displacement, images, displacement=True) if self.dihedral_average else None
        )
        return {"masks": out["masks"][-1], "polygons": torch.stack(out["polygons"])}


class PixelNet(nn.Module):
    """The same U-Net as a plain pixel classifier (one channel, sigmoid), ACDRNet's baseline."""

    kind = "pixel"

    def __init__(
        self, channels_in: int, widths: list[int], convs: int = 3, dropout: float = 0.2, relu_each: bool = False
    ):
        super().__init__()
        self.unet = UNet(channels_in, 1, widths, convs, dropout, relu_each)
        self.dihedral_average = False  # set by the caller (acdr-eval / acdr-predict --tta)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.unet(images)[:, 0]

    def loss(
        self, images: torch.Tensor, masks: torch.Tensor, weights: Mapping[str, float]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        total, terms = weighted_losses({"logits": self(images), "target": masks}, weights)
        return total.mean(), {name: float(value.detach().mean()) for name, value in terms.items()}

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        def probability(x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self(x))[:, None]

        return {"masks": (dihedral_mean(probability, images) if self.dihedral_average else probability(images))[:, 0]}


def build_model(kind: str, channels_in: int, model_cfg: Mapping) -> nn.Module:
    """A ContourNet (`contour`) or PixelNet (`pixel`) from the `model` section of a config."""
    common = {
        "channels_in": channels_in,
        "widths": list(model_cfg["widths"]),
        "convs": int(model_cfg["convs"]),
        "dropout": float(model_cfg["dropout"]),
        "relu_each": bool(model_cfg.get("relu_each", False)),
    }
    if kind == "contour":
        return ContourNet(
            **common,
            vertices=int(model_cfg["vertices"]),
            iterations=int(model_cfg["iterations"]),
            init_diameter=float(model_cfg["init_diameter"]),
            max_shift=float(model_cfg["max_shift"]),
        )
    if kind == "pixel":
        return PixelNet(**common)
    raise ValueError(f"unknown model {kind!r}; expected contour or pixel")


MODEL_KINDS = ("contour", "pixel")
