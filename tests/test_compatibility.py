"""check_compatibility: every rule of the seed systems, every mismatch reported at once, the adapted start model."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import split_files
import torch
from conftest import snakemake, write_config
from stagewise import checkpoints, cli
from stagewise.errors import StagewiseError
from stagewise.metadata import CheckpointMeta
from stagewise.models.mlp import MLP
from stagewise.steps import compatibility, evaluate

FEATURES = [f"g{i}" for i in range(6)]
LABELS = ["a", "b", "c"]
PARAMS = {"in_features": 6, "out_features": 3, "hidden": [8, 4]}
MODEL = {"architecture": "mlp", "params": {}, "task": "classification"}
DEFAULTS = {
    "checkpoint": None,
    "locked": [],
    "match": {},
    "head": None,
    "features": "reorder",
    "feature_names": None,
    "label_names": None,
    "categories": {},
    "new_categories": {},
}


def write_data(path, features=FEATURES, labels=LABELS, categories=None) -> str:
    rng = np.random.default_rng(0)
    n = 12
    codes = {k: np.arange(n) % len(v) for k, v in (categories or {}).items()}
    split = split_files.Split(
        rng.random((n, len(features)), dtype=np.float32),
        np.arange(n) % len(labels),
        list(features),
        list(labels),
        [f"s{i}" for i in range(n)],
        codes,
        categories or {},
    )
    split_files.write(path, split, "train", "0" * 64)
    return str(path)


def write_checkpoint(path, params=PARAMS, plain=False, rename=None, **meta) -> dict:
    torch.manual_seed(1)
    state = MLP(**params).state_dict()
    state = {(rename(k) if rename else k): v for k, v in state.items()}
    if plain:
        torch.save(state, path)
    else:
        meta = {
            "architecture": "mlp",
            "params": params,
            "task": "classification",
            "feature_names": FEATURES,
            "label_names": LABELS,
        } | meta
        checkpoints.save(path, state, CheckpointMeta.from_dict(meta))
    return state


def pretrained(**keys) -> dict:
    return DEFAULTS | keys


def run_check(tmp_path, pre=None, model=MODEL, seed=0, **data):
    return compatibility.check(
        str(tmp_path / "ck.pt"), write_data(tmp_path / "train.h5", **data), model, pre or pretrained(), seed
    )


def as_the_model_reads(path, meta: CheckpointMeta) -> np.ndarray:
    """The features of a prepared split as the workflow feeds them to the model (evaluate's and a stage's
    `Batches`: columns in the checkpoint's order, padded ones zero)."""
    test = evaluate.batches(str(path), meta)
    try:
        return torch.cat([x for x, _, _ in test.epoch(1)]).numpy()
    finally:
        test.close()


def errors(report: dict) -> list[str]:
    return [c["message"] for c in report["checks"] if c["status"] == "error"]


def test_matching_checkpoint_is_reused_tensor_for_tensor(tmp_path):
    state = write_checkpoint(tmp_path / "ck.pt")
    report, start = run_check(tmp_path)
    assert report["status"] == "ok", compatibility.render(report)
    assert start.state_dict.keys() == state.keys() and all(
        torch.equal(start.state_dict[k], v) for k, v in state.items()
    )
    assert start.meta.new_parameters == [] and start.meta.feature_names == FEATURES
    assert report["parameters"]["reused"] == sum(v.numel() for v in state.values()) and report["parameters"]["new"] == 0


def test_every_problem_is_reported_at_once(tmp_path):
    write_checkpoint(tmp_path / "ck.pt")
    pre = pretrained(
        features="strict",
        locked=["hidden"],
        match={"backbone": "encoder"},
        head={"module": "classifier", "out_features": None},
    )
    report, start = run_check(tmp_path, pre, model=MODEL | {"params": {"hidden": [8, 5]}}, features=FEATURES[::-1])
    assert start is None and report["status"] == "error"
    failed = {c["check"] for c in report["checks"] if c["status"] == "error"}
    assert {"features", "locked", "match", "head", "params", "tensors"} <= failed
    text = compatibility.render(report)
    assert "6 out-of-order (first: g5, g4" in text and "model.params.hidden is [8, 5]" in text and "'backbone'" in text
    assert "'classifier' is not a module of the model" in text and "no start model written" in text


def test_features_reorder_permutes_the_data_to_the_checkpoints_order(tmp_path):
    write_checkpoint(tmp_path / "ck.pt")
    report, start = run_check(tmp_path, features=FEATURES[::-1])
    check = next(c for c in report["checks"] if c["check"] == "features")
    assert check["status"] == "warning" and check["out_of_order"] and start.meta.feature_names == FEATURES
    data = split_files.read(tmp_path / "train.h5")
    np.testing.assert_array_equal(as_the_model_reads(tmp_path / "train.h5", start.meta), data.X[:, ::-1])


def test_features_strict_lists_counts_and_first_names(tmp_path):
    write_checkpoint(tmp_path / "ck.pt")
    found = ["g0", "g1", "g2", "x1", "x2"]
    report, start = run_check(tmp_path, pretrained(features="strict"), features=found)
    (message,) = errors(report)
    assert start is None
    assert (
        "3 missing (first: g3, g4, g5)" in message
        and "2 extra (first: x1, x2)" in message
        and "features: pad" in message
    )


def test_features_reorder_refuses_missing_features_and_suggests_pad(tmp_path):
    write_checkpoint(tmp_path / "ck.pt")
    report, start = run_check(tmp_path, features=FEATURES[:5])
    assert start is None and "set pretrained.features: pad" in errors(report)[0]


def test_features_pad_zero_fills_missing_and_drops_extra(tmp_path):
    write_checkpoint(tmp_path / "ck.pt")
    found = ["x9", "g5", "g0", "g1", "g2"]  # g3, g4 missing; x9 extra; order differs
    report, start = run_check(tmp_path, pretrained(features="pad"), features=found)
    assert report["status"] == "warning" and start.meta.padded_features == ["g3", "g4"]
    assert "2 zero-filled" in compatibility.render(report) and "1 dropped" in compatibility.render(report)
    data = split_files.read(tmp_path / "train.h5")
    aligned = as_the_model_reads(tmp_path / "train.h5", start.meta)
    assert aligned.shape == (len(data.X), len(FEATURES))
    np.testing.assert_array_equal(aligned[:, [3, 4]], 0)
    np.testing.assert_array_equal(aligned[:, [0, 1, 2, 5]], data.X[:, [2, 3, 4, 1]])
    with pytest.raises(StagewiseError, match="features: pad"):
        as_the_model_reads(
            tmp_path / "train.h5", start.meta.replace(padded_features=[])
        )  # not declared as padded: refused


def test_plain_state_dict_takes_feature_names_from_a_file(tmp_path):
    write_checkpoint(tmp_path / "ck.pt", plain=True)
    names = tmp_path / "features.txt"
    names.write_text("\n".join(FEATURES[::-1]) + "\n")
    report, start = run_check(tmp_path, pretrained(feature_names=str(names)))
    assert (
        start is None and "records no model params: set model.params" in errors(report)[-1]
    )  # default hidden [128, 64]
    model = MODEL | {"params": {"hidden": [8, 4]}}
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    report, start = run_check(tmp_path, pretrained(feature_names=str(names), label_names=str(labels)), model=model)
    assert start.meta.feature_names == FEATURES[::-1]
    assert {c["check"]: c["status"] for c in report["checks"]}["features"] == "warning"
    report, _ = run_check(tmp_path, pretrained(feature_names=str(tmp_path / "absent.txt")), model=model)
    assert "pretrained.feature_names: file" in errors(report)[0] and "absent.txt" in errors(report)[0]
    report, start = run_check(tmp_path, pretrained(label_names=str(labels)), model=model)  # no names: never assumed
    assert start is None and "records no feature names, so nothing tells whether" in errors(report)[0]
    assert "pretrained.feature_names: FILE" in errors(report)[0]


def test_a_plain_state_dicts_label_order_is_never_assumed(tmp_path):
    state = write_checkpoint(tmp_path / "ck.pt", plain=True)
    model = MODEL | {"params": {"hidden": [8, 4]}}
    features = tmp_path / "features.txt"
    features.write_text("\n".join(FEATURES) + "\n")
    report, start = run_check(tmp_path, pretrained(feature_names=str(features)), model=model)
    assert start is None and "records no label names, so the order of its outputs is unknown" in errors(report)[0]
    assert "pretrained.label_names: FILE" in errors(report)[0] and "pretrained.head" in errors(report)[0]
    labels = tmp_path / "labels.txt"
    labels.write_text("c\na\nb\n")  # the lab's order: output 0 is c, 1 is a, 2 is b
    report, start = run_check(tmp_path, pretrained(feature_names=str(features), label_names=str(labels)), model=model)
    assert start is not None and "rows are reordered" in compatibility.render(report)
    assert start.meta.label_names == LABELS
    for key in ("head.weight", "head.bias"):  # target a, b, c = checkpoint rows 1, 2, 0
        assert torch.equal(start.state_dict[key], state[key][[1, 2, 0]])
    labels.write_text("a\nb\nx\n")
    report, start = run_check(tmp_path, pretrained(feature_names=str(features), label_names=str(labels)), model=model)
    assert start is None and "differ from the checkpoint's (a, b, x)" in errors(report)[0]


def test_recorded_labels_in_another_order_reorder_the_head(tmp_path):
    state = write_checkpoint(tmp_path / "ck.pt", label_names=["b", "c", "a"])
    report, start = run_check(tmp_path)
    assert report["status"] == "ok", compatibility.render(report)
    assert torch.equal(start.state_dict["head.weight"], state["head.weight"][[2, 0, 1]])
    assert report["mappings"]["labels"] == {"old": ["b", "c", "a"], "order": [2, 0, 1]}


def test_locked_param_changed_is_an_error(tmp_path):
    write_checkpoint(tmp_path / "ck.pt")
    report, start = run_check(
        tmp_path, pretrained(locked=["hidden", "dropout"]), model=MODEL | {"params": {"hidden": [8, 2]}}
    )
    assert start is None
    assert any("model.params.hidden is [8, 2] but the checkpoint was trained with [8, 4]" in m for m in errors(report))
    assert any("'dropout' is not recorded" in m for m in errors(report))


def test_locked_with_a_plain_state_dict_says_it_cannot_be_checked(tmp_path):
    write_checkpoint(tmp_path / "ck.pt", plain=True)
    report, start = run_check(tmp_path, pretrained(locked=["hidden"]), model=MODEL | {"params": {"hidden": [8, 4]}})
    assert start is None and any("is a plain state_dict with no recorded params" in m for m in errors(report))


def test_param_change_is_reported_with_the_tensors_it_breaks(tmp_path):
    write_checkpoint(tmp_path / "ck.pt")
    report, start = run_check(tmp_path, model=MODEL | {"params": {"hidden": [8, 5], "dropout": 0.5}})
    culprit = next(c for c in report["checks"] if c["check"] == "params")
    assert start is None and culprit["param"] == "hidden"
    assert set(culprit["tensors"]) == {
        "encoder.1.linear.weight",
        "encoder.1.linear.bias",
        "encoder.1.norm.weight",
        "encoder.1.norm.bias",
        "encoder.1.norm.running_mean",
        "encoder.1.norm.running_var",
        "head.weight",
    }
    assert any(
        "tensor encoder.1.linear.weight: checkpoint shape (4, 8), new model shape (5, 8)" in m for m in errors(report)
    )
    assert not any("dropout" in m for m in errors(report))  # changes no shape


def test_state_dict_of_another_architecture(tmp_path):
    other = torch.nn.Sequential(torch.nn.Conv1d(4, 8, 3), torch.nn.ReLU(), torch.nn.Conv1d(8, 3, 3))
    torch.save(other.state_dict(), tmp_path / "ck.pt")
    report, start = run_check(tmp_path)
    assert start is None
    missing = next(c for c in report["checks"] if c["check"] == "tensors" and c["status"] == "error")
    assert (
        "16 tensors of the new model have no counterpart in the checkpoint: encoder.0.linear.weight (128, 6)"
        in missing["message"]
    )
    summary = next(c for c in report["checks"] if c["check"] == "tensors" and c["status"] != "error")
    assert "4 unmatched in the checkpoint" in summary["message"] and "0.weight" in summary["message"]


def test_match_renames_checkpoint_modules_incl_submodules(tmp_path):
    state = write_checkpoint(
        tmp_path / "ck.pt", rename=lambda k: k.replace("encoder.0", "trunk.first").replace("encoder.1", "trunk.second")
    )
    report, start = run_check(tmp_path, pretrained(match={"trunk.first": "encoder.0", "trunk.second": "encoder.1"}))
    assert report["status"] == "ok", compatibility.render(report)
    assert torch.equal(start.state_dict["encoder.1.linear.weight"], state["trunk.second.linear.weight"])
    assert report["mappings"]["match"] == {"trunk.first": "encoder.0", "trunk.second": "encoder.1"}


def test_match_naming_a_nonexistent_module(tmp_path):
    write_checkpoint(tmp_path / "ck.pt")
    report, start = run_check(tmp_path, pretrained(match={"backbone": "encoder", "head": "classifier"}))
    messages = errors(report)
    assert start is None
    assert any(
        "pretrained.match: 'backbone' is not a module of the checkpoint; its modules: encoder.0.linear" in m
        for m in messages
    )
    assert any("'head' -> 'classifier': the model has no module 'classifier'" in m for m in messages)


def test_head_replacement_is_seeded_and_records_the_labels(tmp_path):
    state = write_checkpoint(tmp_path / "ck.pt")
    head = {"module": "head", "out_features": None}
    report, start = run_check(tmp_path, pretrained(head=head), labels=["odd", "even"])
    again = run_check(tmp_path, pretrained(head=head), labels=["odd", "even"])[1]
    other_seed = run_check(tmp_path, pretrained(head=head), labels=["odd", "even"], seed=1)[1]
    assert start.state_dict["head.weight"].shape == (2, 4)
    assert torch.equal(start.state_dict["head.weight"], again.state_dict["head.weight"])
    assert not torch.equal(start.state_dict["head.weight"], other_seed.state_dict["head.weight"])
    assert torch.equal(start.state_dict["encoder.1.linear.weight"], state["encoder.1.linear.weight"])
    assert start.meta.new_parameters == ["head.weight", "head.bias"] and start.meta.label_names == ["odd", "even"]
    assert start.meta.head["old_label_names"] == LABELS and start.meta.head["new_label_names"] == ["odd", "even"]
    assert report["parameters"]["tensors"]["dropped"] == ["head.weight", "head.bias"]


def test_labels_differ_without_head_replacement(tmp_path):
    write_checkpoint(tmp_path / "ck.pt")
    report, start = run_check(tmp_path, labels=["odd", "even"])
    assert start is None and any("set pretrained.head" in m for m in errors(report))


def test_head_module_not_found(tmp_path):
    write_checkpoint(tmp_path / "ck.pt")
    report, start = run_check(
        tmp_path, pretrained(head={"module": "classifier", "out_features": 2}), labels=["odd", "even"]
    )
    assert start is None
    assert (
        "pretrained.head.module: 'classifier' is not a module of the model; its modules: encoder" in errors(report)[0]
    )


COVARIATE_PARAMS = PARAMS | {"n_covariates": 2, "inject_covariates": "all"}


@pytest.mark.parametrize("declared", [False, True])
def test_new_categories_widen_every_covariate_layer(tmp_path, declared):
    state = write_checkpoint(tmp_path / "ck.pt", COVARIATE_PARAMS, categories={"batch": ["b1", "b2"]})
    pre = pretrained(new_categories={"batch": ["b3"]} if declared else {})
    report, start = run_check(tmp_path, pre, categories={"batch": ["b3", "b1", "b2"]})
    assert report["status"] == ("ok" if declared else "warning"), compatibility.render(report)
    assert start.meta.categories == {"batch": ["b1", "b2", "b3"]} and start.meta.params["n_covariates"] == 3
    layers = {"encoder.0.linear.weight": 6, "encoder.1.linear.weight": 8}  # covariates follow these input widths
    assert start.meta.new_parameter_masks == {k: [[w + 2, w + 3]] for k, w in layers.items()}
    assert set(start.meta.new_parameters) == set(layers)
    for key, width in layers.items():
        new, old = start.state_dict[key], state[key]
        assert new.shape == (old.shape[0], old.shape[1] + 1)
        assert torch.equal(new[:, : width + 2], old) and new[:, width + 2].abs().sum() > 0
    model = checkpoints.build_model(start)
    assert model(torch.ones(2, 6), torch.eye(3)[:2]).shape == (2, 3)


def test_surgery_with_two_covariates_keeps_each_block_in_place(tmp_path):
    params = PARAMS | {"n_covariates": 4}
    state = write_checkpoint(tmp_path / "ck.pt", params, categories={"batch": ["b1", "b2"], "site": ["s1", "s2"]})
    _, start = run_check(tmp_path, categories={"batch": ["b1", "b2", "b3"], "site": ["s1", "s2", "s3"]})
    new, old = start.state_dict["encoder.0.linear.weight"], state["encoder.0.linear.weight"]
    assert start.meta.new_parameter_masks == {"encoder.0.linear.weight": [[8, 9], [11, 12]]}
    assert torch.equal(new[:, :8], old[:, :8]) and torch.equal(new[:, 9:11], old[:, 8:10])


def test_plain_state_dict_takes_its_categories_from_the_config(tmp_path):
    state = write_checkpoint(tmp_path / "ck.pt", COVARIATE_PARAMS, plain=True)
    model = MODEL | {"params": {"hidden": [8, 4], "inject_covariates": "all"}}
    report, start = run_check(tmp_path, model=model, categories={"batch": ["b1", "b2", "b3"]})
    assert start is None
    assert (
        "the checkpoint records no categories; if its model takes this covariate, list them in "
        "pretrained.categories.batch" in compatibility.render(report)
    )
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(LABELS))
    features = tmp_path / "features.txt"
    features.write_text("\n".join(FEATURES))
    report, start = run_check(
        tmp_path,
        pretrained(categories={"batch": ["b1", "b2"]}, label_names=str(labels), feature_names=str(features)),
        model=model,
        categories={"batch": ["b1", "b2", "b3"]},
    )
    assert start is not None, compatibility.render(report)
    assert start.meta.categories == {"batch": ["b1", "b2", "b3"]} and start.meta.params["n_covariates"] == 3
    assert start.meta.new_parameter_masks == {
        "encoder.0.linear.weight": [[8, 9]],
        "encoder.1.linear.weight": [[10, 11]],
    }
    assert torch.equal(start.state_dict["encoder.1.linear.weight"][:, :10], state["encoder.1.linear.weight"])


