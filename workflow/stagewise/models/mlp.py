"""`mlp`: a multilayer perceptron for tables and expression matrices, with optional one-hot covariates."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

INJECT = ("first", "all")


class MLP(nn.Module):
    """Blocks `encoder.0 ... encoder.{n-1}` (Linear, BatchNorm1d, ReLU, Dropout), then `head` (Linear).

    With `n_covariates > 0` the one-hot covariates are concatenated to the input of the first block's
    Linear (`inject_covariates: first`) or of every block's Linear (`all`, as scArches' conditional
    layers): those Linears, listed in `covariate_layers`, take them as their last `n_covariates` columns.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: list[int] = (128, 64),
        dropout: float = 0.1,
        batch_norm: bool = True,
        n_covariates: int = 0,
        inject_covariates: str = "first",
    ) -> None:
        super().__init__()
        if inject_covariates not in INJECT:
            raise ValueError(f"inject_covariates must be one of {INJECT}, not {inject_covariates!r}")
        if not hidden and n_covariates:
            raise ValueError("covariates need at least one hidden layer (hidden: [...])")
        blocks, width = [], in_features
        self.covariate_layers: list[str] = []
        for i, size in enumerate(hidden):
            takes = n_covariates > 0 and (i == 0 or inject_covariates == "all")
            layers = OrderedDict(linear=nn.Linear(width + (n_covariates if takes else 0), size))
            if batch_norm:
                layers["norm"] = nn.BatchNorm1d(size)
            layers["act"] = nn.ReLU()
            layers["dropout"] = nn.Dropout(dropout)
            blocks.append(nn.Sequential(layers))
            if takes:
                self.covariate_layers.append(f"encoder.{i}.linear")
            width = size
        self.encoder = nn.Sequential(*blocks)
        self.head = nn.Linear(width, out_features)
        self.n_covariates = n_covariates
        self.block_names = [f"encoder.{i}" for i in range(len(blocks))]
        self.head_name = "head"

    def forward(self, x: torch.Tensor, covariates: torch.Tensor | None = None) -> torch.Tensor:
        h = x.flatten(1)
        if self.n_covariates and (covariates is None or covariates.shape != (len(h), self.n_covariates)):
            got = None if covariates is None else tuple(covariates.shape)
            raise ValueError(f"this model takes one-hot covariates of shape ({len(h)}, {self.n_covariates}), got {got}")
        for name, block in zip(self.block_names, self.encoder):
            if f"{name}.linear" in self.covariate_layers:
                h = torch.cat([h, covariates.to(h.dtype)], dim=1)
            h = block(h)
        return self.head(h)
