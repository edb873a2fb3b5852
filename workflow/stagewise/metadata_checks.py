"""Checks of a checkpoint's metadata against the model config and the target data.

Each function adds its findings (ok, warning or error, with a message that names the key and says
what to do) to a `Checks` list and returns what the transfer needs; none stops at the first problem.
"""

from __future__ import annotations

from pathlib import Path

from .metadata import CheckpointMeta

SHOWN = 5  # names listed per problem


class Checks(list):
    """The findings so far, each `{check, status: ok|warning|error, message, ...details}`."""

    def add(self, check: str, status: str, message: str, **details) -> None:
        self.append({"check": check, "status": status, "message": message, **details})

    def failed(self) -> bool:
        return any(c["status"] == "error" for c in self)


def feature_diff(expected: list[str], found: list[str]) -> dict:
    """Missing, extra and out-of-order features of `found` against the checkpoint's `expected`."""
    expected_set, found_set = set(expected), set(found)
    common = [f for f in found if f in expected_set]
    in_order = [f for f in expected if f in found_set]
    return {
        "missing": [f for f in expected if f not in found_set],
        "extra": [f for f in found if f not in expected_set],
        "out_of_order": [a for a, b in zip(common, in_order) if a != b],
    }


def abbreviate(names: list, shapes: dict | None = None) -> str:
    """The first few names (with their shapes when given) and how many more, for a message."""
    shown = [f"{n} {tuple(shapes[n])}" if shapes else str(n) for n in names[:SHOWN]]
    return ", ".join(shown) + (f", ... ({len(names) - SHOWN} more)" if len(names) > SHOWN else "")


def features(
    checks: Checks, meta: CheckpointMeta, pretrained: dict, found: list[str], tabular: bool = True
) -> tuple[list[str], list[str]]:
    """The checkpoint's feature names and the ones to zero-fill, checked against the data's (`tabular` False:
    sequences or
    images, whose features are positions, need no names)."""
    recorded, listed = meta.feature_names, None
    if pretrained["feature_names"]:
        failed = checks.failed()
        listed = _listed(checks, "features", "feature_names", pretrained["feature_names"], recorded, "feature name")
        if listed is None or (checks.failed() and not failed):
            return found, []
    expected = recorded or listed
    if expected is None and not tabular:
        checks.add("features", "ok", f"{len(found)} positions or pixels of shaped inputs, taken in the data's order")
        return found, []
    if expected is None:
        checks.add(
            "features",
            "error",
            f"the checkpoint records no feature names, so nothing tells whether the data's {len(found)} features "
            "are its inputs in the same order; give pretrained.feature_names: FILE (one name a line, in the order "
            "of the model's inputs, e.g. the columns it was trained on)",
        )
        return found, []
    diff, mode = feature_diff(expected, found), pretrained["features"]
    counts = "; ".join(f"{len(v)} {k.replace('_', '-')} (first: {abbreviate(v)})" for k, v in diff.items() if v)
    if not any(diff.values()):
        checks.add("features", "ok", f"{len(found)} features, same names in the same order")
    elif len(diff["missing"]) == len(expected):
        checks.add(
            "features",
            "error",
            f"no feature of the data is one the checkpoint expects ({counts}); is this the right data?",
            **diff,
        )
    elif mode == "strict" or (mode == "reorder" and (diff["missing"] or diff["extra"])):
        hint = (
            "set pretrained.features: pad to zero-fill missing and drop extra features"
            if diff["missing"] or diff["extra"]
            else "set pretrained.features: reorder to permute the data to the checkpoint's order"
        )
        checks.add(
            "features",
            "error",
            f"pretrained.features: {mode}: the data's features differ from the checkpoint's: {counts}; {hint}",
            **diff,
        )
    else:
        done = [
            f"{len(diff['missing'])} zero-filled" if diff["missing"] else "",
            f"{len(diff['extra'])} dropped" if diff["extra"] else "",
            "columns permuted to the checkpoint's order" if diff["out_of_order"] else "",
        ]
        checks.add(
            "features", "warning", f"pretrained.features: {mode}: {counts}; {', '.join(d for d in done if d)}", **diff
        )
    return expected, diff["missing"]


def locked(checks: Checks, meta: CheckpointMeta, model_cfg: dict, locked: list[str], path: str) -> None:
    """Architecture and the `pretrained.locked` params must equal what the checkpoint records."""
    recorded = meta.architecture
    if recorded and recorded != model_cfg["architecture"]:
        checks.add(
            "architecture",
            "error",
            f"model.architecture is {model_cfg['architecture']!r} but {path} holds a {recorded!r} model",
        )
    old = meta.params or meta.hyper_parameters or {}
    for key in locked:
        if not old:
            checks.add(
                "locked",
                "error",
                f"pretrained.locked: {key!r} cannot be checked: {path} is a plain state_dict with no "
                "recorded params; remove it from pretrained.locked or use a checkpoint that records them",
            )
        elif key not in old:
            checks.add(
                "locked", "error", f"pretrained.locked: {key!r} is not recorded in {path} (recorded: {sorted(old)})"
            )
        elif model_cfg["params"].get(key, old[key]) != old[key]:
            checks.add(
                "locked",
                "error",
                f"pretrained.locked: model.params.{key} is {model_cfg['params'][key]!r} but the "
                f"checkpoint was trained with {old[key]!r}; set it back or unlock it",
            )
        else:
            checks.add("locked", "ok", f"model.params.{key} = {old[key]!r}, as in the checkpoint")