def test_listed_categories_must_agree_with_recorded_ones(tmp_path):
    write_checkpoint(tmp_path / "ck.pt", COVARIATE_PARAMS, categories={"batch": ["b1", "b2"]})
    report, start = run_check(
        tmp_path, pretrained(categories={"batch": ["b2", "b1"]}), categories={"batch": ["b1", "b2"]}
    )
    assert start is None
    assert (
        "pretrained.categories {'batch': ['b2', 'b1']} disagrees with the categories the checkpoint records"
        in errors(report)[0]
    )


def test_category_column_missing_in_the_data(tmp_path):
    write_checkpoint(tmp_path / "ck.pt", COVARIATE_PARAMS, categories={"batch": ["b1", "b2"]})
    report, start = run_check(tmp_path)
    assert start is None
    assert "covariate 'batch': column missing" in errors(report)[0] and "data.target.covariates" in errors(report)[0]


def test_undeclared_categories_with_a_declared_list_and_unknown_covariates(tmp_path):
    write_checkpoint(tmp_path / "ck.pt", COVARIATE_PARAMS, categories={"batch": ["b1", "b2"]})
    pre = pretrained(new_categories={"batch": ["b3"], "donor": ["d1"]})
    report, start = run_check(tmp_path, pre, categories={"batch": ["b1", "b3", "b4"]})
    messages = errors(report)
    assert start is None
    assert any("neither in the checkpoint nor in pretrained.new_categories.batch: b4" in m for m in messages)
    assert any("pretrained.new_categories.donor: the checkpoint has no covariate 'donor'" in m for m in messages)


