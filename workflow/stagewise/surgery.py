"""Adapting pretrained weights to a new model: feature order, module renames, head replacement."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .io.hdf5 import Split


@dataclass
class Transfer:
    """The outcome of mapping checkpoint tensors onto a new model's tensors."""

    state_dict: dict[str, torch.Tensor]
    reused: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def feature_diff(expected: list[str], found: list[str]) -> dict:
    """Missing, extra and out-of-order features of `found` against the checkpoint's `expected`."""
    missing = [f for f in expected if f not in set(found)]
    extra = [f for f in found if f not in set(expected)]
    common = [f for f in found if f in set(expected)]
    in_order = [f for f in expected if f in set(found)]
    moved = [a for a, b in zip(common, in_order) if a != b]
    return {"missing": missing, "extra": extra, "out_of_order": moved}


def align(split: Split, feature_names: list[str]) -> Split:
    """`split` with its feature columns permuted to `feature_names` (the model's order)."""
    if split.feature_names == feature_names:
        return split
    position = {name: i for i, name in enumerate(split.feature_names)}
    order = np.array([position[name] for name in feature_names])
    return Split(split.X[:, order], split.y, list(feature_names), split.label_names, split.sample_ids)


def rename(state_dict: dict[str, torch.Tensor], match: dict[str, str]) -> dict[str, torch.Tensor]:
    """Rename checkpoint tensors by module prefix, `{name in checkpoint: name in new model}`."""
    renamed = {}
    for key, tensor in state_dict.items():
        for old, new in match.items():
            if key == old or key.startswith(old + "."):
                key = new + key[len(old):]
                break
        renamed[key] = tensor
    return renamed


def transfer(model: nn.Module, source: dict[str, torch.Tensor], replaced: str | None) -> Transfer:
    """Copy `source` tensors into `model`'s state by name; the `replaced` module's tensors start new."""
    target = model.state_dict()
    out = Transfer(state_dict=dict(target))

    def in_replaced(key: str) -> bool:
        return replaced is not None and (key == replaced or key.startswith(replaced + "."))

    for key, tensor in target.items():
        if in_replaced(key):
            out.new.append(key)
        elif key not in source:
            out.errors.append(f"tensor {key} {tuple(tensor.shape)} of the new model has no counterpart in the checkpoint "
                              "(map its module with pretrained.match, or replace it with pretrained.head)")
        elif source[key].shape != tensor.shape:
            out.errors.append(f"tensor {key}: checkpoint shape {tuple(source[key].shape)} != new model shape {tuple(tensor.shape)}")
        else:
            out.state_dict[key] = source[key].to(tensor.dtype)
            out.reused.append(key)
    out.dropped = [key for key in source if key not in target or in_replaced(key)]
    return out
