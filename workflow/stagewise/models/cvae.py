"""`cvae`: a conditional VAE for counts (scVI/PREFFECT family).

The encoder reads log1p(counts) and the one-hot covariates (e.g. batch; without them when
`encode_covariates` is false) and gives the posterior q(z | x, c) = N(z_mean, exp(z_logvar)); the
decoder reads z and the covariates and gives the expression share of every gene (softmax), scaled
by the sample's observed library size (its total count) to the negative binomial mean; `theta` is
the inverse dispersion: per gene (`dispersion: gene`), per gene and covariate category
(`gene-batch`, a bias-free Linear on the one-hot covariates, so surgery widens it too) or per gene
and cell (`gene-cell`, read from the decoder's last hidden layer); with `likelihood: zinb` a
per-gene-and-sample dropout logit is added. Hidden layers are Linear, BatchNorm1d (where
`use_batch_norm` says: `both`, `encoder`, `decoder` or `none`), LayerNorm without affine parameters
(where `use_layer_norm` says, as scvi-tools; scArches recommends `use_layer_norm: both`,
`use_batch_norm: none`, `encode_covariates: true` for reference mapping), ReLU, Dropout. `forward(x, covariates)`
returns a
dict: `mean`, `theta`, `dropout_logits` (zinb only), `z_mean`, `z_logvar`, `z` (sampled in train
mode, `z_mean` in eval mode) -- what `stagewise.likelihoods` needs; `z_mean` is the latent space.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import StagewiseError

NORM_PARTS = {"both": ("encoder", "decoder"), "encoder": ("encoder",), "decoder": ("decoder",), "none": ()}
DISPERSIONS = ("gene", "gene-batch", "gene-cell")


class Layer(nn.Module):
    """Linear (its last `n_covariates` inputs are the one-hot covariates), BatchNorm1d, LayerNorm, ReLU, Dropout."""

    def __init__(
        self, width: int, size: int, n_covariates: int, dropout: float, batch_norm: bool, layer_norm: bool = False
    ) -> None:
        super().__init__()
        self.n_covariates = n_covariates
        self.linear = nn.Linear(width + n_covariates, size)
        self.rest = nn.Sequential(
            OrderedDict(
                [
                    *([("norm", nn.BatchNorm1d(size))] if batch_norm else []),
                    *([("layer_norm", nn.LayerNorm(size, elementwise_affine=False))] if layer_norm else []),
                    ("act", nn.ReLU()),
                    ("dropout", nn.Dropout(dropout)),
                ]
            )
        )

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
    """Gene expression shares, inverse dispersion (`log_theta`: per gene; `theta_covariates`: per gene and
    covariate category; `theta_cell`: per gene and cell), and ZINB dropout logits."""

    def __init__(
        self, width: int, genes: int, zero_inflated: bool, dispersion: str = "gene", n_covariates: int = 0
    ) -> None:
        super().__init__()
        self.scale = nn.Linear(width, genes)
        self.dispersion = dispersion
        if dispersion == "gene":
            self.log_theta = nn.Parameter(torch.zeros(genes))
        elif dispersion == "gene-batch":
            self.theta_covariates = nn.Linear(n_covariates, genes, bias=False)
            nn.init.zeros_(
                self.theta_covariates.weight
            )  # theta 1 for every category to start (new ones after surgery too)
        else:
            self.theta_cell = nn.Linear(width, genes)
        self.dropout = nn.Linear(width, genes) if zero_inflated else None

    def _log_theta(self, h: torch.Tensor, covariates: torch.Tensor | None) -> torch.Tensor:
        if self.dispersion == "gene":
            return self.log_theta.expand(len(h), -1)
        if self.dispersion == "gene-batch":
            return self.theta_covariates(covariates)
        return self.theta_cell(h).clamp(-15.0, 15.0)

    def forward(
        self, h: torch.Tensor, library: torch.Tensor, covariates: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        if self.dispersion == "gene":  # today's exact operations
            theta = self.log_theta.exp().expand(len(h), -1)
        else:
            theta = self._log_theta(h, covariates).exp()
        out = {"mean": F.softmax(self.scale(h), dim=-1) * library, "theta": theta}
        if self.dropout is not None:
            out["dropout_logits"] = self.dropout(h)
        return out


def _check_options(
    in_features: int,
    out_features: int | None,
    hidden: list[int],
    n_covariates: int,
    likelihood: str,
    dispersion: str,
    norms: dict[str, str],
) -> None:
    """Raise on a CVAE option that names no choice or contradicts another (model.params' key in the message);
    `norms`: `use_batch_norm` and `use_layer_norm`."""
    if out_features not in (None, in_features):
        raise StagewiseError(
            f"model: cvae reconstructs its {in_features} input features; out_features {out_features} must equal them"
        )
    if likelihood not in ("nb", "zinb"):
        raise StagewiseError(f"model.params.likelihood: {likelihood!r} is not nb or zinb")
    if not hidden:
        raise StagewiseError("model.params.hidden: cvae needs at least one hidden layer")
    for key, value in norms.items():
        if value not in NORM_PARTS:
            raise StagewiseError(f"model.params.{key}: {value!r} is not one of {', '.join(NORM_PARTS)}")
    if dispersion not in DISPERSIONS:
        raise StagewiseError(f"model.params.dispersion: {dispersion!r} is not one of {', '.join(DISPERSIONS)}")
    if dispersion == "gene-batch" and not n_covariates:
        raise StagewiseError(
            "model.params.dispersion: gene-batch needs covariates (data.*.covariates); use gene or gene-cell"
        )


class CVAE(nn.Module):
    """Blocks `encoder.0` ..., `latent`, `decoder.0` ... (input to output), then `head` (CountHead).

    Covariates are injected into the first encoder and decoder layers, or into every hidden layer
    with `deeply_inject_covariates` (scVI's option); `encode_covariates: false` keeps them out of the
    encoder (scVI's default; scArches recommends true). `covariate_layers` lists the Linear layers
    that take them (with `dispersion: gene-batch` also `head.theta_covariates`).
    `batch_norm: false` turns batch norm off everywhere (the older spelling of `use_batch_norm: none`).
    `decoder_dropout` is the decoder's dropout rate (null: `dropout`, as the encoder; scvi-tools' decoder: 0).
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
        use_batch_norm: str = "both",
        use_layer_norm: str = "none",
        encode_covariates: bool = True,
        dispersion: str = "gene",
        decoder_dropout: float | None = None,
    ) -> None:
        super().__init__()
        norms = {"use_batch_norm": use_batch_norm, "use_layer_norm": use_layer_norm}
        _check_options(in_features, out_features, hidden, n_covariates, likelihood, dispersion, norms)
        self.n_covariates, self.likelihood, self.encode_covariates = n_covariates, likelihood, encode_covariates

        def stack(part: str, widths: list[int], takes: bool) -> nn.ModuleList:
            rate = dropout if part == "encoder" or decoder_dropout is None else decoder_dropout
            return nn.ModuleList(
                Layer(
                    w,
                    s,
                    n_covariates if takes and (i == 0 or deeply_inject_covariates) else 0,
                    rate,
                    batch_norm and part in NORM_PARTS[use_batch_norm],
                    part in NORM_PARTS[use_layer_norm],
                )
                for i, (w, s) in enumerate(itertools.pairwise(widths))
            )

        self.encoder = stack("encoder", [in_features, *hidden], encode_covariates)
        self.latent = Latent(hidden[-1], n_latent)
        self.decoder = stack("decoder", [n_latent, *reversed(hidden)], True)
        self.head = CountHead(hidden[0], in_features, likelihood == "zinb", dispersion, n_covariates)
        self.block_names = [
            *(f"encoder.{i}" for i in range(len(hidden))),
            "latent",
            *(f"decoder.{i}" for i in range(len(hidden))),
        ]
        self.head_name = "head"
        self.covariate_layers = [
            f"{part}.{i}.linear"
            for part in ("encoder", "decoder")
            for i, layer in enumerate(getattr(self, part))
            if layer.n_covariates
        ]
        if dispersion == "gene-batch":
            self.covariate_layers.append("head.theta_covariates")

    def _run(self, layers: nn.ModuleList, h: torch.Tensor, covariates: torch.Tensor | None) -> torch.Tensor:
        for layer in layers:
            h = layer(h, covariates)
        return h

    def encode(self, x: torch.Tensor, covariates: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance of the latent code."""
        return self.latent(
            self._run(self.encoder, torch.log1p(x), self._covariates(x, covariates) if self.encode_covariates else None)
        )

    def _covariates(self, x: torch.Tensor, covariates: torch.Tensor | None) -> torch.Tensor | None:
        if not self.n_covariates:
            return None
        if covariates is None or covariates.shape != (len(x), self.n_covariates):
            got = None if covariates is None else tuple(covariates.shape)
            raise StagewiseError(
                f"cvae: expects one-hot covariates of shape ({len(x)}, {self.n_covariates}), got {got}"
            )
        return covariates.to(x.dtype)

    def forward(self, x: torch.Tensor, covariates: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        x = x.float()
        z_mean, z_logvar = self.encode(x, covariates)
        z = z_mean + torch.randn_like(z_mean) * torch.exp(0.5 * z_logvar) if self.training else z_mean
        covariates = self._covariates(x, covariates)
        h = self._run(self.decoder, z, covariates)
        library = x.sum(dim=1, keepdim=True)
        return self.head(h, library, covariates) | {"z_mean": z_mean, "z_logvar": z_logvar, "z": z}
