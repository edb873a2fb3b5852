"""check_compatibility: every mismatch between checkpoint, model config and data, then the start model."""

from __future__ import annotations

from .. import checkpoints, models, surgery
from ..config import derive_seed
from ..errors import StagewiseError
from ..files import sha256_file, write_json, write_text
from ..io import hdf5
from ..training import seed_everything


def check(checkpoint_path: str, train_path: str, model_cfg: dict, pretrained: dict, seed: int) -> tuple[dict, checkpoints.Checkpoint | None]:
    """Run every check; return the report and the adapted start checkpoint (None when a check failed)."""
    ckpt = checkpoints.load(checkpoint_path)
    meta = ckpt.meta
    features, labels = hdf5.read_names(train_path)
    checks: list[dict] = []

    def add(name: str, status: str, message: str, **details) -> None:
        checks.append({"check": name, "status": status, "message": message, **details})

    old_features = meta.get("feature_names") or features
    diff = surgery.feature_diff(old_features, features)
    if not any(diff.values()):
        add("features", "ok", f"{len(features)} features, same names in the same order")
    elif diff["missing"] or diff["extra"] or pretrained["features"] == "strict":
        parts = [f"{len(v)} {k.replace('_', '-')} (first: {v[:5]})" for k, v in diff.items() if v]
        add("features", "error", f"features differ from the checkpoint's: {'; '.join(parts)}"
            + ("; set pretrained.features: reorder to permute the data" if not diff["missing"] and not diff["extra"] else ""), **diff)
    else:
        add("features", "warning", f"{len(diff['out_of_order'])} features out of order; data columns are permuted to the checkpoint's order", **diff)

    architecture = meta.get("architecture", model_cfg["architecture"])
    if architecture != model_cfg["architecture"]:
        add("architecture", "error", f"model.architecture is {model_cfg['architecture']!r} but the checkpoint holds {architecture!r}")
    old_params = meta.get("params", {})
    for key in pretrained["locked"]:
        if key not in old_params:
            add("locked", "error", f"pretrained.locked: {key!r} is not recorded in {checkpoint_path} (a plain state_dict has no metadata to check against)")
        elif model_cfg["params"].get(key, old_params[key]) != old_params[key]:
            add("locked", "error", f"pretrained.locked: model.params.{key} is {model_cfg['params'][key]!r} but the checkpoint was trained with {old_params[key]!r}")

    head = pretrained["head"]
    old_labels = meta.get("label_names", labels)
    out_features = (head["out_features"] or len(labels)) if head else len(old_labels)
    if head is None and old_labels != labels:
        add("labels", "error", f"target labels {labels[:10]} differ from the checkpoint's {old_labels[:10]}; set pretrained.head to replace the final layer")
    params = {**old_params, **model_cfg["params"], "in_features": len(old_features), "out_features": out_features}
    seed_everything(derive_seed(seed, "start"))
    try:
        model = models.build(model_cfg["architecture"], params)
    except StagewiseError as error:
        add("model", "error", str(error))
        return _report(checks, checkpoint_path), None
    if head and head["module"] != model.head_name and head["module"] not in dict(model.named_modules()):
        add("head", "error", f"pretrained.head.module: {head['module']!r} is not a module of the model")
        head = None
    moved = surgery.transfer(model, surgery.rename(ckpt.state_dict, pretrained["match"]), head["module"] if head else None)
    for error in moved.errors:
        add("tensors", "error", error)
    if head:
        add("head", "ok", f"head {head['module']!r} replaced: {len(old_labels)} -> {out_features} outputs",
            old_labels=old_labels, new_labels=labels)
    count = {k: sum(ckpt.state_dict[n].numel() if n in ckpt.state_dict else moved.state_dict[n].numel() for n in names)
             for k, names in (("reused", moved.reused), ("new", moved.new))}
    add("tensors", "ok" if not moved.errors else "error",
        f"{len(moved.reused)} tensors reused ({count['reused']} values), {len(moved.new)} new ({count['new']} values), {len(moved.dropped)} dropped",
        reused=moved.reused, new=moved.new, dropped=moved.dropped, match=pretrained["match"])
    report = _report(checks, checkpoint_path)
    if report["status"] == "error":
        return report, None
    new_meta = {"architecture": model_cfg["architecture"], "params": params, "task": model_cfg["task"],
                "feature_names": old_features, "label_names": labels if head else old_labels,
                "new_parameters": [n for n, _ in model.named_parameters() if n in set(moved.new)],
                "parent": checkpoint_path, "parent_sha256": sha256_file(checkpoint_path)}
    return report, checkpoints.Checkpoint(moved.state_dict, new_meta)


def _report(checks: list[dict], checkpoint_path: str) -> dict:
    worst = "error" if any(c["status"] == "error" for c in checks) else "warning" if any(c["status"] == "warning" for c in checks) else "ok"
    return {"status": worst, "checkpoint": checkpoint_path, "checks": checks}


def render(report: dict) -> str:
    """The report as text for a person."""
    lines = [f"compatibility of {report['checkpoint']}: {report['status'].upper()}"]
    lines += [f"  [{c['status']:>7}] {c['check']}: {c['message']}" for c in report["checks"]]
    return "\n".join(lines) + "\n"


def run(inputs: dict, outputs: dict, params: dict) -> None:
    """Write compatibility.json/.txt and start/model.pt, or fail listing every problem."""
    report, start = check(inputs["checkpoint"], inputs["train"], params["model"], params["pretrained"], params["seed"])
    text = render(report)
    if start is None:
        raise StagewiseError(text)
    write_json(outputs["json"], report)
    write_text(outputs["txt"], text)
    checkpoints.save(outputs["model"], start.state_dict, start.meta)
