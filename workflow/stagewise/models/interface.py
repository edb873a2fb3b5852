"""How stagewise sees a model it did not write: its blocks, head and covariate layers, and its inputs and outputs.

The keys of `model` besides `architecture`, `task` and `params` (config/README.md, "Your own model").
The structure is set on the instance as `block_names`, `head_name` and `covariate_layers` (what
the built-ins declare); input and output adapters are forward hooks on the model itself, so its
state_dict keys stay the user's own.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields

import torch
from torch import nn

from ..errors import StagewiseError
from ..metadata_checks import abbreviate

LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)  # head layers stagewise can rebuild with another output count
RETURNS = ("logits", "probabilities", "log_probabilities")


@dataclass(frozen=True)
class Interface:
    """The config's description of a model: sizes from the data, argument conversions, structure, output adapters."""

    from_data: dict | None = None
    convert: dict = field(default_factory=dict)
    blocks: list | None = None
    head: str | None = None
    covariate_layers: list | None = None
    output: int | str | None = None
    channels_first: bool | dict = False
    returns: str = "logits"

    @classmethod
    def from_dict(cls, spec: dict | None) -> Interface:
        """The interface from `model` config keys or checkpoint metadata (other keys ignored)."""
        spec = spec or {}
        return cls(**{f.name: spec[f.name] for f in fields(cls) if f.name in spec and spec[f.name] is not None})

    def to_dict(self) -> dict:
        """Plain values, as checkpoint metadata records them."""
        return asdict(self)

    def channels(self, side: str) -> bool:
        """Whether the model takes (`input`) or returns (`output`) sequences channels-first."""
        return bool(
            self.channels_first.get(side, False) if isinstance(self.channels_first, dict) else self.channels_first
        )

    def apply(self, model: nn.Module, architecture: str) -> None:
        """Resolve the structure onto `model` and install the forward adapters the config asks for."""
        modules = [name for name, _ in model.named_modules() if name]
        head = self.head or getattr(model, "head_name", None)
        blocks = (
            expand(self.blocks, modules, "model.blocks")
            if self.blocks is not None
            else getattr(model, "block_names", None)
        )
        if head is None or blocks is None:
            children = [name for name, child in model.named_children() if any(True for _ in child.parameters())]
            if head is None and not children:
                raise StagewiseError(
                    f"model.architecture: {architecture} has no child module with parameters to serve as the head; "
                    "name it in model.head"
                )
            head = head or children[-1]
            blocks = (
                blocks if blocks is not None else [c for c in children if c != head and not head.startswith(f"{c}.")]
            )
        layers = self.covariate_layers if self.covariate_layers is not None else getattr(model, "covariate_layers", [])
        where = "model.blocks/model.head (or the class's block_names/head_name)"
        for name in [*blocks, head]:
            if name not in modules:
                raise StagewiseError(
                    f"{where}: {architecture} has no submodule {name!r}; its modules: {abbreviate(modules)}"
                )
        for name in layers:
            if not isinstance(dict(model.named_modules()).get(name), nn.Linear):
                raise StagewiseError(
                    f"model.covariate_layers: {name!r} is not an nn.Linear submodule of {architecture}"
                )
        model.block_names, model.head_name, model.covariate_layers = list(blocks), head, list(layers)
        if self.returns not in RETURNS:
            raise StagewiseError(f"model.returns: {self.returns!r}; one of {list(RETURNS)}")
        if self.channels("input"):
            model.register_forward_pre_hook(_channels_first_input)
        if self.output is not None or self.channels("output") or self.returns == "probabilities":
            model.register_forward_hook(self._adapt_output)

    def _adapt_output(self, module: nn.Module, args: tuple, output: object) -> torch.Tensor:
        out = pick(output, self.output) if self.output is not None else output
        if self.channels("output") and isinstance(out, torch.Tensor) and out.dim() == 3:
            out = out.transpose(1, 2)
        if self.returns == "probabilities" and isinstance(out, torch.Tensor):
            out = out.clamp_min(torch.finfo(out.dtype).tiny).log()  # log-probabilities: softmax gives them back
        return out


def _channels_first_input(module: nn.Module, args: tuple) -> tuple | None:
    x, *rest = args
    return (x.transpose(1, 2), *rest) if isinstance(x, torch.Tensor) and x.dim() == 3 else None


def pick(output: object, key: int | str) -> object:
    """Element `key` of a tuple/list, dict or attribute-style output (as transformers' outputs)."""
    try:
        if isinstance(key, int) or not isinstance(key, str):
            return output[key]
        return output[key] if isinstance(output, Mapping) else getattr(output, key)
    except (IndexError, KeyError, AttributeError, TypeError):
        have = (
            list(output)
            if isinstance(output, Mapping)
            else (f"{len(output)} elements" if isinstance(output, (tuple, list)) else type(output).__name__)
        )
        raise StagewiseError(f"model.output: {key!r} is not in the model's output ({have})") from None


def expand(patterns: list[str], modules: list[str], key: str) -> list[str]:
    """Module names and globs (`units.*`: each unit, not their children) in model order; a pattern that matches
    nothing is an error."""
    out = []
    for pattern in patterns:
        found = [
            m
            for m in modules
            if m == pattern or (m.count(".") == pattern.count(".") and fnmatch.fnmatchcase(m, pattern))
        ]
        if not found:
            raise StagewiseError(f"{key}: {pattern!r} matches no submodule; modules: {abbreviate(modules)}")
        out += [m for m in found if m not in out]
    return out


def output_layer(model: nn.Module, name: str) -> str:
    """The layer that makes `name`'s outputs: `name` itself if it is a Linear or ConvNd, else the last one inside it."""
    module = model.get_submodule(name)
    if isinstance(module, LAYERS):
        return name
    inner = [f"{name}.{sub}" for sub, m in module.named_modules() if sub and isinstance(m, LAYERS)]
    if not inner:
        raise StagewiseError(
            f"pretrained.head.module: {name!r} ({type(module).__name__}) holds no Linear or Conv layer to give a "
            "new output count; name the output layer itself (model.head or pretrained.head.module)"
        )
    return inner[-1]


def replace_layer(model: nn.Module, name: str, out: int) -> None:
    """Replace the Linear/ConvNd `name` by a fresh layer of the same kind and settings with `out` outputs."""
    old = model.get_submodule(name)
    place = {"device": old.weight.device, "dtype": old.weight.dtype}
    if isinstance(old, nn.Linear):
        new = nn.Linear(old.in_features, out, bias=old.bias is not None, **place)
    elif isinstance(old, LAYERS):
        new = type(old)(
            old.in_channels,
            out,
            old.kernel_size,
            stride=old.stride,
            padding=old.padding,
            dilation=old.dilation,
            groups=old.groups,
            bias=old.bias is not None,
            padding_mode=old.padding_mode,
            **place,
        )
    else:
        raise StagewiseError(
            f"pretrained.head.module: {name!r} is a {type(old).__name__}; stagewise replaces Linear and Conv "
            f"layers only"
        )
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, new)
