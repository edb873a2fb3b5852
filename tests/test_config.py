"""Config validation, defaults, stage merging and the derived per-rule configs."""

from __future__ import annotations

import copy

import pytest
import yaml
from conftest import REPO, TINY
from stagewise import config as sw_config
from stagewise.errors import StagewiseError


def test_defaults_are_filled_and_the_example_validates():
    example = sw_config.load(REPO / "config/config.yaml")
    assert example["training"]["scheduler"]["name"] == "none"
    assert example["evaluation"]["baselines"] == ["pretrained", "scratch"]
    tiny = sw_config.validate(TINY)
    assert tiny["training"]["optimizer"] == {"name": "AdamW", "lr": 1.0e-3}
    assert tiny["data"]["source"]["test"] is None and tiny["data"]["source"]["train_per_class"] is None
    assert "epochs" not in tiny["experiments"]["gradual"]["stages"][0]  # stages inherit, no defaults of their own


@pytest.mark.parametrize(
    "where,key",
    [
        (("training",), "epochz"),
        (("data", "target"), "val_fracton"),
        (("experiments", "gradual", "stages", 0), "unfreeze_lst"),
        ((), "experiment"),
    ],
)
def test_an_unknown_key_is_an_error_naming_it_and_its_path(where, key):
    config = copy.deepcopy(TINY)
    node = config
    for part in where:
        node = node[part]
    node[key] = 1
    with pytest.raises(StagewiseError) as error:
        sw_config.validate(config)
    path = "config" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in where)
    assert f"{path}: unknown key" in str(error.value) and repr(key) in str(error.value)


def test_a_string_names_a_loss_scheduler_or_optimizer():
    config = copy.deepcopy(TINY)
    config["training"]["loss"] = "focal"
    assert sw_config.validate(config)["training"]["loss"]["name"] == "focal"


def test_a_stage_deep_merges_into_training_and_keeps_other_optimizer_settings():
    config = copy.deepcopy(TINY)
    config["training"]["optimizer"] = {"name": "AdamW", "lr": 1e-3, "weight_decay": 0.05}
    config["experiments"]["gradual"]["stages"][1]["optimizer"] = {"lr": 1e-4}
    stage = sw_config.stage_config(sw_config.validate(config), "gradual", 1)
    assert stage["training"]["optimizer"] == {"name": "AdamW", "lr": 1e-4, "weight_decay": 0.05}
    assert stage["policy"] == {"name": "all", "unfreeze_all": True}


def test_a_stage_naming_another_optimizer_starts_that_mapping_afresh():
    config = copy.deepcopy(TINY)
    config["training"]["optimizer"] = {"name": "AdamW", "lr": 1e-3, "betas": [0.9, 0.99]}
    config["experiments"]["gradual"]["stages"][1]["optimizer"] = {"name": "SGD", "lr": 0.1, "momentum": 0.9}
    stage = sw_config.stage_config(sw_config.validate(config), "gradual", 1)
    assert stage["training"]["optimizer"] == {"name": "SGD", "lr": 0.1, "momentum": 0.9}


def test_seeds_are_derived_per_stage_and_do_not_depend_on_other_experiments():
    config = sw_config.validate(TINY)
    seeds = {
        sw_config.stage_config(config, name, i)["training"]["seed"]
        for name in config["experiments"]
        for i in range(len(config["experiments"][name]["stages"]))
    }
    assert len(seeds) == 3
    more = copy.deepcopy(TINY)
    more["experiments"]["extra"] = {"stages": [{"name": "x"}]}
    assert sw_config.stage_config(sw_config.validate(more), "gradual", 1) == sw_config.stage_config(
        config, "gradual", 1
    )


def test_the_scratch_baseline_gets_the_longest_experiments_budget():
    config = copy.deepcopy(TINY)
    config["experiments"]["fixed"]["stages"][0]["epochs"] = 9
    scratch = sw_config.scratch_config(sw_config.validate(config))
    assert scratch["training"]["epochs"] == 9 and scratch["policy"]["unfreeze_all"]
    assert sw_config.scratch_config(sw_config.validate(TINY))["training"]["epochs"] == 4  # gradual: 2 + 2


