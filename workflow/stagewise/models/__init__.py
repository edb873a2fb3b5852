"""Model registry and construction: a built-in name or "package.module:name" (a class or a factory) -> nn.Module.

A user's class or factory is called with `model.params` verbatim (positional-only parameters bound by
their names, values converted as `model.convert` says) plus the sizes read from the data that
`model.from_data` maps to its own argument names; without `from_data`, `in_features`,
`out_features` and `n_covariates` go to a constructor that names them (every built-in does). The
structure (blocks, head, covariate layers) and the forward adapters come from `interface`
(`model.blocks`, `model.head`, ..., see `interface.Interface`).
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..errors import StagewiseError
from ..metadata import CheckpointMeta
from . import interface
from .cnn1d import CNN1d
from .cnn2d import CNN2d
from .cvae import CVAE
from .mlp import MLP

REGISTRY: dict[str, type[nn.Module]] = {"mlp": MLP, "cnn1d": CNN1d, "cnn2d": CNN2d, "cvae": CVAE}
SIZES = ("n_features", "n_outputs", "n_labels", "n_covariates", "sequence_length", "n_channels")
DEFAULT_SIZES = {"in_features": "n_features", "out_features": "n_outputs", "n_covariates": "n_covariates"}
CONVERSIONS: dict[str, Callable] = {"tuple": tuple, "list": list, "array": np.asarray, "tensor": torch.as_tensor}


def resolve(architecture: str) -> Callable[..., nn.Module]:
    """The class or factory an architecture name stands for; plug-ins are imported from the path or the working
    directory."""
    if architecture in REGISTRY:
        return REGISTRY[architecture]
    if ":" not in architecture:
        raise StagewiseError(
            f"model.architecture: unknown {architecture!r}; built-in: {sorted(REGISTRY)} or 'package.module:name'"
        )
    target = _import(architecture, "model.architecture")
    if not callable(target):
        raise StagewiseError(
            f"model.architecture: {architecture!r} is a {type(target).__name__}, not a class or a function"
        )
    if inspect.isclass(target) and not issubclass(target, nn.Module):
        raise StagewiseError(f"model.architecture: {architecture!r} is not a torch.nn.Module subclass")
    return target


def _import(spec: str, key: str) -> object:
    module_name, _, name = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # a module next to the config, after installed packages
    try:
        return getattr(importlib.import_module(module_name), name)
    except Exception as error:  # user code: ImportError, but also NameError, SyntaxError, ... at import
        raise StagewiseError(
            f"{key}: cannot import {spec!r} ({type(error).__name__}: {error}); the module must be "
            "installed or in the folder the workflow runs in"
        ) from None


def _signature(target: Callable) -> inspect.Signature | None:
    try:
        return inspect.signature(target)
    except (TypeError, ValueError):  # some builtins and C extensions have none
        return None


def _rejected(target: Callable, kwargs: dict) -> list[str]:
    """The keyword arguments `target` does not accept (none when it takes **kwargs or has no signature)."""
    signature = _signature(target)
    if signature is None or any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        return []
    return sorted(k for k in kwargs if k not in signature.parameters)


def size_map(architecture: str, from_data: dict | None, covariates: bool) -> dict[str, str]:
    """{constructor argument: size name}: `from_data`, else the default names the constructor has."""
    if from_data is not None:
        unknown = sorted(v for v in from_data.values() if v not in SIZES)
        if unknown:
            raise StagewiseError(f"model.from_data: unknown size {unknown}; one of {list(SIZES)}")
        return dict(from_data)
    signature = _signature(resolve(architecture))
    named = signature.parameters if signature else {}
    return {arg: size for arg, size in DEFAULT_SIZES.items() if arg in named and (size != "n_covariates" or covariates)}


def data_sizes(
    feature_shape: tuple[int, ...], n_features: int, n_outputs: int, n_covariates: int, n_labels: int | None = None
) -> dict[str, int]:
    """The sizes `model.from_data` can pass: features (N, F), sequences (N, L, C) or images (N, C, H, W); `n_labels`
    defaults to the outputs (one per label), and differs for `counts` (outputs: genes)."""
    rank = len(feature_shape)
    return {
        "n_features": n_features,
        "n_outputs": n_outputs,
        "n_labels": n_outputs if n_labels is None else n_labels,
        "n_covariates": n_covariates,
        "sequence_length": feature_shape[0] if rank == 2 else 0,
        "n_channels": feature_shape[-1] if rank == 2 else feature_shape[0] if rank == 3 else 1,
    }


def _convert(arguments: dict, convert: dict) -> dict:
    out = dict(arguments)
    for key, how in convert.items():
        if key not in out:
            raise StagewiseError(
                f"model.convert.{key}: no such argument in model.params or model.from_data (arguments: {sorted(out)})"
            )
        if how in CONVERSIONS:
            out[key] = CONVERSIONS[how](out[key])
        elif ":" in how:
            fn = _import(how, f"model.convert.{key}")
            out[key] = fn(**out[key]) if isinstance(out[key], dict) else fn(out[key])
        else:
            raise StagewiseError(
                f"model.convert.{key}: unknown conversion {how!r}; one of {sorted(CONVERSIONS)} or 'module:function'"
            )
    return out


def _bind(target: Callable, kwargs: dict) -> tuple[list, dict]:
    """Positional-only parameters given by name move to the positional arguments."""
    signature = _signature(target)
    if signature is None:
        return [], kwargs
    args, rest = [], dict(kwargs)
    for name, p in signature.parameters.items():
        if p.kind is not p.POSITIONAL_ONLY:
            break
        if name not in rest:
            break
        args.append(rest.pop(name))
    return args, rest


def construct(architecture: str, arguments: dict, convert: dict | None = None) -> nn.Module:
    """Call the class or factory with the constructor `arguments` (`model.params` and sizes from the data); any
    failure is a StagewiseError naming what was rejected."""
    target = resolve(architecture)
    try:
        args, kwargs = _bind(target, _convert(arguments, convert or {}))
        model = target(*args, **kwargs)
    except StagewiseError:
        raise
    except Exception as error:
        rejected = _rejected(target, arguments)
        raise StagewiseError(
            f"model.architecture: {architecture}: the constructor failed ({type(error).__name__}: {error})"
            + (f"; it does not accept {rejected}" if rejected else "")
            + f"; called with {sorted(arguments)}"
        ) from None
    if not isinstance(model, nn.Module):
        raise StagewiseError(
            f"model.architecture: {architecture} returned a {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def build(architecture: str, arguments: dict, spec: dict | None = None, replaced_head: dict | None = None) -> nn.Module:
    """Construct a model, replace its head layer if asked, resolve its structure and install its forward adapters."""
    spec = interface.Interface.from_dict(spec)
    model = construct(architecture, arguments, spec.convert)
    if replaced_head:
        interface.replace_layer(model, replaced_head["layer"], replaced_head["out_features"])
    spec.apply(model, architecture)
    return model


def from_meta(meta: CheckpointMeta) -> nn.Module:
    """The model a checkpoint's metadata describes (weights not loaded)."""
    return build(meta.architecture, meta.params, meta.interface, meta.replaced_head)


def first_forward(
    model: nn.Module | None,
    rebuild: Callable[[], nn.Module],
    feature_shape: tuple[int, ...],
    n_covariates: int,
    architecture: str,
    n: int = 2,
) -> object:
    """The output of `model` (on the CPU, weights loaded) on `n` dummy samples, or of a fresh CPU build when there is no
    such model or it fails; any failure of the fresh build is a StagewiseError naming the architecture and the
    exception."""

    def call(net: nn.Module) -> object:
        x = torch.zeros((n, *feature_shape))
        with torch.no_grad():
            return net.eval()(x) if not n_covariates else net.eval()(x, torch.zeros((n, n_covariates)))

    if model is not None:
        try:
            return call(model)
        except Exception:  # a buffer left on the meta device, say: try a fresh model before blaming the class
            pass
    try:
        return call(rebuild())
    except StagewiseError:
        raise
    except Exception as error:
        raise StagewiseError(
            f"model.architecture: {architecture}: the first forward pass on {n} samples of shape "
            f"{tuple(feature_shape)} "
            f"failed ({type(error).__name__}: {error})"
        ) from None
