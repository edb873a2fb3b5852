"""A model of your own for stagewise, written as you would write it anyway: `plugin.yaml` names it as
`model.architecture: "my_models:SmallConvNet"` (this file next to the config, or an installed module).

Nothing here is stagewise's: the constructor takes its own argument names, and the config says how to
call it and how to see it (config/README.md, "Your own model"):
- `model.params` reach the constructor verbatim (`width`); the sizes read from the data reach it under
  its own names through `model.from_data: {n_pixels: n_features, n_classes: n_labels}`.
- `forward(x)` gets the features (N, 64 pixels here; sequences (N, L, C), images (N, C, H, W)) and
  returns what `model.task` needs (classification: logits (N, classes)). A dict, a tuple or an object
  with attributes is read through `model.output`; channels-first sequences through
  `model.channels_first`; softmax outputs through `model.returns: probabilities`. With covariates in
  the data, `forward(x, covariates)` gets their one-hot concatenation too.
- `model.blocks` (what `unfreeze_last: N` counts) and `model.head` (what `train: [head]` means and what
  `pretrained.head` replaces) name its modules; without them stagewise takes the top-level children
  that hold parameters, the last one as the head.
- With `pretrained.head`, the model is built as the checkpoint was (10 digit classes) and then the
  head's output layer (`classifier`) is replaced by a new Linear with one output per target label:
  the constructor never sees the new count.
"""

from __future__ import annotations

import torch
from torch import nn


class SmallConvNet(nn.Module):
    """Two convolution blocks over square images given as flat pixels, and a linear classifier."""

    def __init__(self, n_pixels: int, n_classes: int, width: int = 16) -> None:
        super().__init__()
        self.side = int(round(n_pixels ** 0.5))
        self.conv1 = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.classifier = nn.Linear(4 * width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.conv2(self.conv1(x.reshape(len(x), 1, self.side, self.side))))