def _listed(checks: Checks, check: str, key: str, path: str, recorded: list[str] | None, what: str) -> list[str] | None:
    """Names from a one-a-line file (`pretrained.<key>`), checked against those the checkpoint records."""
    file = Path(path)
    if not file.is_file():
        checks.add(check, "error", f"pretrained.{key}: file {file} not found (one {what} a line)")
        return None
    listed = [line.strip() for line in file.read_text().splitlines() if line.strip()]
    if recorded and recorded != listed:
        checks.add(
            check,
            "error",
            f"pretrained.{key}: {file} disagrees with the {len(recorded)} names recorded in the checkpoint "
            f"({abbreviate(recorded)}); remove pretrained.{key}",
        )
    if len(set(listed)) != len(listed):
        checks.add(check, "error", f"pretrained.{key}: {file} lists a name twice")
    return listed


def head_outputs(checks: Checks, head: dict, labels: list[str]) -> int:
    """The output count of a replaced head: `pretrained.head.out_features`, else one per target label."""
    out = head["out_features"] or len(labels)
    if out < len(labels):
        checks.add("head", "error", f"pretrained.head.out_features is {out} but the target has {len(labels)} labels")
    return out


def label_order(
    checks: Checks, meta: CheckpointMeta, pretrained: dict, labels: list[str]
) -> tuple[list[str] | None, list[int] | None]:
    """The checkpoint's labels (recorded, or from `pretrained.label_names`) and, for a reused head, the permutation of
    its
    output rows that puts them in the target's order (None when the head is replaced or nothing can be reused)."""
    old = meta.label_names
    if pretrained["label_names"]:
        old = _listed(checks, "labels", "label_names", pretrained["label_names"], old, "label") or old
    if pretrained["head"]:
        return old, None
    fix = (
        "give pretrained.label_names: FILE (one label a line, in the order of the model's outputs) or replace "
        "the head with pretrained.head"
    )
    if old is None:
        checks.add(
            "labels",
            "error",
            f"the checkpoint records no label names, so the order of its outputs is unknown and "
            f"the target's {len(labels)} labels ({abbreviate(labels)}) cannot be matched to them; {fix}",
        )
        return None, None
    if sorted(old) != sorted(labels):
        checks.add(
            "labels",
            "error",
            f"the target's labels ({abbreviate(labels)}) differ from the checkpoint's ({abbreviate(old)}); "
            "set pretrained.head to replace the final layer",
        )
        return old, None
    if old == labels:
        checks.add("labels", "ok", f"{len(labels)} labels, same names in the same order")
        return old, list(range(len(labels)))
    checks.add(
        "labels",
        "ok",
        f"{len(labels)} labels in another order ({abbreviate(old)}): the head's output rows are reordered "
        f"to the target's ({abbreviate(labels)})",
    )
    return old, [old.index(name) for name in labels]


def recorded_categories(checks: Checks, meta: CheckpointMeta, listed: dict) -> dict:
    """The checkpoint's covariate categories: recorded in its metadata, or from `pretrained.categories` when it
    records none."""
    recorded = meta.categories
    if recorded is None:
        return listed
    if listed and listed != recorded:
        checks.add(
            "categories",
            "error",
            f"pretrained.categories {listed} disagrees with the categories the checkpoint records "
            f"({recorded}); remove pretrained.categories",
        )
    return recorded


def _new_categories(checks: Checks, name: str, cats: list, declared: dict, column: list) -> list:
    """Covariate `name`'s new categories: declared in pretrained.new_categories, else those of the data's `column`
    the checkpoint's `cats` lack; an error for a declared one it has or one of the data in neither."""
    again = [c for c in declared.get(name, []) if c in cats]
    new = (
        [c for c in declared.get(name, []) if c not in cats]
        if name in declared
        else [c for c in column if c not in cats]
    )
    unknown = [c for c in column if c not in cats and c not in new]
    if again:
        checks.add(
            "categories",
            "error",
            f"pretrained.new_categories.{name}: {abbreviate(again)} already in the checkpoint",
        )
    if unknown:
        checks.add(
            "categories",
            "error",
            f"covariate {name!r}: {len(unknown)} categories in the data are neither in the "
            f"checkpoint nor in pretrained.new_categories.{name}: {abbreviate(unknown)}; add them there",
        )
    status = "warning" if new and name not in declared else "ok"
    found = " (found in the data, not declared in pretrained.new_categories)" if status == "warning" else ""
    checks.add(
        "categories",
        status,
        f"covariate {name!r}: {len(cats)} categories" + (f" + {len(new)} new{found}: {abbreviate(new)}" if new else ""),
        covariate=name,
        old=cats,
        new=new,
    )
    return new


def categories(checks: Checks, old: dict, declared: dict, data: dict, train: str, stagewise: bool) -> dict:
    """Each covariate's categories after surgery: the checkpoint's, then new ones (declared or found in the data)."""
    out = {name: list(cats) for name, cats in old.items()}
    for name in declared:
        if name not in old:
            checks.add(
                "categories",
                "error",
                f"pretrained.new_categories.{name}: the checkpoint has no covariate {name!r} "
                f"(its covariates: {sorted(old)})",
            )
    for name, cats in old.items():
        if name not in data:
            checks.add(
                "categories",
                "error",
                f"covariate {name!r}: column missing: {train} has no covariates/{name}, but the "
                f"checkpoint's model takes it ({len(cats)} categories); add {name!r} to data.target.covariates",
            )
            continue
        out[name] = cats + _new_categories(checks, name, cats, declared, data[name])
    for name in sorted(set(data) - set(old)):
        why = (
            "the checkpoint's model takes no such input"
            if stagewise
            else "the checkpoint records no categories; if its model "
            f"takes this covariate, list them in pretrained.categories.{name} in the order of its one-hot columns"
        )
        checks.add("categories", "warning", f"covariate {name!r} of the data is ignored: {why}")
    return out
