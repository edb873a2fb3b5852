"""config: the per-rule configs, merging, seeds, reading YAML and its errors, asserted exactly.

Written for the mutation score of issue 21 (benchmarks/mutation.sh): `pretrain_config` was reached only by the
end-to-end workflow, and most error messages and line numbers by no fast test.
"""

from __future__ import annotations

import copy

import pytest
import yaml
from conftest import TINY
from stagewise import config as sw_config
from stagewise import config_files
from stagewise.errors import StagewiseError

TRAINING = {  # TINY's `training` with the schema's defaults
    "batch_size": 16,
    "device": "auto",
    "devices": 1,
    "early_stopping": {"min_delta": 0.0, "mode": "auto", "monitor": "val_loss", "patience": None},
    "epochs": 2,
    "grad_clip": None,
    "layer_decay": None,
    "loss": {"class_weights": None, "name": "auto"},
    "lr_groups": {},
    "nodes": 1,
    "optimizer": {"lr": 0.001, "name": "AdamW"},
    "precision": "fp32",
    "scheduler": {"name": "none", "warmup_epochs": 0},
    "seed": 0,
    "tensorboard": False,
}

CONFIG_YAML = """\
data:
  source:
    train: sklearn:digits
  target:
    train: sklearn:digits
model:
  architecture: mlp
training:
  epochs: 2
  epochz: 3
  batch_size: x
experiments:
  gradual:
    stages:
      - name: head
        train: [head]
      - name: all
        unfreeze_lst: 2
"""


@pytest.fixture
def tiny() -> dict:
    return sw_config.validate(TINY)


def test_derive_seed_is_a_fixed_hash_of_base_and_names():
    assert sw_config.derive_seed(0, "pretrain") == 3287346866
    assert sw_config.derive_seed(0, "baselines", "scratch") == 4079871685
    assert sw_config.derive_seed(0, "gradual", "head", 0) == 666993047
    assert sw_config.derive_seed(1, "pretrain") != 3287346866


def test_pretrain_config_is_training_merged_with_pretrained_training(tiny):
    expected = {**TRAINING, "epochs": 4, "optimizer": {"lr": 0.003, "name": "AdamW"}, "seed": 3287346866}
    assert sw_config.pretrain_config(tiny) == {
        "training": expected,
        "policy": {"name": "pretrain", "unfreeze_all": True},
    }
    config = copy.deepcopy(TINY)
    config["training"]["seed"] = 5
    config["pretrained"]["training"] = {"optimizer": "SGD", "early_stopping": {"patience": 2}}
    pretrain = sw_config.pretrain_config(sw_config.validate(config))["training"]
    assert pretrain["optimizer"] == {"name": "SGD"}  # another optimizer: its settings start afresh
    assert pretrain["early_stopping"] == {**TRAINING["early_stopping"], "patience": 2}
    assert pretrain["epochs"] == 2 and pretrain["seed"] == sw_config.derive_seed(5, "pretrain")
    assert list(sw_config.pretrain_config(tiny)) == ["policy", "training"]  # canonical: sorted keys


def test_scratch_config_trains_everything_for_the_longest_budget(tiny):
    assert sw_config.scratch_config(tiny) == {
        "training": {**TRAINING, "epochs": 4, "seed": 4079871685},
        "policy": {"name": "scratch", "unfreeze_all": True},
    }
    assert tiny["training"]["seed"] == 0 and tiny["training"]["epochs"] == 2  # the config is left as it was


def test_stage_config_is_training_merged_with_the_stage_and_its_policy(tiny):
    assert sw_config.stage_config(tiny, "gradual", 0) == {
        "training": {**TRAINING, "optimizer": {"lr": 0.003, "name": "AdamW"}, "seed": 666993047},
        "policy": {"name": "head", "train": ["head"]},
    }
    config = copy.deepcopy(TINY)
    config["experiments"]["x"] = {
        "stages": [{"name": "s", "freeze": ["head"], "unfreeze_last": 1, "epochs": 7, "loss": "focal"}]
    }
    stage = sw_config.stage_config(sw_config.validate(config), "x", 0)
    assert stage["policy"] == {"name": "s", "freeze": ["head"], "unfreeze_last": 1}
    assert stage["training"]["epochs"] == 7 and stage["training"]["loss"] == {"name": "focal"}
    assert stage["training"]["seed"] == sw_config.derive_seed(0, "x", "s", 0)
    assert sw_config.stage_dirs(tiny, "gradual") == ["1_head", "2_all"]
    assert sw_config.stage_dirs(tiny, "fixed") == ["1_head"]
    assert sw_config.total_epochs(sw_config.validate(config)) == 7


