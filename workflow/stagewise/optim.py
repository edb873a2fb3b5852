"""Optimizers, schedulers and discriminative learning rates.

Registries map a config name to a torch class; every other key of the config mapping is passed
to it. `param_groups` is a pure function (timm's style) returning one group per lr multiplier.
`Schedule` steps a scheduler per epoch or per batch and adds an optional linear warmup.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from .config import default_lr
from .errors import StagewiseError
from .freezing import resolve

OPTIMIZERS = {"AdamW": torch.optim.AdamW, "Adam": torch.optim.Adam, "SGD": torch.optim.SGD}
SCHEDULERS = {
    "MultiStepLR": torch.optim.lr_scheduler.MultiStepLR,
    "CosineAnnealingWarmRestarts": torch.optim.lr_scheduler.CosineAnnealingWarmRestarts,
    "OneCycleLR": torch.optim.lr_scheduler.OneCycleLR,
}
INTERVAL = {"MultiStepLR": "epoch", "CosineAnnealingWarmRestarts": "epoch", "OneCycleLR": "batch"}
OWN_KEYS = ("name", "interval", "warmup_epochs")  # read by stagewise, not passed to torch


def construct(cls, args: tuple, kwargs: dict, where: str):
    """`cls(*args, **kwargs)`; an argument torch rejects becomes an error naming the key."""
    accepted = inspect.signature(cls).parameters
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        options = [p for p in accepted if p not in ("self", "params", "optimizer")]
        raise StagewiseError(f"{where}.{unknown[0]}: not an argument of {cls.__name__}; it accepts {options}")
    try:
        return cls(*args, **kwargs)
    except (TypeError, ValueError, KeyError) as error:
        raise StagewiseError(f"{where}: {cls.__name__} rejects {kwargs}: {error}") from None


class _ArgumentsOnly(torch.optim.Optimizer):
    """The base of a dry-run optimizer: keeps the param groups instead of setting the optimizer up.

    torch checks an optimizer's arguments in the optimizer's own constructor, which runs in full;
    only `Optimizer.__init__` is skipped, which imports torch's compiler (torch._dynamo, 1-2 s of a
    `stagewise check`). Schedulers can be built on the result; it cannot step.
    """

    def __init__(self, params: list[dict], defaults: dict) -> None:
        self.defaults, self.state = defaults, {}
        self.param_groups = [defaults | group for group in params]


def lr_scales(
    model: nn.Module, names: set[str], lr_groups: dict[str, float], layer_decay: float | None, where: str
) -> dict[str, float]:
    """Each trainable parameter's lr multiplier: its most specific `lr_groups` glob × layer_decay ** depth from the
    head."""
    scales = dict.fromkeys(names, 1.0)
    for pattern in sorted(lr_groups, key=len):  # longer (more specific) patterns are applied last and win
        for name in resolve(model, [pattern], set(), f"{where}.lr_groups") & names:
            scales[name] = float(lr_groups[pattern])
    if layer_decay is not None:
        order = [model.head_name, *reversed(model.block_names)]
        for name in names:
            depth = next((d for d, m in enumerate(order) if name.startswith(m + ".")), len(order))
            scales[name] *= layer_decay**depth
    return scales


def param_groups(model: nn.Module, names: set[str], lr: float, scales: dict[str, float]) -> list[dict]:
    """One parameter group per distinct multiplier, in model order, each with `lr`, `lr_scale` and `names`."""
    groups: dict[float, dict] = {}
    for name, param in model.named_parameters():
        if name in names:
            group = groups.setdefault(
                scales[name], {"params": [], "names": [], "lr": lr * scales[name], "lr_scale": scales[name]}
            )
            group["params"].append(param)
            group["names"].append(name)
    return list(groups.values())


def build_optimizer(
    model: nn.Module, names: set[str], training: dict, where: str, dry_run: bool = False
) -> torch.optim.Optimizer:
    """The stage's optimizer over the `names` parameters only, with discriminative lrs
    (`dry_run`: arguments checked by torch, nothing set up to step)."""
    spec = training["optimizer"]
    # a stage that names another optimizer starts afresh from the schema's lr
    kwargs = {"lr": default_lr()} | {k: v for k, v in spec.items() if k != "name"}
    scales = lr_scales(model, names, training.get("lr_groups") or {}, training.get("layer_decay"), where)
    groups = param_groups(model, names, kwargs["lr"], scales)
    cls = OPTIMIZERS[spec["name"]]
    if dry_run:
        cls = type(cls.__name__, (cls, _ArgumentsOnly), {})
    return construct(cls, (groups,), kwargs, f"{where}.optimizer")


class Schedule:
    """A scheduler stepped per epoch or per batch, with linear warmup over the first `warmup_epochs`."""

    def __init__(self, optimizer: torch.optim.Optimizer, spec: dict, epochs: int, batches: int, where: str) -> None:
        name = spec["name"]
        self.optimizer, self.batches, self.step_index = optimizer, batches, 0
        self.interval = spec.get("interval", INTERVAL.get(name, "epoch"))
        self.warmup = round(spec.get("warmup_epochs", 0) * batches)
        self.lr = self._base_lr()
        kwargs = {k: v for k, v in spec.items() if k not in OWN_KEYS}
        if name == "none" and kwargs:
            raise StagewiseError(
                f"{where}.scheduler: {sorted(kwargs)} given but scheduler.name is none; name the scheduler they "
                f"belong to"
            )
        if name == "OneCycleLR":
            kwargs.setdefault("max_lr", [g["lr"] for g in optimizer.param_groups])
            kwargs.setdefault("total_steps", epochs * (batches if self.interval == "batch" else 1))
        self.scheduler = (
            None if name == "none" else construct(SCHEDULERS[name], (optimizer,), kwargs, f"{where}.scheduler")
        )
        self.cosine = isinstance(self.scheduler, torch.optim.lr_scheduler.CosineAnnealingWarmRestarts)

    def _base_lr(self) -> float:
        group = self.optimizer.param_groups[0]
        return group["lr"] / group.get("lr_scale", 1.0)

    def step(self, epoch: int, batch: int) -> None:
        """`optimizer.step()` for batch `batch` (0-based) of epoch `epoch` (0-based), warmed up, then the batch's
        scheduler step."""
        factor = min(1.0, (self.step_index + 1) / self.warmup) if self.warmup else 1.0
        scheduled = [g["lr"] for g in self.optimizer.param_groups]
        if factor < 1.0:
            for group, lr in zip(self.optimizer.param_groups, scheduled):
                group["lr"] = lr * factor
        self.lr = self._base_lr()
        self.optimizer.step()
        for group, lr in zip(self.optimizer.param_groups, scheduled):
            group["lr"] = lr
        self.step_index += 1
        if self.scheduler is not None and self.interval == "batch":
            if self.cosine:
                self.scheduler.step(epoch + (batch + 1) / self.batches)
            else:
                self.scheduler.step()

    def end_epoch(self) -> None:
        """The per-epoch scheduler step."""
        if self.scheduler is not None and self.interval == "epoch":
            self.scheduler.step()
