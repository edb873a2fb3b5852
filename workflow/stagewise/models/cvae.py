"""`cvae`: a conditional VAE for counts (scVI/PREFFECT family).

The encoder reads log1p(counts) and the one-hot covariates (e.g. batch) and gives the posterior
q(z | x, c) = N(z_mean, exp(z_logvar)); the decoder reads z and the covariates and gives the
expression share of every gene (softmax), scaled by the sample's observed library size (its total
count) to the negative binomial mean; `theta` is a learned per-gene inverse dispersion; with
`likelihood: zinb` a per-gene-and-sample dropout logit is added. `forward(x, covariates)` returns a
dict: `mean`, `theta`, `dropout_logits` (zinb only), `z_mean`, `z_logvar`, `z` (sampled in train
mode, `z_mean` in eval mode) -- what `stagewise.likelihoods` needs; `z_mean` is the latent space.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import StagewiseError


class Layer(nn.Module):
    """Linear (its last `n_covariates` inputs are the one-hot covariates), BatchNorm1d, ReLU, Dropout."""

    def __init__(self, width: int, size: int, n_covariates: int, dropout: float, batch_norm: bool) -> None:
        super().__init__()
        self.n_covariates = n_covariates
        self.linear = nn.Linear(width + n_covariates, size)
        self.rest = nn.Sequential(OrderedDict(
            [*([("norm", nn.BatchNorm1d(size))] if batch_norm else []), ("act", nn.ReLU()), ("dropout", nn.Dropout(dropout))]
        ))

    def forward(self, x: torch.Tensor, covariates: torch.Tensor | None) -> torch.Tensor:
        if self.n_covariates:
            x = torch.cat([x, covariates], dim=1)
        return self.rest(self.linear(x))


class Latent(nn.Module):
    """The posterior's mean and log-variance."""

    def __init__(self, width: int, n_latent: int) -> None:
        super().__init__()
        self.mean = nn.Linear(width, n_latent)
        self.logvar = nn.Linear(width, n_latent)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean(h), self.logvar(h).clamp(-15.0, 15.0)


class CountHead(nn.Module):
    """Gene expression shares, per-gene inverse dispersion, and ZINB dropout logits."""

    def __init__(self, width: int, genes: int, zero_inflated: bool) -> None:
        super().__init__()
        self.scale = nn.Linear(width, genes)
        self.log_theta = nn.Parameter(torch.zeros(genes))
        self.dropout = nn.Linear(width, genes) if zero_inflated else None

    def forward(self, h: torch.Tensor, library: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {"mean": F.softmax(self.scale(h), dim=-1) * library, "theta": self.log_theta.exp().expand(len(h), -1)}
        if self.dropout is not None:
            out["dropout_logits"] = self.dropout(h)
        return out


class CVAE(nn.Module):
    """Blocks `encoder.0` ..., `latent`, `decoder.0` ... (input to output), then `head` (CountHead).

    Covariates are injected into the first encoder and decoder layers, or into every hidden layer
    with `deeply_inject_covariates` (scVI's option); `covariate_layers` lists those Linear layers.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int | None = None,
        n_latent: int = 10,
        hidden: list[int] = (128,),
        n_covariates: int = 0,
        deeply_inject_covariates: bool = False,
        likelihood: str = "nb",
        dropout: float = 0.1,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        if out_features not in (None, in_features):
            raise StagewiseError(f"model: cvae reconstructs its {in_features} input features; out_features {out_features} must equal them")
        if likelihood not in ("nb", "zinb"):
            raise StagewiseError(f"model.params.likelihood: {likelihood!r} is not nb or zinb")
        if not hidden:
            raise StagewiseError("model.params.hidden: cvae needs at least one hidden layer")
        self.n_covariates, self.likelihood = n_covariates, likelihood

        def stack(widths: list[int]) -> nn.ModuleList:
            return nn.ModuleList(
                Layer(w, s, n_covariates if i == 0 or deeply_inject_covariates else 0, dropout, batch_norm)
                for i, (w, s) in enumerate(zip(widths, widths[1:]))
            )

        self.encoder = stack([in_features, *hidden])
        self.latent = Latent(hidden[-1], n_latent)
        self.decoder = stack([n_latent, *reversed(hidden)])
        self.head = CountHead(hidden[0], in_features, likelihood == "zinb")
        self.block_names = [*(f"encoder.{i}" for i in range(len(hidden))), "latent", *(f"decoder.{i}" for i in range(len(hidden)))]
        self.head_name = "head"
        self.covariate_layers = [f"{part}.{i}.linear" for part in ("encoder", "decoder")
                                 for i, layer in enumerate(getattr(self, part)) if layer.n_covariates]

    def _run(self, layers: nn.ModuleList, h: torch.Tensor, covariates: torch.Tensor | None) -> torch.Tensor:
        for layer in layers:
            h = layer(h, covariates)
        return h

    def encode(self, x: torch.Tensor, covariates: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance of the latent code."""
        return self.latent(self._run(self.encoder, torch.log1p(x), self._covariates(x, covariates)))

    def _covariates(self, x: torch.Tensor, covariates: torch.Tensor | None) -> torch.Tensor | None:
        if not self.n_covariates:
            return None
        if covariates is None or covariates.shape != (len(x), self.n_covariates):
            got = None if covariates is None else tuple(covariates.shape)
            raise StagewiseError(f"cvae: expects one-hot covariates of shape ({len(x)}, {self.n_covariates}), got {got}")
        return covariates.to(x.dtype)

    def forward(self, x: torch.Tensor, covariates: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        x = x.float()
        z_mean, z_logvar = self.encode(x, covariates)
        z = z_mean + torch.randn_like(z_mean) * torch.exp(0.5 * z_logvar) if self.training else z_mean
        h = self._run(self.decoder, z, self._covariates(x, covariates))
        library = x.sum(dim=1, keepdim=True)
        return self.head(h, library) | {"z_mean": z_mean, "z_logvar": z_logvar, "z": z}
