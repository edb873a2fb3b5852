"""Freeze policies: which parameters train in a stage, eval mode for frozen parts, and the audit.

One primitive, `set_trainable(model, names)`; the stage keys (`train`, `freeze`, `unfreeze_last`,
`unfreeze_all`) only decide which names go in. Frozen modules run in eval mode, so BatchNorm
statistics and dropout are frozen with their weights.

Parameters that are only partly new (surgery widened a Linear with new input columns) are named
in checkpoint meta `new_parameter_masks`: `{parameter name: [[start, stop], ...]}`, half-open
ranges of columns (dimension 1) that are new, or a boolean tensor of the parameter's shape (True
= new). `train: [new]` trains exactly those entries: `freeze_entries` keeps every other entry of
the tensor bitwise fixed.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import StagewiseError

NORM_AND_DROPOUT = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd, nn.LayerNorm, nn.GroupNorm)


@dataclass
class Selection:
    """What trains in a stage: whole parameters, and of those the ones that train only where `masks` is True."""

    names: set[str]
    masks: dict[str, torch.Tensor] = field(default_factory=dict)


def entry_masks(model: nn.Module, spec: dict, where: str = "new_parameter_masks") -> dict[str, torch.Tensor]:
    """Boolean masks (True = new entry) from meta `new_parameter_masks` (column ranges or boolean tensors)."""
    parameters = dict(model.named_parameters())
    masks = {}
    for name, value in spec.items():
        if name not in parameters:
            raise StagewiseError(f"{where}: {name!r} is not a parameter of the model")
        shape = parameters[name].shape
        if isinstance(value, torch.Tensor):
            if value.dtype != torch.bool or value.shape != shape:
                raise StagewiseError(
                    f"{where}.{name}: a mask must be a bool tensor of shape {tuple(shape)}, "
                    f"got {value.dtype} {tuple(value.shape)}"
                )
            mask = value.clone()
        else:
            if len(shape) < 2:
                raise StagewiseError(
                    f"{where}.{name}: column ranges need a tensor of rank >= 2, got shape {tuple(shape)}"
                )
            mask = torch.zeros(shape, dtype=torch.bool)
            for start, stop in value:
                if not 0 <= start < stop <= shape[1]:
                    raise StagewiseError(f"{where}.{name}: column range [{start}, {stop}) outside 0..{shape[1]}")
                mask[:, start:stop] = True
        masks[name] = mask
    return masks


def resolve(model: nn.Module, patterns: list[str], new: set[str], where: str) -> set[str]:
    """Parameter names selected by module names, globs, `head` or `new`; a pattern matching nothing is an error."""
    parameters = dict(model.named_parameters())
    modules = [name for name, _ in model.named_modules() if name]
    selected: set[str] = set()
    for pattern in patterns:
        if pattern == "new":
            hits = set(new)
            if not hits:
                raise StagewiseError(
                    f"{where}: 'new' selects nothing: no parameter was created by head replacement or surgery"
                )
        else:
            name = model.head_name if pattern == "head" else pattern
            prefixes = [m for m in modules if m == name or fnmatch.fnmatchcase(m, name)]
            hits = {p for p in parameters if any(p == m or p.startswith(m + ".") for m in prefixes)}
            hits |= {p for p in parameters if fnmatch.fnmatchcase(p, name)}
            if not hits:
                raise StagewiseError(f"{where}: {pattern!r} matches no module or parameter; modules are {modules[:15]}")
        selected |= hits
    return selected


def select(model: nn.Module, policy: dict, new: list[str], masks: dict[str, torch.Tensor], where: str) -> Selection:
    """What a stage's policy trains; the head trains unless frozen by name; masks apply to parameters chosen only as
    `new`."""
    every = {name for name, _ in model.named_parameters()}
    new_set = set(new) | set(masks)
    chosen_by = [k for k in ("train", "unfreeze_last", "unfreeze_all") if k in policy]
    if policy.get("unfreeze_all") or not chosen_by:
        return _checked(Selection(every - resolve(model, policy.get("freeze", []), new_set, f"{where}.freeze")), where)
    train = policy.get("train", [])
    named = resolve(model, [model.head_name], new_set, where)
    named |= resolve(model, [p for p in train if p != "new"], new_set, f"{where}.train")
    n = policy.get("unfreeze_last", 0)
    if n > len(model.block_names):
        raise StagewiseError(
            f"{where}.unfreeze_last: {n} but the model has {len(model.block_names)} blocks {model.block_names}"
        )
    if n:
        named |= resolve(model, model.block_names[-n:], new_set, f"{where}.unfreeze_last")
    via_new = resolve(model, ["new"], new_set, f"{where}.train") if "new" in train else set()
    chosen = (named | via_new) - resolve(model, policy.get("freeze", []), new_set, f"{where}.freeze")
    partial = {p: m for p, m in masks.items() if p in chosen and p not in named}
    return _checked(Selection(chosen, partial), where)


def _checked(selection: Selection, where: str) -> Selection:
    if not selection.names:
        raise StagewiseError(
            f"{where}: nothing trains in this stage; name something in train/unfreeze_last/unfreeze_all"
        )
    return selection


def set_trainable(model: nn.Module, names: set[str]) -> None:
    """Make exactly `names` trainable, everything else frozen."""
    for name, param in model.named_parameters():
        param.requires_grad_(name in names)


def freeze_entries(model: nn.Module, masks: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer) -> list:
    """Keep the entries outside each mask bitwise fixed: gradient zeroed there, values restored after each step.

    Zeroing the gradient keeps optimizer moments and gradient clipping to the trainable entries;
    restoring after `optimizer.step()` undoes what weight decay or momentum would still change.
    Returns the hook handles (call `.remove()` on each to undo).
    """
    handles, kept = [], []
    for name, mask in masks.items():
        param = model.get_parameter(name)
        mask = mask.to(param.device)
        handles.append(param.register_hook(lambda grad, mask=mask: grad * mask))
        kept.append((param, mask, param.detach().clone()))

    def restore(*_args) -> None:
        with torch.no_grad():
            for param, mask, saved in kept:
                param.copy_(torch.where(mask, param, saved))

    if kept:
        handles.append(optimizer.register_step_post_hook(restore))
    return handles


def _is_frozen(module: nn.Module) -> bool:
    parameters = list(module.parameters())
    return bool(parameters) and not any(p.requires_grad for p in parameters)


def set_train_mode(model: nn.Module) -> None:
    """`model.train()`, then eval mode for every frozen module and the parameter-free layers inside it."""
    model.train()
    for module in model.modules():  # parents first: a frozen module's eval() reaches its parameter-free layers
        if _is_frozen(module):
            module.eval()


def batchnorms_in_training(model: nn.Module, names: set[str]) -> list[str]:
    """The BatchNorm layers a stage that trains parameters `names` runs in train mode (batch statistics)."""
    set_trainable(model, names)
    set_train_mode(model)
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training
    ]


def audit(model: nn.Module, masks: dict[str, torch.Tensor] | None = None) -> dict:
    """Trainable and frozen entry counts per block and the head (masked parameters count in part), and norm/dropout
    modes."""
    masks = masks or {}

    def trainable(name: str, param: nn.Parameter) -> int:
        if not param.requires_grad:
            return 0
        return int(masks[name].sum()) if name in masks else param.numel()

    named = dict(model.named_parameters())
    counts = {}
    for group in [*model.block_names, model.head_name]:
        members = {n: p for n, p in named.items() if n.startswith(group + ".")}
        done = sum(trainable(n, p) for n, p in members.items())
        counts[group] = {"trainable": done, "frozen": sum(p.numel() for p in members.values()) - done}
    modes = {
        name: ("train" if m.training else "eval")
        for name, m in model.named_modules()
        if isinstance(m, NORM_AND_DROPOUT)
    }
    total = sum(p.numel() for p in named.values())
    done = sum(trainable(n, p) for n, p in named.items())
    return {
        "trainable": done,
        "frozen": total - done,
        "modules": counts,
        "modes": modes,
        "partial": {n: int(m.sum()) for n, m in masks.items()},
    }


def frozen_names(model: nn.Module) -> list[str]:
    """Parameters that do not train and the buffers of modules whose parameters all are frozen (BatchNorm
    statistics)."""
    names = [n for n, p in model.named_parameters() if not p.requires_grad]
    for prefix, module in model.named_modules():
        params = list(module.parameters(recurse=False))
        if params and not any(p.requires_grad for p in params):
            names += [f"{prefix}.{b}" if prefix else b for b, _ in module.named_buffers(recurse=False)]
    return names
