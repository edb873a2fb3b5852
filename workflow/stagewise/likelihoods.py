"""Count likelihoods of a VAE (scVI/PREFFECT family): negative ELBO with NB or ZINB and KL warmup.

A count model's forward returns a dict (see `stagewise.models.cvae`): `mean` (N, G) and `theta`
(N, G) of the negative binomial, `dropout_logits` (N, G) for ZINB, and the posterior `z_mean`,
`z_logvar` (N, D). The loss is the negative ELBO per sample, averaged over the batch:
-log p(x | z) summed over genes + kl_weight * KL(q(z | x) || N(0, I)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.distributions import NegativeBinomial, Normal, kl_divergence

from .errors import StagewiseError

EPS = 1e-8


def nb_log_prob(x: torch.Tensor, mean: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Elementwise log NB(x; mean, inverse dispersion theta)."""
    logits = torch.log(mean + EPS) - torch.log(theta + EPS)
    return NegativeBinomial(total_count=theta, logits=logits, validate_args=False).log_prob(x)


def zinb_log_prob(
    x: torch.Tensor, mean: torch.Tensor, theta: torch.Tensor, dropout_logits: torch.Tensor
) -> torch.Tensor:
    """Elementwise log ZINB: with probability sigmoid(dropout_logits) an extra zero, else NB."""
    nb = nb_log_prob(x, mean, theta)
    log_dropout, log_keep = F.logsigmoid(dropout_logits), F.logsigmoid(-dropout_logits)
    zero = torch.logaddexp(log_dropout, log_keep + nb)
    return torch.where(x < EPS, zero, log_keep + nb)


def kl_standard_normal(z_mean: torch.Tensor, z_logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(z_mean, exp(z_logvar)) || N(0, I)) per sample."""
    posterior = Normal(z_mean, torch.exp(0.5 * z_logvar))
    return kl_divergence(posterior, Normal(torch.zeros_like(z_mean), torch.ones_like(z_mean))).sum(-1)


def reconstruction_nll(output: dict, x: torch.Tensor, likelihood: str) -> torch.Tensor:
    """-log p(x | z) per sample under `likelihood` (`nb` or `zinb`)."""
    if likelihood == "zinb":
        if "dropout_logits" not in output:
            raise StagewiseError(
                "training.loss: zinb needs a model with likelihood: zinb (its output has no dropout_logits); "
                "use loss nb"
            )
        log_p = zinb_log_prob(x, output["mean"], output["theta"], output["dropout_logits"])
    else:
        log_p = nb_log_prob(x, output["mean"], output["theta"])
    return -log_p.sum(-1)


def warmup_weight(epoch: int | None, kl_warmup: int) -> float:
    """KL weight rising linearly to 1 over `kl_warmup` epochs (scVI's n_epochs_kl_warmup); 1 outside training."""
    if epoch is None or kl_warmup <= 0:
        return 1.0
    return min(1.0, epoch / kl_warmup)


def negative_elbo(output: dict, x: torch.Tensor, likelihood: str, weight: float = 1.0) -> torch.Tensor:
    """Batch mean of reconstruction NLL + weight * KL."""
    return (
        reconstruction_nll(output, x, likelihood) + weight * kl_standard_normal(output["z_mean"], output["z_logvar"])
    ).mean()


def nb_loss(output: dict, x: torch.Tensor, kl_weight: float = 1.0) -> torch.Tensor:
    """Negative ELBO with a negative binomial likelihood (loss `nb`)."""
    return negative_elbo(output, x, "nb", kl_weight)


def zinb_loss(output: dict, x: torch.Tensor, kl_weight: float = 1.0) -> torch.Tensor:
    """Negative ELBO with a zero-inflated negative binomial likelihood (loss `zinb`)."""
    return negative_elbo(output, x, "zinb", kl_weight)