def test_canonical_form_ignores_key_order():
    a = sw_config.canonical({"b": 1, "a": {"d": 2, "c": 3}})
    assert list(a) == ["a", "b"] and list(a["a"]) == ["c", "d"]
    assert repr(a) == repr(sw_config.canonical({"a": {"c": 3, "d": 2}, "b": 1}))


def test_missing_source_and_checkpoint_is_an_error(tmp_path):
    config = copy.deepcopy(TINY)
    del config["data"]["source"]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(StagewiseError, match="pretrained.checkpoint is not set and data.source is missing"):
        sw_config.load(path)


def test_reserved_experiment_names_are_refused():
    config = copy.deepcopy(TINY)
    config["experiments"]["baselines"] = config["experiments"].pop("fixed")
    with pytest.raises(StagewiseError, match="experiments"):
        sw_config.validate(config)


def test_a_config_that_is_not_a_mapping_is_an_error():
    with pytest.raises(StagewiseError, match="must be a mapping"):
        sw_config.validate(["data", "model"])
    config = copy.deepcopy(TINY)
    config["experiments"] = {"a": ["not", "a", "mapping"]}
    with pytest.raises(
        StagewiseError, match=r"config.experiments.a: \['not', 'a', 'mapping'\] is not of type 'object'"
    ):
        sw_config.validate(config)


@pytest.mark.parametrize("name", ["scratch", "pretrained"])
def test_baseline_names_are_reserved(name):
    config = copy.deepcopy(TINY)
    config["experiments"][name] = config["experiments"].pop("fixed")
    with pytest.raises(StagewiseError, match="experiments"):
        sw_config.validate(config)


def test_metrics_and_monitors_are_checked_against_the_task_before_any_rule():
    config = copy.deepcopy(TINY)
    config["evaluation"] = {"metrics": ["accuracy", "rmse"]}
    with pytest.raises(
        StagewiseError, match=r"test: evaluation.metrics: \['rmse'\] do not apply to task 'classification'"
    ):
        sw_config.validate(config, source="test")
    config = copy.deepcopy(TINY)
    config["experiments"]["fixed"]["stages"][0]["early_stopping"] = {"monitor": "val_rmse"}
    with pytest.raises(
        StagewiseError,
        match=r"experiments.fixed.stages\[0\] \(\w+\).early_stopping.monitor: 'val_rmse' "
        r"is not recorded for task 'classification'; choose from \['val_loss'",
    ):
        sw_config.validate(config)
    config["experiments"]["fixed"]["stages"][0]["early_stopping"] = {"monitor": "val_balanced_accuracy"}
    config["training"]["early_stopping"] = {"monitor": "train_loss"}
    sw_config.validate(config)
    config["model"]["task"] = "sequence_labeling"  # per-class columns are known once the labels are
    config["experiments"]["fixed"]["stages"][0]["early_stopping"] = {"monitor": "val_auprc_donor"}
    sw_config.validate(config)


def test_a_task_added_to_the_registry_is_a_valid_model_task(monkeypatch):
    """Adding a task is one registry entry: `model.task` accepts the registry's names, and only those."""
    from stagewise import tasks

    class Ranking(type(tasks.get("regression"))):
        name = "ranking"

    config = copy.deepcopy(TINY) | {"model": {**TINY["model"], "task": "ranking"}}
    with pytest.raises(StagewiseError, match=r"model.task: 'ranking' is not one of \['classification', 'regression'"):
        sw_config.validate(copy.deepcopy(config))
    monkeypatch.setitem(tasks.TASKS, "ranking", Ranking())
    sw_config.schema.cache_clear()
    try:
        assert sw_config.validate(copy.deepcopy(config))["model"]["task"] == "ranking"
    finally:
        sw_config.schema.cache_clear()
