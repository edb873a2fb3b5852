"""Transfer: the checkpoint's tensors matched onto a new model's, widened for new categories, the rest fresh.

`transfer` renames the checkpoint's tensors (`pretrained.match`), plans each model tensor (reused,
widened, new or missing; `surgery.plan`), adds a finding for every problem to the `Checks`, and, when
none failed, returns the start state: reused tensors in the model's dtype, widened ones with their new
columns seeded (`new_parameter_masks`), new ones (a replaced head) at their seeded initial values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from . import checkpoints, models, surgery
from .config import derive_seed
from .errors import StagewiseError
from .metadata import CheckpointMeta
from .metadata_checks import SHOWN, Checks, abbreviate


@dataclass
class Target:
    """The new model to fill (on the meta device) and how it was built."""

    model: nn.Module
    meta: CheckpointMeta  # the start model's so far: architecture, params, categories, replaced_head
    config: dict  # the `model` config: architecture, interface
    derived: set[str]  # the params sized from the data


@dataclass
class Transfer:
    """What `transfer` made: the start state (empty when a check failed), the new columns, the counts."""

    state: dict[str, torch.Tensor] = field(default_factory=dict)
    masks: dict[str, list[list[int]]] = field(default_factory=dict)
    counts: dict = field(default_factory=dict)


def blank(
    checks: Checks, architecture: str, params: dict, spec: dict, replaced_head: dict | None = None
) -> nn.Module | None:
    """The new model on the meta device (shapes only, no memory); None, with the error in `checks`, when it fails."""
    try:
        with torch.device("meta"):
            return models.build(architecture, params, spec, replaced_head)
    except StagewiseError as error:
        checks.add("model", "error", str(error))
        return None


def transfer(
    checks: Checks, ckpt: checkpoints.Checkpoint, target: Target, match: dict, old_categories: dict, seed: int
) -> Transfer:
    """Map the checkpoint's tensors onto `target.model`: every finding in `checks`, the start state when none
    failed."""
    model = target.model
    _match(checks, match, ckpt.state_dict, model)
    source = surgery.rename(ckpt.state_dict, match)
    blank_state = model.state_dict()  # meta tensors: names, shapes, dtypes
    shapes = {k: v.shape for k, v in blank_state.items()}
    replaced = (target.meta.replaced_head or {}).get("layer")
    categories = target.meta.categories or {}
    old_sizes = [len(old_categories[c]) for c in old_categories]
    new_sizes = [len(categories[c]) for c in old_categories]
    widened = _widened(checks, target, shapes, old_categories, old_sizes, new_sizes)
    moved = surgery.plan(shapes, source, replaced, widened)
    _shape_findings(checks, ckpt, target, source, shapes, widened, moved)
    _values_usable(checks, source, blank_state, [*moved.reused, *moved.widened])
    counts = _counts(checks, source, blank_state, moved, replaced)
    if checks.failed():
        return Transfer(counts=counts)
    modules = ([replaced] if replaced else []) + [k.rpartition(".")[0] for k in widened]
    fresh = _initial(model, target.meta, modules, seed)
    result = Transfer(counts=counts)
    for key in shapes:
        if key in moved.widened:
            result.state[key], result.masks[key] = surgery.widen(source[key], fresh[key], old_sizes, new_sizes)
        else:
            result.state[key] = fresh[key] if key in moved.new else source[key].to(blank_state[key].dtype)
    return result


def _widened(
    checks: Checks, target: Target, shapes: dict, old_categories: dict, old_sizes: list[int], new_sizes: list[int]
) -> dict[str, tuple]:
    """The checkpoint shape of each covariate layer's weight that new categories widen."""
    layers = target.model.covariate_layers
    if old_categories and not layers:
        checks.add(
            "categories",
            "error",
            f"the checkpoint's model takes covariates {sorted(old_categories)} but {target.config['architecture']} "
            "has no covariate layers; name them in model.covariate_layers",
        )
    widened = {}
    if new_sizes != old_sizes:
        for layer in layers:
            shape = shapes[f"{layer}.weight"]
            widened[f"{layer}.weight"] = (shape[0], shape[1] - sum(new_sizes) + sum(old_sizes), *shape[2:])
    return widened


def _shape_findings(
    checks: Checks,
    ckpt: checkpoints.Checkpoint,
    target: Target,
    source: dict,
    shapes: dict,
    widened: dict,
    moved: surgery.Plan,
) -> None:
    """An error for each tensor whose shape differs (with the param that changed it) and for the missing ones."""
    for key in moved.mismatched:
        checks.add(
            "tensors",
            "error",
            f"module {key.rpartition('.')[0]!r}, tensor {key}: checkpoint shape {tuple(source[key].shape)}, "
            f"new model shape {tuple(widened.get(key, shapes[key]))}",
            tensor=key,
        )
    if moved.mismatched and ckpt.meta.params:
        _culprits(checks, target, ckpt.meta.params, moved.mismatched)
    elif moved.mismatched:
        checks.add(
            "params",
            "error",
            f"{len(moved.mismatched)} tensors differ in shape and the checkpoint records no model params: "
            "set model.params to the ones it was trained with",
        )
    if moved.missing:
        checks.add(
            "tensors",
            "error",
            f"{len(moved.missing)} tensors of the new model have no counterpart in the checkpoint: "
            f"{abbreviate(moved.missing, shapes)}; map their modules with pretrained.match "
            f"{{checkpoint name: model name}} or "
            "replace the final layer with pretrained.head (is this checkpoint for this architecture?)",
            tensors=moved.missing,
        )


