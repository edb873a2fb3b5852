"""Optimizer and scheduler registries: a config dict `{name, **kwargs}` -> torch object."""

from __future__ import annotations

import torch
from torch import nn

from .errors import StagewiseError

OPTIMIZERS = {"AdamW": torch.optim.AdamW, "Adam": torch.optim.Adam, "SGD": torch.optim.SGD}
SCHEDULERS = {
    "MultiStepLR": torch.optim.lr_scheduler.MultiStepLR,
    "CosineAnnealingWarmRestarts": torch.optim.lr_scheduler.CosineAnnealingWarmRestarts,
}


def _construct(kind: str, cls, *args, kwargs: dict):
    try:
        return cls(*args, **kwargs)
    except (TypeError, ValueError) as error:
        raise StagewiseError(f"{kind}: {cls.__name__} rejects {kwargs}: {error}") from None


def build_optimizer(model: nn.Module, spec: dict) -> torch.optim.Optimizer:
    """An optimizer over the model's trainable parameters only."""
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    params = [p for p in model.parameters() if p.requires_grad]
    return _construct("training.optimizer", OPTIMIZERS[spec["name"]], params, kwargs=kwargs)


def build_scheduler(optimizer: torch.optim.Optimizer, spec: dict):
    """A per-epoch LR scheduler, or None for `name: none`."""
    if spec["name"] == "none":
        return None
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    return _construct("training.scheduler", SCHEDULERS[spec["name"]], optimizer, kwargs=kwargs)
