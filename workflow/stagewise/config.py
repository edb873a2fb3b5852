"""Config: reading YAML with its lines, schema validation with defaults, stage merging, and the per-rule slices
Snakemake tracks (the files a config names: config_files)."""

from __future__ import annotations

import copy
import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from . import assets, paths, tasks
from .config_files import check_files
from .config_yaml import Lines, read
from .errors import StagewiseError

SCHEMA_PATH = assets.SCHEMA
NAMED = ("optimizer", "scheduler", "loss")  # sub-dicts that name a registry entry


def _strip_defaults(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_defaults(v) for k, v in schema.items() if k != "default"}
    if isinstance(schema, list):
        return [_strip_defaults(v) for v in schema]
    return schema


@lru_cache(maxsize=1)
def schema() -> dict:
    """The config schema; stage entries and pretrain overrides carry no defaults (they inherit)."""
    if not SCHEMA_PATH.is_file():
        raise StagewiseError(f"{SCHEMA_PATH} not found: this stagewise installation is incomplete; reinstall it")
    raw = yaml.safe_load(SCHEMA_PATH.read_text())
    props = raw["properties"]
    stage = props["experiments"]["additionalProperties"]["properties"]["stages"]["items"]
    stage["properties"] = _strip_defaults(stage["properties"])
    task = props["model"]["properties"]["task"]
    task["enum"], task["default"] = list(tasks.TASKS), tasks.DEFAULT  # the registry names the tasks
    props["pretrained"]["properties"]["training"]["properties"] = _strip_defaults(
        props["pretrained"]["properties"]["training"]["properties"]
    )
    return raw


def default_lr() -> float:
    """`training.optimizer.lr`'s default, as the schema gives it."""
    return schema()["properties"]["training"]["properties"]["optimizer"]["properties"]["lr"]["default"]