def _counts(checks: Checks, source: dict, blank_state: dict, moved: surgery.Plan, replaced: str | None) -> dict:
    """Tensors and values reused, widened, new and dropped, with the finding that sums them up."""
    stray = [k for k in moved.dropped if not (replaced and surgery.under(k, replaced))]
    counts = {
        "reused": _values(source, moved.reused),
        "widened": _values(source, moved.widened),
        "new": _values(blank_state, moved.new),
        "dropped": _values(source, moved.dropped),
        "tensors": {k: getattr(moved, k) for k in ("reused", "widened", "new", "dropped")},
    }
    checks.add(
        "tensors",
        "warning" if stray else "ok",
        f"{len(moved.reused)} tensors matched ({counts['reused']} values), {len(moved.widened)} widened, "
        f"{len(moved.new)} new "
        f"({counts['new']} values), {len(moved.dropped)} unmatched in the checkpoint ({counts['dropped']} values)"
        + (f": {abbreviate(stray)} not used by the new model" if stray else ""),
    )
    return counts


def _values(state: dict, names: list[str]) -> int:
    return sum(state[n].numel() for n in names)


def _initial(model: nn.Module, meta: CheckpointMeta, modules: list[str], seed: int) -> dict[str, torch.Tensor]:
    """Seeded fresh values of every tensor under `modules`, resetting each module alone when it can be."""
    fresh = {}
    for name in modules:
        sub = model.get_submodule(name)
        owners = [
            m
            for m in sub.modules()
            if any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False))
        ]
        if all(hasattr(m, "reset_parameters") for m in owners):
            for m in owners:  # off the meta device (Module.to_empty would import sympy: ~1 s)
                for key, tensor in [*m.named_parameters(recurse=False), *m.named_buffers(recurse=False)]:
                    empty = torch.empty(tensor.shape, dtype=tensor.dtype)
                    setattr(
                        m, key, nn.Parameter(empty, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else empty
                    )
            torch.manual_seed(derive_seed(seed, "start", name))
            for m in owners:
                m.reset_parameters()
        else:  # a plug-in layer that initialises only in its constructor
            torch.manual_seed(derive_seed(seed, "start"))
            sub = models.from_meta(meta).get_submodule(name)
        fresh |= {f"{name}.{k}": v for k, v in sub.state_dict().items()}
    return fresh


def _match(checks: Checks, match: dict, source: dict, model: nn.Module) -> None:
    """Every `pretrained.match` key must name a checkpoint module, every value a model module."""
    modules = [n for n, _ in model.named_modules() if n]
    for old, new in match.items():
        if not any(surgery.under(key, old) for key in source):
            checks.add(
                "match",
                "error",
                f"pretrained.match: {old!r} is not a module of the checkpoint; its modules: "
                f"{abbreviate(sorted({k.rsplit('.', 1)[0] for k in source}))}",
            )
        if new not in modules and new not in model.state_dict():
            checks.add(
                "match",
                "error",
                f"pretrained.match: {old!r} -> {new!r}: the model has no module {new!r}; "
                f"its modules: {abbreviate(modules)}",
            )
    if match and not checks.failed():
        checks.add("match", "ok", f"checkpoint modules renamed: {match}")


def _culprits(checks: Checks, target: Target, old: dict, mismatched: list[str]) -> None:
    """Name each model param whose change from the checkpoint's alters the shape of a matched tensor."""
    arch, spec, params = target.config["architecture"], target.config, target.meta.params
    sizes = {k: params[k] for k in target.derived}
    base = blank(Checks(), arch, {**old, **sizes}, spec)
    if base is None:
        return
    before = base.state_dict()
    for key in sorted(k for k in params if k not in target.derived and old.get(k, object()) != params[k]):
        variant = blank(Checks(), arch, {**old, **sizes, key: params[key]}, spec)
        after = variant.state_dict() if variant is not None else {}
        broken = [t for t in mismatched if t in before and (t not in after or after[t].shape != before[t].shape)]
        if broken:
            checks.add(
                "params",
                "error",
                f"model.params.{key}: {old.get(key, 'default')!r} in the checkpoint, {params[key]!r} now: "
                f"changes the shape of {abbreviate(broken)}; set it back to reuse those tensors",
                param=key,
                tensors=broken,
            )


def _values_usable(checks: Checks, source: dict, blank_state: dict, keys: list[str]) -> None:
    """Reused tensors must be finite and of the model's kind of dtype (a float weight is not read from integers)."""
    kinds = [k for k in keys if source[k].is_floating_point() != blank_state[k].is_floating_point()]
    if kinds:
        checks.add(
            "tensors",
            "error",
            f"{len(kinds)} checkpoint tensors have another kind of dtype than the model's: "
            + ", ".join(f"{k} {source[k].dtype} (model: {blank_state[k].dtype})" for k in kinds[:SHOWN])
            + "; is this checkpoint for this architecture?",
            tensors=kinds,
        )
    broken = [k for k in keys if source[k].is_floating_point() and not bool(torch.isfinite(source[k]).all())]
    if broken:
        checks.add(
            "tensors",
            "error",
            f"{len(broken)} checkpoint tensors hold NaN or inf values: {abbreviate(broken)}; the checkpoint "
            "comes from a diverged or corrupted training run: use an earlier one",
            tensors=broken,
        )
