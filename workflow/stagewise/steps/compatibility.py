"""check_compatibility: every mismatch between checkpoint, model config and data at once, then the start model."""

from __future__ import annotations

import torch
from torch import nn

from .. import checkpoints, metadata_checks, models, surgery
from ..config import derive_seed
from ..errors import StagewiseError
from ..files import sha256_json, write_json, write_text
from ..io import hdf5
from ..metadata_checks import Checks, first
from ..models import tasks


def _values(state: dict, names: list[str]) -> int:
    return sum(state[n].numel() for n in names)


def _build(checks: Checks, architecture: str, params: dict) -> nn.Module | None:
    """The new model on the meta device (shapes only, no memory)."""
    try:
        with torch.device("meta"):
            return models.build(architecture, params)
    except (StagewiseError, TypeError, ValueError) as error:
        checks.add("model", "error", f"model.params: cannot build {architecture} with {params}: {error}")
        return None


def _initial(model: nn.Module, architecture: str, params: dict, modules: list[str], seed: int) -> dict[str, torch.Tensor]:
    """Seeded fresh values of every tensor under `modules`, resetting each module alone when it can be."""
    fresh = {}
    for name in modules:
        sub = model.get_submodule(name)
        owners = [m for m in sub.modules() if any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False))]
        if all(hasattr(m, "reset_parameters") for m in owners):
            for m in owners:  # off the meta device (Module.to_empty would import sympy: ~1 s)
                for key, tensor in [*m.named_parameters(recurse=False), *m.named_buffers(recurse=False)]:
                    empty = torch.empty(tensor.shape, dtype=tensor.dtype)
                    setattr(m, key, nn.Parameter(empty, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else empty)
            torch.manual_seed(derive_seed(seed, "start", name))
            for m in owners:
                m.reset_parameters()
        else:  # a plug-in layer that initialises only in its constructor
            torch.manual_seed(derive_seed(seed, "start"))
            sub = models.build(architecture, params).get_submodule(name)
        fresh |= {f"{name}.{k}": v for k, v in sub.state_dict().items()}
    return fresh


def _match(checks: Checks, match: dict, source: dict, model: nn.Module) -> None:
    """Every `pretrained.match` key must name a checkpoint module, every value a model module."""
    modules = [n for n, _ in model.named_modules() if n]
    for old, new in match.items():
        if not any(surgery.under(key, old) for key in source):
            checks.add("match", "error", f"pretrained.match: {old!r} is not a module of the checkpoint; its modules: "
                       f"{first(sorted({k.rsplit('.', 1)[0] for k in source}))}")
        if new not in modules and new not in model.state_dict():
            checks.add("match", "error", f"pretrained.match: {old!r} -> {new!r}: the model has no module {new!r}; its modules: {first(modules)}")
    if match and not checks.failed():
        checks.add("match", "ok", f"checkpoint modules renamed: {match}")


def _culprits(checks: Checks, architecture: str, old: dict, params: dict, mismatched: list[str]) -> None:
    """Name each model param whose change from the checkpoint's alters the shape of a matched tensor."""
    derived = {k: params[k] for k in ("in_features", "out_features", "n_covariates") if k in params}
    base = _build(Checks(), architecture, {**old, **derived})
    if base is None:
        return
    before = base.state_dict()
    for key in sorted(k for k in params if k not in derived and old.get(k, object()) != params[k]):
        variant = _build(Checks(), architecture, {**old, **derived, key: params[key]})
        after = variant.state_dict() if variant is not None else {}
        broken = [t for t in mismatched if t in before and (t not in after or after[t].shape != before[t].shape)]
        if broken:
            checks.add("params", "error", f"model.params.{key}: {old.get(key, 'default')!r} in the checkpoint, {params[key]!r} now: "
                       f"changes the shape of {first(broken)}; set it back to reuse those tensors", param=key, tensors=broken)


def _transfer(checks: Checks, ckpt: checkpoints.Checkpoint, model: nn.Module, model_cfg: dict, params: dict,
              pretrained: dict, old_cats: dict, categories: dict, seed: int) -> tuple[dict, dict, dict]:
    """Map checkpoint tensors onto the model; the start state, the new columns and the parameter counts."""
    _match(checks, pretrained["match"], ckpt.state_dict, model)
    source = surgery.rename(ckpt.state_dict, pretrained["match"])
    blank = model.state_dict()  # meta tensors: names, shapes, dtypes
    target = {k: v.shape for k, v in blank.items()}
    head, modules = pretrained["head"], [n for n, _ in model.named_modules() if n]
    replaced = head["module"] if head and head["module"] in modules else None
    if head and replaced is None:
        checks.add("head", "error", f"pretrained.head.module: {head['module']!r} is not a module of the model; its modules: {first(modules)}")
    elif head:
        old = ckpt.meta.get("label_names")
        checks.add("head", "ok", f"{replaced!r} replaced by a new seeded init with {params['out_features']} outputs"
                   + (f" (was {len(old)}: {first(old)})" if old else ""))
    old_sizes, new_sizes = [len(old_cats[c]) for c in old_cats], [len(categories[c]) for c in old_cats]
    layers = getattr(model, "covariate_layers", [])
    if old_cats and not layers:
        checks.add("categories", "error", f"the checkpoint's model takes covariates {sorted(old_cats)} but {model_cfg['architecture']} "
                   "has no covariate_layers")
    widened = {}
    if new_sizes != old_sizes:
        for layer in layers:
            shape = target[f"{layer}.weight"]
            widened[f"{layer}.weight"] = (shape[0], shape[1] - sum(new_sizes) + sum(old_sizes), *shape[2:])
    moved = surgery.plan(target, source, replaced, widened)
    for key in moved.mismatched:
        checks.add("tensors", "error", f"module {key.rpartition('.')[0]!r}, tensor {key}: checkpoint shape {tuple(source[key].shape)}, "
                   f"new model shape {tuple(widened.get(key, target[key]))}", tensor=key)
    if moved.mismatched and ckpt.meta.get("params"):
        _culprits(checks, model_cfg["architecture"], ckpt.meta["params"], params, moved.mismatched)
    elif moved.mismatched:
        checks.add("params", "error", f"{len(moved.mismatched)} tensors differ in shape and the checkpoint records no model params: "
                   "set model.params to the ones it was trained with")
    if moved.missing:
        checks.add("tensors", "error", f"{len(moved.missing)} tensors of the new model have no counterpart in the checkpoint: "
                   f"{first(moved.missing, target)}; map their modules with pretrained.match {{checkpoint name: model name}} or "
                   "replace the final layer with pretrained.head (is this checkpoint for this architecture?)", tensors=moved.missing)
    stray = [k for k in moved.dropped if not (replaced and surgery.under(k, replaced))]
    counts = {"reused": _values(source, moved.reused), "widened": _values(source, moved.widened),
              "new": _values(blank, moved.new), "dropped": _values(source, moved.dropped),
              "tensors": {k: getattr(moved, k) for k in ("reused", "widened", "new", "dropped")}}
    checks.add("tensors", "warning" if stray else "ok",
               f"{len(moved.reused)} tensors matched ({counts['reused']} values), {len(moved.widened)} widened, {len(moved.new)} new "
               f"({counts['new']} values), {len(moved.dropped)} unmatched in the checkpoint ({counts['dropped']} values)"
               + (f": {first(stray)} not used by the new model" if stray else ""))
    if checks.failed():
        return {}, {}, counts
    fresh = _initial(model, model_cfg["architecture"], params, ([replaced] if replaced else []) + [k.rpartition(".")[0] for k in widened], seed)
    state, masks = {}, {}
    for key, shape in target.items():
        if key in moved.widened:
            state[key], masks[key] = surgery.widen(source[key], fresh[key], old_sizes, new_sizes)
        else:
            state[key] = fresh[key] if key in moved.new else source[key].to(blank[key].dtype)
    return state, masks, counts


def check(checkpoint_path: str, train_path: str, model_cfg: dict, pretrained: dict, seed: int) -> tuple[dict, checkpoints.Checkpoint | None]:
    """Run every check; return the report and the adapted start checkpoint (None when a check failed)."""
    ckpt = checkpoints.load(checkpoint_path)
    with hdf5.open_split(train_path) as h5:
        data = hdf5.layout(h5)
    checks, meta = Checks(), ckpt.meta
    checks.add("format", "ok", f"{ckpt.origin}: {len(ckpt.state_dict)} tensors")
    features, padded = metadata_checks.features(checks, meta, pretrained, data.feature_names)
    metadata_checks.locked(checks, meta, model_cfg, pretrained["locked"], checkpoint_path)
    per_label = tasks.get(model_cfg["task"]).output_per_label  # counts: labels only annotate samples
    out_features = metadata_checks.labels(checks, meta, pretrained["head"], data.label_names) if per_label else len(features)
    old_cats = metadata_checks.recorded_categories(checks, meta, pretrained["categories"])
    categories = metadata_checks.categories(checks, old_cats, pretrained["new_categories"], data.categories, train_path, "architecture" in meta)
    params = {**(meta.get("params") or {}), **model_cfg["params"], "in_features": len(features), "out_features": out_features}
    if categories:
        params["n_covariates"] = sum(len(c) for c in categories.values())
    model = _build(checks, model_cfg["architecture"], params)
    state, masks, counts = _transfer(checks, ckpt, model, model_cfg, params, pretrained, old_cats, categories, seed) if model else ({}, {}, {})
    head = pretrained["head"]
    mappings = {"match": pretrained["match"], "features": {"mode": pretrained["features"], "zero_filled": padded},
                "categories": categories, "head": head and {**head, "old_label_names": meta.get("label_names"), "new_label_names": data.label_names}}
    worst = "error" if checks.failed() else "warning" if any(c["status"] == "warning" for c in checks) else "ok"
    report = {"status": worst, "checkpoint": str(checkpoint_path), "format": ckpt.origin, "checks": list(checks),
              "mappings": mappings, "parameters": counts}
    if worst == "error":
        return report, None
    new = [n for n, _ in model.named_parameters() if n in set(counts["tensors"]["new"]) | set(masks)]
    start = {"architecture": model_cfg["architecture"], "params": params, "task": model_cfg["task"], "feature_names": features,
             "padded_features": padded, "label_names": data.label_names if head else meta.get("label_names", data.label_names),
             "new_parameters": new, "new_parameter_masks": masks}
    if categories:
        start["categories"] = categories
    if head:
        start["head"] = mappings["head"]
    return report, checkpoints.Checkpoint(state, start)


def render(report: dict) -> str:
    """The report as text for a person."""
    lines = [f"compatibility of {report['checkpoint']} ({report['format']}): {report['status'].upper()}"]
    lines += [f"  [{c['status']:>7}] {c['check']}: {c['message']}" for c in report["checks"]]
    if report["status"] == "error":
        lines.append("  no start model written: fix the errors above and run the check again")
    return "\n".join(lines) + "\n"


def run(inputs: dict, outputs: dict, params: dict) -> None:
    """Write start/model.pt, compatibility.json and .txt, or fail listing every problem and writing nothing."""
    report, start = check(inputs["checkpoint"], inputs["train"], params["model"], params["pretrained"], params["seed"])
    text = render(report)
    print(text, end="")
    if start is None:
        raise StagewiseError(text)
    config_sha256 = sha256_json({key: params[key] for key in ("model", "pretrained", "seed")})
    checkpoints.save(outputs["model"], start.state_dict,
                     start.meta | checkpoints.lineage(inputs["checkpoint"]) | {"config_sha256": config_sha256, "label": "start", "plugin": params.get("plugin")})
    write_json(outputs["json"], report)
    write_text(outputs["txt"], text)
