"""check_compatibility: every mismatch between checkpoint, model config and data at once, then the start model."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from .. import checkpoints, metadata_checks, models, surgery, tasks, transfer
from ..errors import StagewiseError
from ..files import sha256_json, write_json, write_text
from ..io import hdf5
from ..metadata import CheckpointMeta
from ..metadata_checks import Checks, abbreviate
from ..models import interface


@dataclass
class _Mapped:
    """What the metadata checks decided: the checkpoint's features, labels and categories against the data's."""

    features: list[str]
    padded: list[str]
    per_label: bool  # False for counts, whose labels only annotate samples
    head: dict | None
    old_labels: list[str] | None
    order: list[int] | None
    n_new: int | None
    n_out: int
    old_categories: dict
    categories: dict


def _mapped(
    checks: Checks,
    ckpt: checkpoints.Checkpoint,
    data: hdf5.Layout,
    model_cfg: dict,
    pretrained: dict,
    checkpoint_path: str,
    train_path: str,
) -> _Mapped:
    """Check the checkpoint's metadata against the config and the data; what the model and the transfer need."""
    meta = ckpt.meta
    features, padded = metadata_checks.features(
        checks, meta, pretrained, data.feature_names, len(data.feature_shape) == 1
    )
    metadata_checks.locked(checks, meta, model_cfg, pretrained["locked"], checkpoint_path)
    per_label = tasks.get(model_cfg["task"]).output_per_label
    head = pretrained["head"] if per_label else None
    old_labels, order = (
        metadata_checks.label_order(checks, meta, pretrained, data.label_names) if per_label else (None, None)
    )
    n_new = metadata_checks.head_outputs(checks, head, data.label_names) if head else None
    n_out = (n_new or len(data.label_names)) if per_label else len(features)
    old_cats = metadata_checks.recorded_categories(checks, meta, pretrained["categories"])
    categories = metadata_checks.categories(
        checks, old_cats, pretrained["new_categories"], data.categories, train_path, meta.architecture is not None
    )
    return _Mapped(features, padded, per_label, head, old_labels, order, n_new, n_out, old_cats, categories)


