"""`mlp`: a multilayer perceptron for tables and expression matrices."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class MLP(nn.Module):
    """Blocks `encoder.0 ... encoder.{n-1}` (Linear, BatchNorm1d, ReLU, Dropout), then `head` (Linear)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: list[int] = (128, 64),
        dropout: float = 0.1,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        blocks, width = [], in_features
        for size in hidden:
            layers = OrderedDict(linear=nn.Linear(width, size))
            if batch_norm:
                layers["norm"] = nn.BatchNorm1d(size)
            layers["act"] = nn.ReLU()
            layers["dropout"] = nn.Dropout(dropout)
            blocks.append(nn.Sequential(layers))
            width = size
        self.encoder = nn.Sequential(*blocks)
        self.head = nn.Linear(width, out_features)
        self.block_names = [f"encoder.{i}" for i in range(len(blocks))]
        self.head_name = "head"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x.flatten(1)))