def test_mlp_covariate_injection():
    first, every = MLP(6, 3, [8, 4], n_covariates=2), MLP(6, 3, [8, 4], n_covariates=2, inject_covariates="all")
    assert first.covariate_layers == ["encoder.0.linear"] and first.encoder[1].linear.in_features == 8
    assert (
        every.covariate_layers == ["encoder.0.linear", "encoder.1.linear"] and every.encoder[1].linear.in_features == 10
    )
    assert MLP(6, 3).covariate_layers == []
    with pytest.raises(ValueError, match=r"covariates of shape \(2, 2\), got None"):
        first(torch.ones(2, 6))


def test_run_writes_outputs_or_nothing(tmp_path):
    write_checkpoint(tmp_path / "ck.pt")
    outputs = {
        k: str(tmp_path / "out" / name)
        for k, name in (("json", "c.json"), ("txt", "c.txt"), ("model", "start/model.pt"))
    }
    inputs = {"checkpoint": str(tmp_path / "ck.pt"), "train": write_data(tmp_path / "train.h5")}
    params = {"model": MODEL, "pretrained": pretrained(), "seed": 0}
    compatibility.run(inputs, outputs, params)
    report = json.loads((tmp_path / "out" / "c.json").read_text())
    assert report["status"] == "ok" and (tmp_path / "out" / "c.txt").read_text() == compatibility.render(report)
    assert checkpoints.load(outputs["model"]).meta.parent_sha256
    before = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    with pytest.raises(StagewiseError, match="locked"):
        compatibility.run(inputs, outputs, params | {"pretrained": pretrained(locked=["absent"])})
    assert {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()} == before


