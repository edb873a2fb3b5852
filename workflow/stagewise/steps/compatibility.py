"""check_compatibility: every mismatch between checkpoint, model config and data at once, then the start model."""

from __future__ import annotations

import logging

import torch
from torch import nn

from .. import checkpoints, metadata_checks, models, surgery, tasks
from ..config import derive_seed
from ..errors import StagewiseError
from ..files import sha256_json, write_json, write_text
from ..io import hdf5
from ..metadata_checks import SHOWN, Checks, abbreviate
from ..models import interface


def _values(state: dict, names: list[str]) -> int:
    return sum(state[n].numel() for n in names)


def _build(
    checks: Checks, architecture: str, params: dict, spec: dict, replaced_head: dict | None = None
) -> nn.Module | None:
    """The new model on the meta device (shapes only, no memory)."""
    try:
        with torch.device("meta"):
            return models.build(architecture, params, spec, replaced_head)
    except StagewiseError as error:
        checks.add("model", "error", str(error))
        return None


def _initial(model: nn.Module, meta: dict, modules: list[str], seed: int) -> dict[str, torch.Tensor]:
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


def _culprits(
    checks: Checks, model_cfg: dict, old: dict, params: dict, derived: set[str], mismatched: list[str]
) -> None:
    """Name each model param whose change from the checkpoint's alters the shape of a matched tensor."""
    arch, spec, sizes = model_cfg["architecture"], model_cfg, {k: params[k] for k in derived}
    base = _build(Checks(), arch, {**old, **sizes}, spec)
    if base is None:
        return
    before = base.state_dict()
    for key in sorted(k for k in params if k not in derived and old.get(k, object()) != params[k]):
        variant = _build(Checks(), arch, {**old, **sizes, key: params[key]}, spec)
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


