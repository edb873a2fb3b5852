"""A plug-in model for stagewise: any torch.nn.Module subclass, named in the config as
`model.architecture: "my_models:SmallConvNet"` (this file next to the config, or an installed module).

The interface a class must meet:
- `__init__(self, in_features, out_features, **params)`: stagewise passes the number of input
  features and of outputs (classes, targets; genes for counts) it reads from the data, plus
  `model.params`; with covariates in the data also `n_covariates` (the one-hot width).
- `forward(self, x)` -> outputs as `model.task` expects (classification: logits (N, classes));
  with covariates `forward(self, x, covariates)`, covariates = the one-hot concatenation of every
  categorical covariate, in the order of the checkpoint's categories.
- optional `block_names`: submodule names, input to output (what `unfreeze_last: N` counts);
  `head_name`: the final layer (what `pretrained.head` replaces and `train: [head]` means);
  `covariate_layers`: the nn.Linear layers whose last `n_covariates` input columns are the
  covariates (what surgery widens for new categories). Without `block_names`/`head_name`,
  stagewise takes the top-level child modules that hold parameters: the last is the head.
"""

from __future__ import annotations

import torch
from torch import nn


class SmallConvNet(nn.Module):
    """Two convolution blocks over 8x8 images and a linear head."""

    def __init__(self, in_features: int, out_features: int, width: int = 16) -> None:
        super().__init__()
        self.side = int(round(in_features ** 0.5))
        self.conv1 = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.classifier = nn.Linear(4 * width, out_features)
        self.block_names = ["conv1", "conv2"]
        self.head_name = "classifier"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.conv2(self.conv1(x.reshape(len(x), 1, self.side, self.side))))
