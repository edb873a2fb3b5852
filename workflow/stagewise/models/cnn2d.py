"""`cnn2d`: a small image CNN (DNNBrain's scenario: a pretrained convnet, a new head)."""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from ..errors import StagewiseError


def _square_shape(in_features: int) -> list[int]:
    side = math.isqrt(in_features)
    if side * side != in_features:
        raise StagewiseError(
            f"model.params.image_shape: {in_features} features are not a square image; give image_shape: [C, H, W]"
        )
    return [1, side, side]


class CNN2d(nn.Module):
    """Blocks `features.0` ... `features.{n-1}` (Conv3x3, BatchNorm2d, ReLU, MaxPool2d), `fc`, then `head` (Linear).

    Images arrive as (N, C, H, W) or flattened (N, C*H*W) (e.g. scikit-learn's 8x8 digits);
    `image_shape` defaults to one channel, square.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        image_shape: list[int] | None = None,
        channels: list[int] = (16, 32),
        pool_size: int = 2,
        hidden: int = 64,
        dropout: float = 0.2,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        self.image_shape = list(image_shape) if image_shape else _square_shape(in_features)
        if math.prod(self.image_shape) != in_features:
            raise StagewiseError(
                f"model.params.image_shape: {self.image_shape} holds {math.prod(self.image_shape)} values, the "
                f"data has {in_features} features"
            )
        blocks, width = [], self.image_shape[0]
        for size in channels:
            layers = OrderedDict(conv=nn.Conv2d(width, size, 3, padding=1))
            if batch_norm:
                layers["norm"] = nn.BatchNorm2d(size)
            layers["act"] = nn.ReLU()
            layers["pool"] = nn.MaxPool2d(2, ceil_mode=True)
            blocks.append(nn.Sequential(layers))
            width = size
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(width * pool_size**2, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.head = nn.Linear(hidden, out_features)
        self.block_names = [*(f"features.{i}" for i in range(len(blocks))), "fc"]
        self.head_name = "head"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(len(x), *self.image_shape)
        return self.head(self.fc(self.pool(self.features(x))))
