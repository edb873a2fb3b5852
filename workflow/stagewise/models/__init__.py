"""Model registry: architecture name (or "package.module:ClassName") -> nn.Module class.

Every model exposes `block_names` (ordered, input to output: what `unfreeze_last: N` counts) and
`head_name` (the final layer, replaced by `pretrained.head`). A plug-in class that defines neither
gets its top-level child modules with parameters, in definition order: the last is the head, the
others the blocks. A model that takes covariates accepts `n_covariates`, lists the Linear layers
whose last `n_covariates` inputs are the one-hot covariates in `covariate_layers`, and is called
as `model(x, covariates)`.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys

from torch import nn

from ..errors import StagewiseError
from .cnn1d import CNN1d
from .cnn2d import CNN2d
from .cvae import CVAE
from .mlp import MLP

REGISTRY: dict[str, type[nn.Module]] = {"mlp": MLP, "cnn1d": CNN1d, "cnn2d": CNN2d, "cvae": CVAE}


def resolve(architecture: str) -> type[nn.Module]:
    """The class an architecture name stands for; plug-ins are imported from the path or the working directory."""
    if architecture in REGISTRY:
        return REGISTRY[architecture]
    if ":" not in architecture:
        raise StagewiseError(f"model.architecture: unknown {architecture!r}; built-in: {sorted(REGISTRY)} or 'package.module:ClassName'")
    module_name, _, class_name = architecture.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # a module next to the config, after installed packages
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise StagewiseError(f"model.architecture: cannot import {architecture!r} ({type(error).__name__}: {error}); "
                             "the module must be installed or in the folder the workflow runs in") from None
    if not (inspect.isclass(cls) and issubclass(cls, nn.Module)):
        raise StagewiseError(f"model.architecture: {architecture!r} is not a torch.nn.Module subclass")
    return cls


def _default_structure(model: nn.Module, architecture: str) -> None:
    children = [name for name, child in model.named_children() if any(True for _ in child.parameters())]
    if not hasattr(model, "head_name"):
        if not children:
            raise StagewiseError(f"model.architecture: {architecture} has no child module with parameters to serve as the head")
        model.head_name = children[-1]
    if not hasattr(model, "block_names"):
        model.block_names = [name for name in children if name != model.head_name]


def _check_structure(model: nn.Module, architecture: str) -> None:
    modules = dict(model.named_modules())
    for name in [*model.block_names, model.head_name]:
        if name not in modules:
            raise StagewiseError(f"model.architecture: {architecture} names {name!r} in block_names/head_name, but it has no such submodule")
    for name in getattr(model, "covariate_layers", []):
        if not isinstance(modules.get(name), nn.Linear):
            raise StagewiseError(f"model.architecture: {architecture}.covariate_layers names {name!r}, which is not an nn.Linear submodule")


def build(architecture: str, params: dict) -> nn.Module:
    """Instantiate a model and check its block list, head and covariate layers name real submodules."""
    cls = resolve(architecture)
    try:
        model = cls(**params)
    except (TypeError, ValueError) as error:
        raise StagewiseError(f"model.params: {architecture} rejects {sorted(params)}: {error}") from None
    _default_structure(model, architecture)
    _check_structure(model, architecture)
    return model