def _fill_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def properties(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": properties})


_Validator = _fill_defaults(jsonschema.Draft7Validator)


def _shorthand(training: dict) -> None:
    """`loss: focal` is short for `loss: {name: focal}`."""
    for key in NAMED:
        if isinstance(training.get(key), str):
            training[key] = {"name": training[key]}


def _where(error: jsonschema.ValidationError) -> str:
    return "config" + "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)


def _mapping(value: Any) -> dict:
    """`value` if it is a mapping, else empty (the schema then reports what it is)."""
    return value if isinstance(value, dict) else {}


def _error_path(error: jsonschema.ValidationError) -> list:
    """Where an error points; an unknown key's own path (its line, not its mapping's)."""
    path = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = error.schema.get("properties", {})
        path += [key for key in error.instance if key not in known][:1]
    return path


def validate(config: dict, source: str = "config", lines: Lines | None = None) -> dict:
    """Return a validated copy of `config` with defaults filled in; raise on the first bad key.

    `lines` (from `read`) puts the line of each bad key in front of its message.
    """
    if not isinstance(config, dict):
        raise StagewiseError(
            f"{source}: the config must be a mapping of keys (data, model, ...), not a {type(config).__name__}"
        )
    config = copy.deepcopy(config)
    for training in [config.get("training"), _mapping(config.get("pretrained")).get("training")]:
        if isinstance(training, dict):
            _shorthand(training)
    for experiment in _mapping(config.get("experiments")).values():
        for stage in _mapping(experiment).get("stages") or []:
            if isinstance(stage, dict):
                _shorthand(stage)
    for dataset in _mapping(config.get("data")).values():
        if isinstance(dataset, dict) and isinstance(dataset.get("label_map"), dict):
            dataset["label_map"] = {str(k): str(v) for k, v in dataset["label_map"].items()}
    errors = sorted(_Validator(schema()).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        report = [f"{source}: invalid configuration:"]
        for error in errors:
            message = error.message
            if error.validator == "additionalProperties":
                message = f"unknown key ({message}); see config/README.md for the keys it accepts"
            line = lines.line(_error_path(error)) if lines else None
            report.append(f"  {f'line {line}: ' if line else ''}{_where(error)}: {message}")
        raise StagewiseError("\n".join(report))
    if config["pretrained"]["checkpoint"] is None and "source" not in config["data"]:
        raise StagewiseError(
            f"{source}: pretrained.checkpoint is not set and data.source is missing: "
            "give a checkpoint, or a source dataset for the workflow to pretrain on"
        )
    check_metrics(config, source)
    return config


def load(path: str | Path, files: bool = False) -> dict:
    """Read a YAML config file and validate it; `files`: also check that the files it names exist."""
    raw, lines = read(path)
    config = validate(raw, source=str(path), lines=lines)
    if files:
        check_files(config, str(path), lines)
    return config


def canonical(obj: Any) -> Any:
    """`obj` with dict keys sorted recursively, so its repr is stable (Snakemake tracks params by repr)."""
    return json.loads(json.dumps(obj, sort_keys=True))


def deep_merge(base: dict, override: dict) -> dict:
    """Merge `override` into a copy of `base`; a named sub-dict whose name changes starts afresh."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        old = merged.get(key)
        renamed = key in NAMED and isinstance(old, dict) and value.get("name", old.get("name")) != old.get("name")
        if isinstance(old, dict) and isinstance(value, dict) and not renamed:
            merged[key] = deep_merge(old, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


POLICY_KEYS = ("name", "train", "freeze", "unfreeze_last", "unfreeze_all")


def stage_config(config: dict, experiment: str, index: int) -> dict:
    """The effective config of one stage: `training` deep-merged with the stage's keys."""
    stage = config["experiments"][experiment]["stages"][index]
    overrides = {k: v for k, v in stage.items() if k not in POLICY_KEYS}
    effective = deep_merge(config["training"], overrides)
    effective["seed"] = derive_seed(effective["seed"], experiment, stage["name"], index)
    policy = {k: stage[k] for k in POLICY_KEYS if k in stage}
    return canonical({"training": effective, "policy": policy})


def derive_seed(base: int, *names: Any) -> int:
    """A seed derived from `base` and names, so adding an experiment leaves the others' seeds alone."""
    text = json.dumps([base, *names])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def stage_dirs(config: dict, experiment: str) -> list[str]:
    """`{index}_{name}` folder names of an experiment's stages, in order."""
    stages = config["experiments"][experiment]["stages"]
    return [paths.stage_folder(i, s["name"]) for i, s in enumerate(stages)]


def total_epochs(config: dict) -> int:
    """The largest epoch budget of any experiment (the scratch baseline gets the same)."""
    budgets = []
    for name, experiment in config["experiments"].items():
        budgets.append(
            sum(stage_config(config, name, i)["training"]["epochs"] for i in range(len(experiment["stages"])))
        )
    return max(budgets)


def scratch_config(config: dict) -> dict:
    """The scratch baseline: `training` with every parameter trainable, for the longest budget."""
    training = copy.deepcopy(config["training"])
    training["epochs"] = total_epochs(config)
    training["seed"] = derive_seed(training["seed"], "baselines", "scratch")
    return canonical({"training": training, "policy": {"name": "scratch", "unfreeze_all": True}})


def pretrain_config(config: dict) -> dict:
    """The pretrain rule's config: `training` deep-merged with `pretrained.training`."""
    training = deep_merge(config["training"], config["pretrained"]["training"])
    training["seed"] = derive_seed(training["seed"], "pretrain")
    return canonical({"training": training, "policy": {"name": "pretrain", "unfreeze_all": True}})


def check_metrics(config: dict, source: str) -> None:
    """`evaluation.metrics` and every `early_stopping.monitor` of a validated config against `model.task`."""
    task = config["model"]["task"]
    kind = tasks.get(task)
    headline = list(kind.headline)
    unknown = sorted(set(config["evaluation"]["metrics"] or []) - set(headline))
    if unknown:
        raise StagewiseError(
            f"{source}: evaluation.metrics: {unknown} do not apply to task {task!r}; "
            f"choose from {headline} or set it to null"
        )
    places = {"training": config["training"], "pretrained.training": config["pretrained"].get("training", {})}
    for experiment, spec in config["experiments"].items():
        places |= {f"experiments.{experiment}.stages[{i}] ({s['name']})": s for i, s in enumerate(spec["stages"])}
    for where, training in places.items():
        monitor = training.get("early_stopping", {}).get("monitor")
        if monitor is not None:
            kind.check_monitor(monitor, f"{source}: {where}")
