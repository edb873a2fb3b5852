"""Config: schema validation with defaults, stage merging, and the per-rule slices Snakemake tracks."""

from __future__ import annotations

import copy
import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from . import metric_names
from .errors import StagewiseError

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"
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
        raise StagewiseError(f"{SCHEMA_PATH} not found: stagewise runs from its repository; install it with `pip install -e .`")
    raw = yaml.safe_load(SCHEMA_PATH.read_text())
    props = raw["properties"]
    stage = props["experiments"]["additionalProperties"]["properties"]["stages"]["items"]
    stage["properties"] = _strip_defaults(stage["properties"])
    props["pretrained"]["properties"]["training"]["properties"] = _strip_defaults(
        props["pretrained"]["properties"]["training"]["properties"]
    )
    return raw


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


def validate(config: dict, source: str = "config") -> dict:
    """Return a validated copy of `config` with defaults filled in; raise on the first bad key."""
    if not isinstance(config, dict):
        raise StagewiseError(f"{source}: the config must be a mapping of keys (data, model, ...), not a {type(config).__name__}")
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
        lines = [f"{source}: invalid configuration:"]
        for error in errors:
            message = error.message
            if error.validator == "additionalProperties":
                message = f"unknown key ({message}); see config/README.md for the keys it accepts"
            lines.append(f"  {_where(error)}: {message}")
        raise StagewiseError("\n".join(lines))
    if config["pretrained"]["checkpoint"] is None and "source" not in config["data"]:
        raise StagewiseError(
            f"{source}: pretrained.checkpoint is not set and data.source is missing: "
            "give a checkpoint, or a source dataset for the workflow to pretrain on"
        )
    metric_names.check_config(config, source)
    return config


def load(path: str | Path) -> dict:
    """Read a YAML config file and validate it."""
    path = Path(path)
    if not path.is_file():
        raise StagewiseError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise StagewiseError(f"{path}: not valid YAML: {error}") from None
    return validate(raw, source=str(path))


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
    return [f"{i + 1}_{s['name']}" for i, s in enumerate(stages)]


def total_epochs(config: dict) -> int:
    """The largest epoch budget of any experiment (the scratch baseline gets the same)."""
    budgets = []
    for name, experiment in config["experiments"].items():
        budgets.append(sum(stage_config(config, name, i)["training"]["epochs"] for i in range(len(experiment["stages"]))))
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
