"""Model registry: architecture name (or "package.module:ClassName") -> nn.Module class.

Every model exposes `block_names` (ordered, input to output: what `unfreeze_last: N` counts) and
`head_name` (the final layer, replaced by `pretrained.head`).
"""

from __future__ import annotations

import importlib

from torch import nn

from ..errors import StagewiseError
from .mlp import MLP

REGISTRY: dict[str, type[nn.Module]] = {"mlp": MLP}


def resolve(architecture: str) -> type[nn.Module]:
    """The class an architecture name stands for."""
    if architecture in REGISTRY:
        return REGISTRY[architecture]
    if ":" in architecture:
        module_name, _, class_name = architecture.partition(":")
        try:
            return getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as error:
            raise StagewiseError(f"model.architecture: cannot import {architecture!r}: {error}") from None
    raise StagewiseError(f"model.architecture: unknown {architecture!r}; built-in: {sorted(REGISTRY)} or 'package.module:ClassName'")


def build(architecture: str, params: dict) -> nn.Module:
    """Instantiate a model; a bad constructor argument is reported with the key."""
    cls = resolve(architecture)
    try:
        model = cls(**params)
    except TypeError as error:
        raise StagewiseError(f"model.params: {architecture} does not accept {sorted(params)}: {error}") from None
    for attribute in ("block_names", "head_name"):
        if not hasattr(model, attribute):
            raise StagewiseError(f"model.architecture: {architecture} lacks the attribute {attribute!r} (see config/README.md)")
    return model
