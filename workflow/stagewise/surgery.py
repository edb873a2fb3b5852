"""Adapting pretrained tensors to a new model: features, module renames, widened covariate layers, transfer.

Pure functions on names, shapes and tensors; `transfer` turns their findings into checks and the start state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


def under(key: str, module: str) -> bool:
    """Whether tensor `key` belongs to `module` (or is it)."""
    return key == module or key.startswith(module + ".")


def rename(state_dict: dict[str, torch.Tensor], match: dict[str, str]) -> dict[str, torch.Tensor]:
    """Rename checkpoint tensors by module prefix, `{name in checkpoint: name in new model}`; the longest prefix
    wins."""
    longest_first = sorted(match, key=len, reverse=True)
    renamed = {}
    for key, tensor in state_dict.items():
        old = next((m for m in longest_first if under(key, m)), None)
        renamed[match[old] + key[len(old) :] if old is not None else key] = tensor
    return renamed


def widen(
    old: torch.Tensor, fresh: torch.Tensor, old_sizes: list[int], new_sizes: list[int]
) -> tuple[torch.Tensor, list[list[int]]]:
    """`fresh` (a new init of the widened layer) with `old`'s columns copied in; returns it and the new column ranges.

    The last `sum(old_sizes)` input columns of `old` are one-hot covariates, one block per covariate; each
    block grows from `old_sizes[i]` to `new_sizes[i]` columns, its new categories appended at its end.
    """
    base = old.shape[1] - sum(old_sizes)
    out = fresh.clone().to(old.dtype)
    out[:, :base] = old[:, :base]
    ranges, src, dst = [], base, base
    for before, after in zip(old_sizes, new_sizes):
        out[:, dst : dst + before] = old[:, src : src + before]
        if after > before:
            ranges.append([dst + before, dst + after])
        src, dst = src + before, dst + after
    return out, ranges


@dataclass
class Plan:
    """Where each tensor goes when checkpoint tensors are mapped onto a new model's (names and shapes)."""

    reused: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    widened: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)


def plan(
    target: dict[str, torch.Size],
    source: dict[str, torch.Tensor],
    replaced: str | None,
    widened: dict[str, tuple[int, ...]],
) -> Plan:
    """Sort the new model's tensors into reused, new (under `replaced`), widened, missing and shape-mismatched.

    `widened` maps a tensor the surgery widens to the shape it must have in the checkpoint.
    """
    out = Plan()
    for key, shape in target.items():
        if replaced is not None and under(key, replaced):
            out.new.append(key)
        elif key not in source:
            out.missing.append(key)
        elif tuple(source[key].shape) != tuple(widened.get(key, shape)):
            out.mismatched.append(key)
        else:
            (out.widened if key in widened else out.reused).append(key)
    out.dropped = [key for key in source if key not in target or (replaced is not None and under(key, replaced))]
    return out