def test_deep_merge_copies_merges_and_restarts_a_renamed_entry():
    base = {"optimizer": {"name": "AdamW", "lr": 1, "betas": [0.9, 0.9]}, "other": {"name": "a", "x": 1}, "n": 1}
    kept = copy.deepcopy(base)
    merged = sw_config.deep_merge(base, {"optimizer": {"lr": 2}, "other": {"name": "b"}, "n": {"new": 1}})
    assert merged == {
        "optimizer": {"name": "AdamW", "lr": 2, "betas": [0.9, 0.9]},
        "other": {"name": "b", "x": 1},  # not a named entry (optimizer, scheduler, loss): merged
        "n": {"new": 1},
    }
    assert base == kept
    merged["optimizer"]["betas"].append(0)
    assert base == kept  # a deep copy
    for key in sw_config.NAMED:
        assert sw_config.deep_merge({key: {"name": "a", "x": 1}}, {key: {"name": "b"}}) == {key: {"name": "b"}}
        assert sw_config.deep_merge({key: {"name": "a", "x": 1}}, {key: {"name": "a"}}) == {key: {"name": "a", "x": 1}}
        assert sw_config.deep_merge({key: {"x": 1}}, {key: {"y": 2}}) == {key: {"x": 1, "y": 2}}
    override = {"loss": {"name": "focal", "gamma": [2]}}
    merged = sw_config.deep_merge({"loss": {"name": "auto"}}, override)
    merged["loss"]["gamma"].append(3)
    assert override == {"loss": {"name": "focal", "gamma": [2]}}  # the override is copied too


def test_canonical_sorts_keys_at_every_depth():
    value = sw_config.canonical({"b": [{"z": 1, "y": (1, 2)}], "a": None})
    assert value == {"a": None, "b": [{"y": [1, 2], "z": 1}]}
    assert list(value) == ["a", "b"] and list(value["b"][0]) == ["y", "z"]


def test_the_schema_leaves_stage_and_pretrain_overrides_without_defaults():
    sw_config.schema.cache_clear()  # built now, not read from the cache of an earlier test
    schema = sw_config.schema()
    stage = schema["properties"]["experiments"]["additionalProperties"]["properties"]["stages"]["items"]
    pretrain = schema["properties"]["pretrained"]["properties"]["training"]["properties"]

    def defaults(node) -> int:
        if isinstance(node, dict):
            return ("default" in node) + sum(defaults(v) for v in node.values())
        return sum(defaults(v) for v in node) if isinstance(node, list) else 0

    assert defaults(stage["properties"]) == 0 and defaults(pretrain) == 0
    raw = yaml.safe_load(sw_config.SCHEMA_PATH.read_text())["properties"]

    def stripped(node):
        if isinstance(node, dict):
            return {k: stripped(v) for k, v in node.items() if k != "default"}
        return [stripped(v) for v in node] if isinstance(node, list) else node

    raw_stage = raw["experiments"]["additionalProperties"]["properties"]["stages"]["items"]["properties"]
    assert stage["properties"] == stripped(raw_stage)  # every other key kept, lists (anyOf, enum) included
    assert pretrain == stripped(raw["pretrained"]["properties"]["training"]["properties"])
    assert any(isinstance(v, list) for p in stage["properties"].values() for v in p.values())
    assert defaults(schema["properties"]["training"]) > 10  # `training` keeps its defaults
    assert "epochs" in stage["properties"] and "optimizer" in pretrain
    assert sw_config.default_lr() == 1e-4
    assert sw_config.schema() is schema


def test_shorthands_and_label_maps_are_normalised_everywhere():
    config = copy.deepcopy(TINY)
    config["training"] |= {"loss": "focal", "scheduler": "none", "optimizer": "SGD"}
    config["pretrained"]["training"]["loss"] = "focal"
    config["experiments"]["fixed"]["stages"][0]["loss"] = "focal"
    config["experiments"]["fixed"]["stages"].append("not a stage")  # left to the schema
    config["data"]["target"]["label_map"] = {1: 2, "3": 4}
    with pytest.raises(StagewiseError) as error:
        sw_config.validate(config)
    assert str(error.value) == (
        "config: invalid configuration:\n  config.experiments.fixed.stages[1]: 'not a stage' is not of type 'object'"
    )
    config["experiments"]["fixed"]["stages"].pop()
    valid = sw_config.validate(config)
    assert valid["training"]["loss"] == {"name": "focal", "class_weights": None}
    assert (
        valid["training"]["scheduler"] == {"name": "none", "warmup_epochs": 0}
        and valid["training"]["optimizer"]["name"] == "SGD"
    )
    assert valid["pretrained"]["training"]["loss"] == {"name": "focal"}
    assert valid["experiments"]["fixed"]["stages"][0]["loss"] == {"name": "focal"}
    assert valid["data"]["target"]["label_map"] == {"1": "2", "3": "4"}
    assert config["training"]["loss"] == "focal"  # validate works on a copy


