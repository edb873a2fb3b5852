"""Freeze policies: which parameters train in a stage, eval mode for frozen parts, and the audit.

One primitive, `set_trainable(model, names)`; the stage keys (`train`, `freeze`, `unfreeze_last`,
`unfreeze_all`) only decide which names go in. Frozen modules run in eval mode, so BatchNorm
statistics and dropout are frozen with their weights.
"""

from __future__ import annotations

import fnmatch

from torch import nn

from .errors import StagewiseError

NORM_AND_DROPOUT = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd, nn.LayerNorm, nn.GroupNorm)


def resolve(model: nn.Module, patterns: list[str], new: list[str], where: str) -> set[str]:
    """Parameter names selected by module names, globs, `head` or `new`; a pattern matching nothing is an error."""
    params = dict(model.named_parameters())
    modules = [name for name, _ in model.named_modules() if name]
    selected: set[str] = set()
    for pattern in patterns:
        if pattern == "new":
            hits = set(new)
            if not hits:
                raise StagewiseError(f"{where}: 'new' selects nothing: no parameter was created by head replacement or surgery")
        else:
            name = model.head_name if pattern == "head" else pattern
            prefixes = [m for m in modules if m == name or fnmatch.fnmatchcase(m, name)]
            hits = {p for p in params if any(p == m or p.startswith(m + ".") for m in prefixes)}
            hits |= {p for p in params if fnmatch.fnmatchcase(p, name)}
            if not hits:
                raise StagewiseError(f"{where}: {pattern!r} matches no module or parameter; modules are {modules[:15]}")
        selected |= hits
    return selected


def trainable_names(model: nn.Module, policy: dict, new: list[str], where: str) -> set[str]:
    """The parameter names a stage's policy trains; the head trains unless frozen by name."""
    every = {name for name, _ in model.named_parameters()}
    chosen_by = [k for k in ("train", "unfreeze_last", "unfreeze_all") if k in policy]
    if policy.get("unfreeze_all") or not chosen_by:
        chosen = set(every)
    else:
        chosen = resolve(model, [model.head_name], new, where)
        chosen |= resolve(model, policy.get("train", []), new, f"{where}.train")
        n = policy.get("unfreeze_last", 0)
        if n > len(model.block_names):
            raise StagewiseError(f"{where}.unfreeze_last: {n} but the model has {len(model.block_names)} blocks {model.block_names}")
        if n:
            chosen |= resolve(model, model.block_names[-n:], new, f"{where}.unfreeze_last")
    chosen -= resolve(model, policy.get("freeze", []), new, f"{where}.freeze")
    if not chosen:
        raise StagewiseError(f"{where}: nothing trains in this stage; name something in train/unfreeze_last/unfreeze_all")
    return chosen


def set_trainable(model: nn.Module, names: set[str]) -> None:
    """Make exactly `names` trainable, everything else frozen."""
    for name, param in model.named_parameters():
        param.requires_grad_(name in names)


def _is_frozen(module: nn.Module) -> bool:
    params = list(module.parameters())
    return bool(params) and not any(p.requires_grad for p in params)


def set_train_mode(model: nn.Module) -> None:
    """`model.train()`, then eval mode for every frozen module and the parameter-free layers inside it."""
    model.train()
    modules = dict(model.named_modules())
    for name, module in modules.items():
        owner = module
        while not list(owner.parameters()) and name:
            name = name.rpartition(".")[0]
            owner = modules[name]
        if _is_frozen(owner):
            module.eval()


def audit(model: nn.Module) -> dict:
    """Trainable and frozen parameter counts per block and the head, and each norm/dropout layer's mode."""
    groups = [*model.block_names, model.head_name]
    counts = {}
    for group in groups:
        params = list(model.get_submodule(group).parameters())
        counts[group] = {"trainable": sum(p.numel() for p in params if p.requires_grad),
                         "frozen": sum(p.numel() for p in params if not p.requires_grad)}
    modes = {name: ("train" if m.training else "eval") for name, m in model.named_modules() if isinstance(m, NORM_AND_DROPOUT)}
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "frozen": total - trainable, "modules": counts, "modes": modes}