# --- through the CLI and the real workflow ------------------------------------------------------


def user_project(tmp_path, **pretrained_keys) -> dict:
    """A CSV target with FEATURES and a checkpoint for it; the config as a dict."""
    rng = np.random.default_rng(0)
    rows = ["label," + ",".join(FEATURES)] + [
        f"{LABELS[i % 3]}," + ",".join(f"{v:.3f}" for v in rng.random(6)) for i in range(60)
    ]
    (tmp_path / "target.csv").write_text("\n".join(rows) + "\n")
    write_checkpoint(tmp_path / "ck.pt", label_names=sorted(LABELS))
    return {
        "data": {"target": {"train": "target.csv", "val_fraction": 0.2, "test_fraction": 0.2}},
        "model": {"architecture": "mlp", "params": {"hidden": [8, 4]}},
        "pretrained": {"checkpoint": "ck.pt", **pretrained_keys},
        "training": {"epochs": 1, "batch_size": 8},
        "experiments": {"one": {"stages": [{"name": "all", "unfreeze_all": True}]}},
        "evaluation": {"baselines": []},
    }


def test_cli_check_exit_codes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = user_project(tmp_path)
    write_config(tmp_path, config)
    assert cli.main(["check", "--config", "config.yaml"]) == 0
    assert "compatibility of ck.pt (stagewise checkpoint): OK" in capsys.readouterr().out
    bad = copy.deepcopy(config)
    bad["pretrained"] |= {"locked": ["hidden"], "match": {"nothing": "encoder"}}
    bad["model"]["params"]["hidden"] = [8, 3]
    write_config(tmp_path, bad)
    assert cli.main(["check", "--config", "config.yaml"]) == 1
    out = capsys.readouterr().out
    assert "ERROR" in out and "model.params.hidden is [8, 3]" in out and "'nothing'" in out
    write_config(tmp_path, config)
    (tmp_path / "ck.pt").write_bytes(b"PK\x03\x04 broken")
    done = subprocess.run(
        [sys.executable, "-m", "stagewise.cli", "check", "--config", "config.yaml"], capture_output=True, text=True
    )
    assert done.returncode == 1 and "ck.pt: corrupt or truncated" in done.stderr and "Traceback" not in done.stderr
    (tmp_path / "ck.pt").unlink()
    assert cli.main(["check", "--config", "config.yaml"]) == 1
    assert "pretrained.checkpoint: ck.pt: not found" in capsys.readouterr().err