def test_validate_tolerates_any_shape_before_the_schema_reports_it():
    for bad in ({"pretrained": "x"}, {"experiments": ["x"]}, {"data": ["x"]}, {"experiments": {"a": {"stages": None}}}):
        config = copy.deepcopy(TINY) | bad
        with pytest.raises(StagewiseError, match=r"^config: invalid configuration:\n  config"):
            sw_config.validate(config)
    with pytest.raises(StagewiseError) as error:
        sw_config.validate(["data"], source="x.yaml")
    assert str(error.value) == "x.yaml: the config must be a mapping of keys (data, model, ...), not a list"


def test_every_error_is_listed_in_path_order_with_its_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG_YAML)
    unknown = "unknown key (Additional properties are not allowed ({} was unexpected)); see config/README.md for the "
    expected = [
        f"{path}: invalid configuration:",
        "  line 18: config.experiments.gradual.stages[1]: " + unknown.format("'unfreeze_lst'") + "keys it accepts",
        "  line 10: config.training: " + unknown.format("'epochz'") + "keys it accepts",
        "  line 11: config.training.batch_size: 'x' is not of type 'integer'",
    ]
    with pytest.raises(StagewiseError) as error:
        sw_config.load(path)
    assert str(error.value).splitlines() == expected
    raw, _ = sw_config.read(path)
    with pytest.raises(StagewiseError) as error:
        sw_config.validate(raw)
    assert str(error.value).splitlines() == ["config: invalid configuration:"] + [
        "  " + line.split(": ", 1)[1] for line in expected[1:]
    ]


def test_an_error_line_is_the_bad_keys_own(tmp_path):
    path = tmp_path / "c.yaml"
    config = copy.deepcopy(TINY)
    config["model"]["architecture"] = {"x": 1}  # a mapping where a string belongs: the line of architecture
    config["training"]["epochz"] = {"epochy": 1}  # two unknown keys: the line of the first
    config["training"]["epochy"] = 2
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    rows = path.read_text().splitlines()
    with pytest.raises(StagewiseError) as error:
        sw_config.load(path)
    assert str(error.value).splitlines()[1:] == [
        f"  line {rows.index('  architecture:') + 1}: config.model.architecture: {{'x': 1}} is not of type 'string'",
        f"  line {rows.index('  epochz:') + 1}: config.training: unknown key (Additional properties are not allowed "
        "('epochy', 'epochz' were unexpected)); see config/README.md for the keys it accepts",
    ]


def test_lines_finds_the_deepest_key_of_a_path():
    lines = sw_config.Lines(yaml.compose(CONFIG_YAML))
    assert lines.line(["data"]) == 1
    assert lines.line(["data", "target", "train"]) == 5
    assert lines.line(["training", "batch_size"]) == 11
    assert lines.line(["experiments", "gradual", "stages", 1]) == 17
    assert lines.line(["experiments", "gradual", "stages", 1, "unfreeze_lst"]) == 18
    assert lines.line(["experiments", "gradual", "stages", 1, "nothing"]) == 17
    assert lines.line(["experiments", "gradual", "stages", 2]) == 14  # no such item: the list's key
    assert lines.line(["experiments", "gradual", "stages", "0"]) == 14
    assert lines.line(["training", "epochs", "deeper"]) == 9
    assert lines.line(["nothing", "training"]) is None
    assert lines.line([]) is None
    assert sw_config.Lines(None).line(["data"]) is None


