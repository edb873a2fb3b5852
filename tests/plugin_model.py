"""A user's own model class, outside the stagewise package, used through `model.architecture: "plugin_model:..."`."""

from __future__ import annotations

import torch
from torch import nn


class TwoLayerNet(nn.Module):
    """Declares nothing: stagewise takes the top-level children as blocks, the last one as the head."""

    def __init__(self, in_features: int, out_features: int, width: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_features, width), nn.ReLU())
        self.middle = nn.Sequential(nn.Linear(width, width), nn.ReLU())
        self.out = nn.Linear(width, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.middle(self.body(x.flatten(1))))


class BatchAware(nn.Module):
    """Declares its blocks, head and covariate layer, and takes one-hot covariates."""

    def __init__(self, in_features: int, out_features: int, n_covariates: int = 0) -> None:
        super().__init__()
        self.trunk = nn.Linear(in_features + n_covariates, 8)
        self.classifier = nn.Linear(8, out_features)
        self.block_names, self.head_name = ["trunk"], "classifier"
        self.covariate_layers = ["trunk"] if n_covariates else []

    def forward(self, x: torch.Tensor, covariates: torch.Tensor | None = None) -> torch.Tensor:
        if covariates is not None:
            x = torch.cat([x, covariates], dim=1)
        return self.classifier(torch.relu(self.trunk(x)))


class BadBlocks(TwoLayerNet):
    """Names a block it does not have."""

    block_names = ["body", "missing"]  # noqa: RUF012 (written as a user would)
    head_name = "out"


NotAModule = object