def _model(
    checks: Checks,
    ckpt: checkpoints.Checkpoint,
    model_cfg: dict,
    pretrained: dict,
    sizes: dict,
    n_new: int | None,
    start: CheckpointMeta,
) -> transfer.Target | None:
    """The model built as the checkpoint was, its head layer replaced when `n_new` is given; fills `start`'s model
    keys."""
    arch = model_cfg["architecture"]
    try:
        names = models.size_map(arch, model_cfg.get("from_data"), bool(sizes["n_covariates"]))
    except StagewiseError as error:
        checks.add("model", "error", str(error))
        return None
    params = {**(ckpt.meta.params or {}), **model_cfg["params"], **{a: sizes[n] for a, n in names.items()}}
    start.update(architecture=arch, params=params, interface=interface.Interface.from_dict(model_cfg).to_dict())
    model = transfer.blank(checks, arch, params, model_cfg)
    if model is not None and n_new is not None:
        try:
            layer = interface.output_layer(model, _head_module(model, pretrained["head"]["module"]))
        except StagewiseError as error:  # the other checks go on with the head as it is
            checks.add("head", "error", str(error))
            return transfer.Target(model, start, model_cfg, set(names))
        recorded = surgery.rename(ckpt.state_dict, pretrained["match"]).get(f"{layer}.weight")
        old_out = model.get_submodule(layer).weight.shape[0]
        outputs = [a for a, n in names.items() if n in ("n_outputs", "n_labels")]
        if recorded is not None and recorded.shape[0] != old_out and outputs:  # built as the checkpoint was
            old_out = recorded.shape[0]
            params |= dict.fromkeys(outputs, old_out)  # the same dict as start.params
            model = transfer.blank(checks, arch, params, model_cfg)
            if model is None:
                return None
        start.update(replaced_head={"layer": layer, "out_features": n_new})
        interface.replace_layer(model, layer, n_new)
        checks.add(
            "head",
            "ok",
            f"{layer!r} ({old_out} outputs) replaced by a new seeded {type(model.get_submodule(layer)).__name__} "
            f"with {n_new} outputs",
        )
    return transfer.Target(model, start, model_cfg, set(names)) if model is not None else None


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
    checks: Checks,
    model: nn.Module | None,
    start: CheckpointMeta,
    data: hdf5.Layout,
    n_out: int,
    n_covariates: int,
    task: str,
) -> None:
    """The first forward pass on dummy samples shaped like the data must give what the task needs."""
    try:
        torch.manual_seed(0)
        shape = (len(start.feature_names), *data.feature_shape[1:])  # the checkpoint's features, padded or reordered
        if len(start.feature_names) == len(
            data.feature_names
        ):  # one name per value (sequences, images): the data's shape
            shape = tuple(data.feature_shape)
        output = models.first_forward(model, lambda: models.from_meta(start), shape, n_covariates, start.architecture)
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
    checks = Checks()
    checks.add("format", "ok", f"{ckpt.origin}: {len(ckpt.state_dict)} tensors")
    mapped = _mapped(checks, ckpt, data, model_cfg, pretrained, checkpoint_path, train_path)
    start = CheckpointMeta(feature_names=mapped.features, categories=mapped.categories or None)
    sizes = models.data_sizes(
        data.feature_shape,
        len(mapped.features),
        len(mapped.old_labels) if mapped.old_labels and mapped.head else mapped.n_out,
        sum(len(c) for c in mapped.categories.values()),
        None if mapped.per_label else len(data.label_names),
    )
    target = _model(checks, ckpt, model_cfg, pretrained, sizes, mapped.n_new, start)
    moved = (
        transfer.transfer(checks, ckpt, target, pretrained["match"], mapped.old_categories, seed)
        if target
        else transfer.Transfer()
    )
    model, state = target and target.model, moved.state
    if state and mapped.order and mapped.order != sorted(mapped.order):
        _reorder(checks, model, state, mapped.order)
    if state:
        model.load_state_dict(state, assign=True)  # the checkpoint's tensors themselves (memory-mapped), not copies
    if start.architecture is not None and not any(c["check"] == "model" and c["status"] == "error" for c in checks):
        n_covariates = sizes["n_covariates"]
        _outputs(checks, model if state else None, start, data, mapped.n_out, n_covariates, model_cfg["task"])
    report = _report(checks, ckpt, checkpoint_path, pretrained, mapped, data.label_names, moved.counts)
    if report["status"] == "error":
        return report, None
    new = [n for n, _ in model.named_parameters() if n in set(moved.counts["tensors"]["new"]) | set(moved.masks)]
    recorded = ckpt.meta.label_names
    start.update(
        task=model_cfg["task"],
        feature_names=mapped.features,
        padded_features=mapped.padded,
        label_names=data.label_names if mapped.per_label or recorded is None else recorded,
        new_parameters=new,
        new_parameter_masks=moved.masks,
    )
    if mapped.head:
        start.update(head=report["mappings"]["head"])
    return report, checkpoints.Checkpoint(state, start)


def _report(
    checks: Checks,
    ckpt: checkpoints.Checkpoint,
    checkpoint_path: str,
    pretrained: dict,
    mapped: _Mapped,
    label_names: list[str],
    counts: dict,
) -> dict:
    """compatibility.json: the worst status, every finding, the mappings applied and the values moved."""
    head, old_labels = mapped.head, mapped.old_labels
    mappings = {
        "match": pretrained["match"],
        "features": {"mode": pretrained["features"], "zero_filled": mapped.padded},
        "categories": mapped.categories,
        "head": head and {**head, "old_label_names": old_labels, "new_label_names": label_names},
        "labels": {"old": old_labels, "order": mapped.order} if mapped.order else None,
    }
    worst = "error" if checks.failed() else "warning" if any(c["status"] == "warning" for c in checks) else "ok"
    return {
        "status": worst,
        "checkpoint": str(checkpoint_path),
        "format": ckpt.origin,
        "checks": list(checks),
        "mappings": mappings,
        "parameters": counts,
    }


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
        start.meta.replace(
            **checkpoints.lineage(inputs["checkpoint"]),
            config_sha256=config_sha256,
            label="start",
            plugin=params.get("plugin"),
        ),
    )
    write_json(outputs["json"], report)
    write_text(outputs["txt"], text)