@pytest.mark.parametrize(
    "name,text,message",
    [
        ("empty.yaml", "", "{path}: the config file is empty (it needs the keys data, model, experiments, ...)"),
        (
            "blank.yaml",
            "# nothing\n",
            "{path}: the config file is empty (it needs the keys data, model, experiments, ...)",
        ),
        (
            "tab.yaml",
            "data:\n\tx: 1\n",
            "{path}:2: not valid YAML: found character '\\t' that cannot start any token (YAML indents with spaces, "
            "never tabs)",
        ),
        (
            "dup.yaml",
            "data:\n  a: 1\n  b: 2\n  a: 3\n",
            "{path}:4: not valid YAML: duplicate key 'a' (first on line 2)",
        ),
        (
            "flow.yaml",
            "data: [1, 2\nmodel: x\n",
            "{path}:2: not valid YAML: expected ',' or ']', but got ':' (while parsing a flow sequence, from line 1)",
        ),
        ("colon.yaml", "a: b: c\n", "{path}:1: not valid YAML: mapping values are not allowed here"),
        ("doc.yaml", "a: 1\n--- !!python/object:os.system\n", None),
    ],
)
def test_read_refuses_bad_yaml_naming_file_and_line(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(StagewiseError) as error:
        sw_config.read(path)
    if message is not None:
        assert str(error.value) == message.format(path=path)
    else:
        assert str(error.value).startswith(f"{path}") and "not valid YAML" in str(error.value)


def test_read_merge_keys_and_nested_duplicates(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("base: &b\n  x: 1\nother:\n  <<: *b\n  y: 2\nlist:\n  - {a: 1, b: 2}\n  - {a: 1, a: 2}\n")
    with pytest.raises(StagewiseError) as error:
        sw_config.read(path)
    assert str(error.value) == f"{path}:8: not valid YAML: duplicate key 'a' (first on line 8)"
    path.write_text("base: &b\n  x: 1\nother:\n  <<: *b\n  y: 2\n")
    data, lines = sw_config.read(path)
    assert data == {"base": {"x": 1}, "other": {"x": 1, "y": 2}} and lines.line(["other", "y"]) == 5
    path.write_text("base: &b\n  x: 1\nother:\n  <<: *b\n  y: 2\n  y: 3\n")  # keys after a merge are checked too
    with pytest.raises(StagewiseError) as error:
        sw_config.read(path)
    assert str(error.value) == f"{path}:6: not valid YAML: duplicate key 'y' (first on line 5)"
    path.write_text("? [1]\n: x\na: 1\na: 2\n")  # keys after an unhashable one are checked too
    with pytest.raises(StagewiseError) as error:
        sw_config.read(path)
    assert str(error.value) == f"{path}:4: not valid YAML: duplicate key 'a' (first on line 3)"
    path.write_text("a: \x07\n")  # a reader error: no line mark
    with pytest.raises(StagewiseError) as error:
        sw_config.read(path)
    assert str(error.value).startswith(
        f"{path}: not valid YAML: unacceptable character #x0007: special characters are not allowed"
    )
    path.write_text("? [1, 2]\n: x\n")  # an unhashable key: PyYAML's own error
    with pytest.raises(StagewiseError, match=rf"^{path}:1: not valid YAML: found unhashable key"):
        sw_config.read(path)


def test_read_names_a_missing_or_unreadable_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StagewiseError) as error:
        sw_config.read("missing.yaml")
    assert str(error.value) == f"missing.yaml: config file not found (in {tmp_path})"
    with pytest.raises(StagewiseError) as error:
        sw_config.read(tmp_path / "missing.yaml")
    assert str(error.value) == f"{tmp_path / 'missing.yaml'}: config file not found"
    (tmp_path / "folder.yaml").mkdir()
    with pytest.raises(StagewiseError, match="folder.yaml: config file not found"):
        sw_config.read("folder.yaml")
    (tmp_path / "latin.yaml").write_bytes(b"data: \xff\n")
    with pytest.raises(StagewiseError) as error:
        sw_config.load("latin.yaml")
    assert str(error.value) == (
        "latin.yaml: cannot read the config file ('utf-8' codec can't decode byte 0xff in position 6: invalid start "
        "byte)"
    )


def _with_files(tmp_path) -> dict:
    config = copy.deepcopy(TINY)
    config["data"]["source"] |= {"train": "src.csv", "test": "src_test.csv"}
    config["data"]["target"] |= {"train": "folder", "genome": {"annotation": "genes.gtf"}}
    config["pretrained"] |= {"checkpoint": "model.pt", "feature_names": "features.txt", "label_names": "labels.txt"}
    return config


def test_named_files_and_check_files_name_every_missing_file_and_its_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = _with_files(tmp_path)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    valid = sw_config.validate(config)
    assert config_files.named_files(valid) == [
        (["data", "source", "train"], "src.csv"),
        (["data", "source", "test"], "src_test.csv"),
        (["data", "target", "train"], "folder"),
        (["data", "target", "genome", "annotation"], "genes.gtf"),
        (["pretrained", "checkpoint"], "model.pt"),
        (["pretrained", "feature_names"], "features.txt"),
        (["pretrained", "label_names"], "labels.txt"),
    ]
    assert sw_config.load(path)["pretrained"]["checkpoint"] == "model.pt"  # files are checked only when asked
    (tmp_path / "folder").mkdir()  # data may be a folder
    (tmp_path / "src.csv").write_text("x")
    (tmp_path / "model.pt").mkdir()  # a checkpoint may not
    with pytest.raises(StagewiseError) as error:
        sw_config.load(path, files=True)
    raw_lines = path.read_text().splitlines()

    def line(text: str) -> int:
        return next(i + 1 for i, row in enumerate(raw_lines) if text in row)

    assert str(error.value).splitlines() == [
        f"{path}: files the config names do not exist (paths are relative to {tmp_path}):",
        f"  line {line('test: src_test.csv')}: data.source.test: src_test.csv: not found",
        f"  line {line('annotation: genes.gtf')}: data.target.genome.annotation: genes.gtf: not found",
        f"  line {line('checkpoint: model.pt')}: pretrained.checkpoint: model.pt: a folder, not a file",
        f"  line {line('feature_names: features.txt')}: pretrained.feature_names: features.txt: not found",
        f"  line {line('label_names: labels.txt')}: pretrained.label_names: labels.txt: not found",
    ]
    with pytest.raises(StagewiseError) as error:
        config_files.check_files(valid, made=lambda name: name != "genes.gtf")
    assert str(error.value).splitlines() == [
        f"config: files the config names do not exist (paths are relative to {tmp_path}):",
        "  data.target.genome.annotation: genes.gtf: not found",
    ]
    for name in ("src_test.csv", "genes.gtf", "features.txt", "labels.txt"):
        (tmp_path / name).write_text("x")
    (tmp_path / "model.pt").rmdir()
    (tmp_path / "model.pt").write_text("x")
    assert sw_config.load(path, files=True)["pretrained"]["checkpoint"] == "model.pt"
    assert sw_config.load(path)["data"]["source"]["train"] == "src.csv"
    assert config_files.named_files(sw_config.validate(TINY)) == []  # built-in data names no file


def test_load_without_a_source_or_checkpoint_names_the_file(tmp_path):
    config = copy.deepcopy(TINY)
    del config["data"]["source"]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(StagewiseError) as error:
        sw_config.load(path)
    assert str(error.value) == (
        f"{path}: pretrained.checkpoint is not set and data.source is missing: give a checkpoint, or a source "
        "dataset for the workflow to pretrain on"
    )
    config["pretrained"]["checkpoint"] = "model.pt"
    assert sw_config.validate(config)["pretrained"]["checkpoint"] == "model.pt"


def test_the_schema_file_missing_is_an_installation_error(tmp_path, monkeypatch):
    monkeypatch.setattr(sw_config, "SCHEMA_PATH", tmp_path / "gone.yaml")
    sw_config.schema.cache_clear()
    try:
        with pytest.raises(StagewiseError) as error:
            sw_config.schema()
        assert str(error.value) == (
            f"{tmp_path / 'gone.yaml'} not found: this stagewise installation is incomplete; reinstall it"
        )
    finally:
        sw_config.schema.cache_clear()


def test_the_validator_fills_missing_defaults_with_copies_and_still_validates():
    """The validator class is built once at import (so its mutants need building it again here)."""
    import jsonschema

    validator = sw_config._fill_defaults(jsonschema.Draft7Validator)
    default = {"x": [1]}
    schema = {
        "type": "object",
        "properties": {"a": {"type": "object", "default": default}, "b": {"type": "integer"}, "c": {"type": "string"}},
    }
    filled = {"c": "given"}
    assert list(validator(schema).iter_errors(filled)) == [] and filled == {"a": {"x": [1]}, "c": "given"}
    filled["a"]["x"].append(2)
    assert default == {"x": [1]}  # a copy, never the schema's own
    kept = {"a": {"y": 1}}
    assert list(validator(schema).iter_errors(kept)) == [] and kept == {"a": {"y": 1}}
    errors = list(validator(schema).iter_errors({"b": "x"}))
    assert [e.message for e in errors] == ["'x' is not of type 'integer'"]


@pytest.mark.parametrize(
    "place,where",
    [
        (("training",), "training"),
        (("pretrained", "training"), "pretrained.training"),
        (("experiments", "fixed", "stages", 0), "experiments.fixed.stages[0] (head)"),
    ],
)
def test_every_early_stopping_monitor_is_checked_naming_its_place(place, where):
    config = copy.deepcopy(TINY)
    node = config
    for key in place:
        node = node[key]
    node["early_stopping"] = {"monitor": "val_rmse"}
    with pytest.raises(StagewiseError) as error:
        sw_config.validate(config, source="c.yaml")
    assert str(error.value).startswith(
        f"c.yaml: {where}.early_stopping.monitor: 'val_rmse' is not recorded for task 'classification'; choose from"
    )
