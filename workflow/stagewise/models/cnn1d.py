"""`cnn1d`: a SpliceAI-style residual dilated 1-D CNN over one-hot sequences (N, L, 4).

As in SpliceAI/OpenSpliceAI, each residual unit is BN-ReLU-Conv-BN-ReLU-Conv plus its input, with
a kernel size and dilation per unit (SpliceAI's W and AR: the 80-nt model is 4 units of W=11,
AR=1); every `skip_every`-th unit (and the last) adds a 1x1 convolution of its output to a running
skip sum. The flanking context (`flank` positions each side, the receptive field of the stack) is
cropped from the skip sum, so an input of length L gives L - 2 * flank positions.
`output: per_position` returns logits (N, L - 2 * flank, out_features) for `sequence_labeling`;
`per_sequence` averages the positions and returns (N, out_features).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import StagewiseError


class ResidualUnit(nn.Module):
    """BN-ReLU-Conv twice plus the input; with `skip`, also adds a 1x1 conv of its output to the skip sum."""

    def __init__(self, channels: int, kernel: int, dilation: int, skip: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm1d(channels),
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel, dilation=dilation, padding="same"),
            nn.BatchNorm1d(channels),
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel, dilation=dilation, padding="same"),
        )
        self.skip = nn.Conv1d(channels, channels, 1) if skip else None

    def forward(self, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x, skip = state
        x = x + self.body(x)
        return x, skip + self.skip(x) if self.skip is not None else skip


class Stem(nn.Module):
    """1x1 conv from the one-hot channels to `channels`, and the first term of the skip sum."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, channels, 1)
        self.skip = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv(x)
        return x, self.skip(x)


class CNN1d(nn.Module):
    """Blocks `stem`, `units.0` ... `units.{n-1}` (one per residual unit), then `head`.

    `in_features` is the number of feature names of the data: the channels (e.g. A, C, G, T) or
    length x channels of a flattened sequence; the model reads (N, L, in_channels) either way.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        in_channels: int = 4,
        channels: int = 32,
        kernels: list[int] = (11, 11, 11, 11),
        dilations: list[int] = (1, 1, 1, 1),
        skip_every: int = 4,
        output: str = "per_position",
    ) -> None:
        super().__init__()
        if len(kernels) != len(dilations) or not kernels:
            raise StagewiseError(
                f"model.params: kernels {list(kernels)} and dilations {list(dilations)} need one entry per "
                f"residual unit each"
            )
        if any(k % 2 == 0 for k in kernels):
            raise StagewiseError(f"model.params.kernels: {list(kernels)} must be odd, so the context is symmetric")
        if output not in ("per_position", "per_sequence"):
            raise StagewiseError(f"model.params.output: {output!r} is not per_position or per_sequence")
        if in_features % in_channels:
            raise StagewiseError(f"model: {in_features} features are not a multiple of in_channels {in_channels}")
        self.in_channels, self.output = in_channels, output
        self.flank = sum((k - 1) * d for k, d in zip(kernels, dilations))
        self.stem = Stem(in_channels, channels)
        n = len(kernels)
        self.units = nn.Sequential(
            *(
                ResidualUnit(channels, k, d, skip=(i + 1) % skip_every == 0 or i + 1 == n)
                for i, (k, d) in enumerate(zip(kernels, dilations))
            )
        )
        self.head = (
            nn.Conv1d(channels, out_features, 1) if output == "per_position" else nn.Linear(channels, out_features)
        )
        self.block_names = ["stem", *(f"units.{i}" for i in range(n))]
        self.head_name = "head"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(len(x), -1, self.in_channels).transpose(1, 2).to(self.stem.conv.weight.dtype)
        length = x.shape[-1]
        if length <= 2 * self.flank:
            raise StagewiseError(
                f"cnn1d: sequences of length {length} are not longer than the model's context 2 x {self.flank}"
            )
        _, skip = self.units(self.stem(x))
        skip = skip[..., self.flank : length - self.flank]
        if self.output == "per_sequence":
            return self.head(skip.mean(-1))
        return self.head(skip).transpose(1, 2)