def _values_usable(checks: Checks, source: dict, blank: dict, keys: list[str]) -> None:
    """Reused tensors must be finite and of the model's kind of dtype (a float weight is not read from integers)."""
    kinds = [k for k in keys if source[k].is_floating_point() != blank[k].is_floating_point()]
    if kinds:
        checks.add(
            "tensors",
            "error",
            f"{len(kinds)} checkpoint tensors have another kind of dtype than the model's: "
            + ", ".join(f"{k} {source[k].dtype} (model: {blank[k].dtype})" for k in kinds[:SHOWN])
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


def _transfer(
    checks: Checks,
    ckpt: checkpoints.Checkpoint,
    model: nn.Module,
    start: dict,
    derived: set[str],
    model_cfg: dict,
    pretrained: dict,
    old_cats: dict,
    seed: int,
) -> tuple[dict, dict, dict]:
    """Map checkpoint tensors onto the model; the start state, the new columns and the parameter counts."""
    _match(checks, pretrained["match"], ckpt.state_dict, model)
    source = surgery.rename(ckpt.state_dict, pretrained["match"])
    blank = model.state_dict()  # meta tensors: names, shapes, dtypes
    target = {k: v.shape for k, v in blank.items()}
    replaced = (start.get("replaced_head") or {}).get("layer")
    categories = start.get("categories", {})
    old_sizes, new_sizes = [len(old_cats[c]) for c in old_cats], [len(categories[c]) for c in old_cats]
    layers = model.covariate_layers
    if old_cats and not layers:
        checks.add(
            "categories",
            "error",
            f"the checkpoint's model takes covariates {sorted(old_cats)} but {model_cfg['architecture']} "
            "has no covariate layers; name them in model.covariate_layers",
        )
    widened = {}
    if new_sizes != old_sizes:
        for layer in layers:
            shape = target[f"{layer}.weight"]
            widened[f"{layer}.weight"] = (shape[0], shape[1] - sum(new_sizes) + sum(old_sizes), *shape[2:])
    moved = surgery.plan(target, source, replaced, widened)
    for key in moved.mismatched:
        checks.add(
            "tensors",
            "error",
            f"module {key.rpartition('.')[0]!r}, tensor {key}: checkpoint shape {tuple(source[key].shape)}, "
            f"new model shape {tuple(widened.get(key, target[key]))}",
            tensor=key,
        )
    if moved.mismatched and ckpt.meta.get("params"):
        _culprits(checks, model_cfg, ckpt.meta["params"], start["params"], derived, moved.mismatched)
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
            f"{abbreviate(moved.missing, target)}; map their modules with pretrained.match "
            f"{{checkpoint name: model name}} or "
            "replace the final layer with pretrained.head (is this checkpoint for this architecture?)",
            tensors=moved.missing,
        )
    _values_usable(checks, source, blank, [*moved.reused, *moved.widened])
    stray = [k for k in moved.dropped if not (replaced and surgery.under(k, replaced))]
    counts = {
        "reused": _values(source, moved.reused),
        "widened": _values(source, moved.widened),
        "new": _values(blank, moved.new),
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
    if checks.failed():
        return {}, {}, counts
    fresh = _initial(model, start, ([replaced] if replaced else []) + [k.rpartition(".")[0] for k in widened], seed)
    state, masks = {}, {}
    for key in target:
        if key in moved.widened:
            state[key], masks[key] = surgery.widen(source[key], fresh[key], old_sizes, new_sizes)
        else:
            state[key] = fresh[key] if key in moved.new else source[key].to(blank[key].dtype)
    return state, masks, counts


def _model(
    checks: Checks,
    ckpt: checkpoints.Checkpoint,
    model_cfg: dict,
    pretrained: dict,
    sizes: dict,
    n_new: int | None,
    start: dict,
) -> tuple[nn.Module | None, set[str]]:
    """The model built as the checkpoint was, its head layer replaced when `n_new` is given; fills `start`'s model
    keys."""
    arch = model_cfg["architecture"]
    try:
        names = models.size_map(arch, model_cfg.get("from_data"), bool(sizes["n_covariates"]))
    except StagewiseError as error:
        checks.add("model", "error", str(error))
        return None, set()
    params = {**(ckpt.meta.get("params") or {}), **model_cfg["params"], **{a: sizes[n] for a, n in names.items()}}
    start |= {"architecture": arch, "params": params, "interface": interface.Interface.from_dict(model_cfg).to_dict()}
    model = _build(checks, arch, params, model_cfg)
    if model is not None and n_new is not None:
        try:
            layer = interface.output_layer(model, _head_module(model, pretrained["head"]["module"]))
        except StagewiseError as error:  # the other checks go on with the head as it is
            checks.add("head", "error", str(error))
            return model, set(names)
        recorded = surgery.rename(ckpt.state_dict, pretrained["match"]).get(f"{layer}.weight")
        old_out = model.get_submodule(layer).weight.shape[0]
        outputs = [a for a, n in names.items() if n in ("n_outputs", "n_labels")]
        if recorded is not None and recorded.shape[0] != old_out and outputs:  # built as the checkpoint was
            old_out = recorded.shape[0]
            params |= dict.fromkeys(outputs, old_out)  # the same dict as start["params"]
            model = _build(checks, arch, params, model_cfg)
            if model is None:
                return None, set(names)
        start["replaced_head"] = {"layer": layer, "out_features": n_new}
        interface.replace_layer(model, layer, n_new)
        checks.add(
            "head",
            "ok",
            f"{layer!r} ({old_out} outputs) replaced by a new seeded {type(model.get_submodule(layer)).__name__} "
            f"with {n_new} outputs",
        )
    return model, set(names)


def _head_module(model: nn.Module, name: str | None) -> str:
    modules = [n for n, _ in model.named_modules() if n]
    if name is not None and name not in modules:
        raise StagewiseError(
            f"pretrained.head.module: {name!r} is not a module of the model; its modules: {abbreviate(modules)}"
        )
    return name or model.head_name


def _reorder(checks: Checks, model: nn.Module, state: dict, order: list[int]) -> None:
    """Permute the rows of the head's output layer so that output i is the target's label i."""
    layer = interface.output_layer(model, model.head_name)
    for key in (f"{layer}.weight", f"{layer}.bias"):
        if key in state and state[key].shape[0] != len(order):
            checks.add(
                "labels",
                "error",
                f"cannot reorder the head: {key} has {state[key].shape[0]} rows for {len(order)} labels; "
                "replace the head with pretrained.head",
            )
        elif key in state:
            state[key] = state[key][order]


def _outputs(
    checks: Checks, model: nn.Module | None, start: dict, data: hdf5.Layout, n_out: int, n_covariates: int, task: str
) -> None:
    """The first forward pass on dummy samples shaped like the data must give what the task needs."""
    try:
        torch.manual_seed(0)
        shape = (len(start["feature_names"]), *data.feature_shape[1:])  # the checkpoint's features, padded or reordered
        if len(start["feature_names"]) == len(
            data.feature_names
        ):  # one name per value (sequences, images): the data's shape
            shape = tuple(data.feature_shape)
        output = models.first_forward(
            model, lambda: models.from_meta(start), shape, n_covariates, start["architecture"]
        )
    except StagewiseError as error:
        checks.add("model", "error", str(error))
        return
    problem = tasks.get(task).output_problem(output, n_out, data.label_shape)
    if problem:
        checks.add(
            "model",
            "error",
            f"model output: {problem} (model.output, model.channels_first, model.returns say how to read it)",
        )


def check(
    checkpoint_path: str, train_path: str, model_cfg: dict, pretrained: dict, seed: int
) -> tuple[dict, checkpoints.Checkpoint | None]:
    """Run every check; return the report and the adapted start checkpoint (None when a check failed)."""
    ckpt = checkpoints.load(checkpoint_path)
    with hdf5.open_split(train_path) as h5:
        data = hdf5.layout(h5)
    checks, meta = Checks(), ckpt.meta
    checks.add("format", "ok", f"{ckpt.origin}: {len(ckpt.state_dict)} tensors")
    features, padded = metadata_checks.features(
        checks, meta, pretrained, data.feature_names, len(data.feature_shape) == 1
    )
    metadata_checks.locked(checks, meta, model_cfg, pretrained["locked"], checkpoint_path)
    per_label = tasks.get(model_cfg["task"]).output_per_label  # counts: labels only annotate samples
    head = pretrained["head"] if per_label else None
    old_labels, order = (
        metadata_checks.label_order(checks, meta, pretrained, data.label_names) if per_label else (None, None)
    )
    n_new = metadata_checks.head_outputs(checks, head, data.label_names) if head else None
    n_out = (n_new or len(data.label_names)) if per_label else len(features)
    old_cats = metadata_checks.recorded_categories(checks, meta, pretrained["categories"])
    categories = metadata_checks.categories(
        checks, old_cats, pretrained["new_categories"], data.categories, train_path, "architecture" in meta
    )
    start = {"feature_names": features} | ({"categories": categories} if categories else {})
    sizes = models.data_sizes(
        data.feature_shape,
        len(features),
        len(old_labels) if old_labels and head else n_out,
        sum(len(c) for c in categories.values()),
        None if per_label else len(data.label_names),
    )
    model, derived = _model(checks, ckpt, model_cfg, pretrained, sizes, n_new, start)
    state, masks, counts = (
        _transfer(checks, ckpt, model, start, derived, model_cfg, pretrained, old_cats, seed) if model else ({}, {}, {})
    )
    if state and order and order != sorted(order):
        _reorder(checks, model, state, order)
    if state:
        model.load_state_dict(state, assign=True)  # the checkpoint's tensors themselves (memory-mapped), not copies
    if "architecture" in start and not any(c["check"] == "model" and c["status"] == "error" for c in checks):
        _outputs(checks, model if state else None, start, data, n_out, sizes["n_covariates"], model_cfg["task"])
    mappings = {
        "match": pretrained["match"],
        "features": {"mode": pretrained["features"], "zero_filled": padded},
        "categories": categories,
        "head": head and {**head, "old_label_names": old_labels, "new_label_names": data.label_names},
        "labels": {"old": old_labels, "order": order} if order else None,
    }
    worst = "error" if checks.failed() else "warning" if any(c["status"] == "warning" for c in checks) else "ok"
    report = {
        "status": worst,
        "checkpoint": str(checkpoint_path),
        "format": ckpt.origin,
        "checks": list(checks),
        "mappings": mappings,
        "parameters": counts,
    }
    if worst == "error":
        return report, None
    new = [n for n, _ in model.named_parameters() if n in set(counts["tensors"]["new"]) | set(masks)]
    start |= {
        "task": model_cfg["task"],
        "feature_names": features,
        "padded_features": padded,
        "label_names": data.label_names if per_label else meta.get("label_names", data.label_names),
        "new_parameters": new,
        "new_parameter_masks": masks,
    }
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
    for finding in report["checks"]:
        if finding["status"] == "warning":
            logging.getLogger("stagewise").warning(f"check_compatibility: {finding['check']}: {finding['message']}")
    if start is None:
        raise StagewiseError(text)
    config_sha256 = sha256_json({key: params[key] for key in ("model", "pretrained", "seed")})
    checkpoints.save(
        outputs["model"],
        start.state_dict,
        start.meta
        | checkpoints.lineage(inputs["checkpoint"])
        | {"config_sha256": config_sha256, "label": "start", "plugin": params.get("plugin")},
    )
    write_json(outputs["json"], report)
    write_text(outputs["txt"], text)
