"""Loss registry: a config dict `{name, **kwargs}` -> a loss function of (logits, targets)."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .errors import StagewiseError


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0, alpha: float | None = None) -> torch.Tensor:
    """Focal loss (Lin et al. 2017): cross-entropy down-weighted by (1 - p_true)^gamma."""
    log_p = F.log_softmax(logits, dim=1).gather(1, targets[:, None]).squeeze(1)
    loss = -((1 - log_p.exp()) ** gamma) * log_p
    if alpha is not None:
        loss = alpha * loss
    return loss.mean()


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy on logits, with optional label smoothing."""
    return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)


LOSSES: dict[str, Callable[..., torch.Tensor]] = {"cross_entropy": cross_entropy, "focal": focal_loss}


def build(spec: dict) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss named by `spec['name']` with its keyword arguments bound."""
    fn = LOSSES[spec["name"]]
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    try:
        fn(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), **kwargs)
    except TypeError as error:
        raise StagewiseError(f"training.loss: {spec['name']} rejects {kwargs}: {error}") from None
    return lambda logits, targets: fn(logits, targets, **kwargs)