def test_cli_check_costs_a_load_not_a_training_start(tmp_path, monkeypatch):
    """`stagewise check` imports neither scikit-learn (the workflow's split, metrics) nor torch's compiler (a real
    optimizer's first construction), and builds no weights for the stages."""
    monkeypatch.chdir(tmp_path)
    config = user_project(tmp_path)
    config["experiments"]["two"] = {
        "stages": [
            {
                "name": "sgd",
                "optimizer": {"name": "SGD", "lr": 0.1, "momentum": 0.9},
                "scheduler": {"name": "MultiStepLR", "milestones": [1]},
            }
        ]
    }
    write_config(tmp_path, config)
    code = (
        "import sys; from stagewise import checkpoints, cli; checkpoints.build_model = None; "
        "rc = cli.main(['check', '--config', 'config.yaml']); "
        "print(rc, sorted(m for m in sys.modules if m.startswith(('sklearn', 'torch._dynamo'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "0 []"


def test_cli_check_validates_every_stage_before_a_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = user_project(tmp_path)
    config["experiments"]["two"] = {
        "stages": [
            {"name": "typo", "train": ["encoder.9"]},
            {"name": "sgd", "optimizer": {"name": "SGD", "lr": 0.1, "momentm": 0.9}},
            {"name": "ok", "unfreeze_last": 1},
            {"name": "values", "optimizer": {"betas": [0.9, 1.5]}},
            {"name": "milestones", "scheduler": {"name": "MultiStepLR"}},
        ]
    }
    write_config(tmp_path, config)
    assert cli.main(["check", "--config", "config.yaml"]) == 1
    out = capsys.readouterr().out
    assert "stages: 2 of 6 valid" in out
    assert "experiments.two.stages[0] (typo).train: 'encoder.9' matches no module" in out
    assert "experiments.two.stages[1] (sgd).optimizer" in out and "momentm" in out
    assert (
        "experiments.two.stages[3] (values).optimizer: AdamW rejects" in out
        and "Invalid beta parameter at index 1: 1.5" in out
    )
    assert "experiments.two.stages[4] (milestones).scheduler: MultiStepLR rejects" in out and "milestones" in out


def test_non_finite_or_integer_weights_are_named(tmp_path):
    state = write_checkpoint(tmp_path / "ck.pt")
    state["encoder.0.linear.weight"][0, 0] = float("nan")
    state["head.bias"] = state["head.bias"].to(torch.int64)
    checkpoints.save(
        tmp_path / "ck.pt",
        state,
        CheckpointMeta(
            architecture="mlp", params=PARAMS, task="classification", feature_names=FEATURES, label_names=LABELS
        ),
    )
    report, start = run_check(tmp_path)
    text = "\n".join(errors(report))
    assert start is None and "NaN or inf values: encoder.0.linear.weight" in text and "head.bias torch.int64" in text


@pytest.mark.e2e
def test_workflow_stops_at_check_compatibility(tmp_path):
    config = user_project(tmp_path, features="strict")
    config["data"]["target"]["features"] = FEATURES[
        ::-1
    ]  # the checkpoint's features in another order: strict refuses it
    write_config(tmp_path, config)
    done = snakemake(tmp_path, check=False)
    assert done.returncode != 0
    assert "pretrained.features: strict" in done.stderr and "6 out-of-order" in done.stderr
    assert (tmp_path / "results/data/target/train.h5").is_file()  # the rule before it ran and its outputs stay
    assert not (tmp_path / "results/start/model.pt").exists() and not (tmp_path / "results/compatibility.json").exists()
    assert not (tmp_path / "results/one").exists() and not (tmp_path / "results/report.html").exists()
    assert "stagewise error" in (tmp_path / "logs/check_compatibility/check_compatibility.log").read_text()
    assert "Traceback" not in done.stderr
    config["pretrained"]["features"] = (
        "reorder"  # now it runs, and the check's warning reaches the terminal, not only the log
    )
    write_config(tmp_path, config)
    done = snakemake(tmp_path, "--until", "check_compatibility", check=False)
    assert (
        done.returncode == 0
        and "stagewise WARNING: check_compatibility: features: pretrained.features: reorder" in done.stderr
    )


@pytest.mark.e2e
def test_workflow_with_padded_and_reordered_features_gives_the_unpadded_numbers(tmp_path, tiny_run):
    """The tiny run's target as a CSV that lacks three always-zero pixels, has an extra column and reversed columns:
    `features: pad` zero-fills, drops and reorders, so every stage trains and scores exactly as on the original data."""
    import pandas as pd
    from conftest import TINY, complete_run
    from sklearn.datasets import load_digits

    digits = load_digits()
    names = [f"pixel_{i // 8}_{i % 8}" for i in range(64)]
    frame = pd.DataFrame(digits.data[600:1000] / 16.0, columns=names)
    absent = [n for n in names if not frame[n].any()][:3]
    frame = frame.drop(columns=absent).assign(qc=np.linspace(0, 1, len(frame)))
    frame = frame[frame.columns[::-1]].assign(label=["even" if d % 2 == 0 else "odd" for d in digits.target[600:1000]])
    frame.to_csv(tmp_path / "target.csv", index=False)
    config = copy.deepcopy(TINY)
    target = {k: v for k, v in config["data"]["target"].items() if k not in ("rows", "label_map")}
    config["data"]["target"] = target | {"train": "target.csv", "label": "label"}
    config["pretrained"]["features"] = "pad"
    complete_run(tmp_path, config)
    report = json.loads((tmp_path / "results/compatibility.json").read_text())
    assert report["status"] == "warning" and report["mappings"]["features"]["zero_filled"] == absent
    start = checkpoints.load(tmp_path / "results/start/model.pt")
    assert start.meta.feature_names == names and start.meta.padded_features == absent
    for stage in ("fixed/stages/1_head", "gradual/stages/1_head", "gradual/stages/2_all"):
        padded, original = (
            json.loads((run / "results" / stage / "test_metrics.json").read_text())["metrics"]
            for run in (tmp_path, tiny_run)
        )
        assert padded == original, stage


def test_cli_check_refuses_one_sample_batches_for_training_batchnorm(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = user_project(tmp_path)
    config["experiments"] = {
        "e": {
            "stages": [
                {"name": "head", "train": ["head"], "batch_size": 1},  # BatchNorm frozen: fine
                {"name": "all", "unfreeze_all": True, "batch_size": 1},
            ]
        }
    }
    write_config(tmp_path, config)
    assert cli.main(["check", "--config", "config.yaml"]) == 1
    out = capsys.readouterr().out
    assert "stages: 1 of 2 valid" in out and "experiments.e.stages[1] (all).batch_size: 1 sample per batch" in out
    assert "encoder.0.norm" in out or "encoder.0" in out
