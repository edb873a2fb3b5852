"""Promises of the README that a fault could break silently, each held by a fast test (issue 21).

Each test below was checked to fail with its fault planted in a copy of the package (TESTING.md, "Mutation
testing", lists the faults, the commands and the tests that catch them):

1. `results/metrics.tsv` has exactly one row per evaluated model: every stage of every experiment and each
   baseline (the report step's table, and the list of models the workflow hands it);
2. the bootstrap of "gain vs scratch" is paired as the report step calls it: the same resamples for every
   model (a model compared with itself gains [0, 0], p = 1);
3. reordered YAML keys, at any depth (inside `model`, `pretrained`, ...), change no rule's params, so rerun
   nothing: the params are what Snakemake itself stores and compares (tests/snakemake_params.py);
4. `train: [new]`: the optimizer, and gradient clipping, see only the new entries' gradients (not only:
   the frozen values are restored after each step);
5. `train_per_class` picks its samples with the dataset's seed: two prepares give the same bytes.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, TINY, copy_run
from evaluated import write_evaluated
from stagewise import bootstrap, config, freezing, metrics, tasks
from stagewise.steps import report
from torch.optim.optimizer import register_optimizer_step_pre_hook

EVALUATION = {"bootstrap": 200, "seed": 7, "top_k": [1]}
NAMES = ["even", "odd"]
HEADLINE = ["accuracy", "balanced_accuracy", "precision", "recall", "f1", "auprc", "auroc"]


# --- 1, 2: the report step's table and its paired bootstrap -------------------------------------


def _labels(n: int = 120) -> np.ndarray:
    return np.arange(n) % 2


def _probabilities(y: np.ndarray, noise: float, seed: int) -> np.ndarray:
    """Two-class probabilities that are right more often the lower `noise` is."""
    rng = np.random.default_rng(seed)
    p_odd = np.clip(0.5 + (y - 0.5) * 0.6 + rng.normal(scale=noise, size=len(y)), 0.01, 0.99)
    return np.c_[1 - p_odd, p_odd]


def _evaluated(folder: Path, y: np.ndarray, proba: np.ndarray) -> dict:
    """A model folder as `evaluate` leaves it: test_metrics.json (intervals with EVALUATION's resamples) and
    test_predictions.h5; returns the prediction arrays."""
    data = {"labels": y, "probabilities": proba, "predictions": proba.argmax(1)}
    reps = tasks.get("classification").replicates(data, EVALUATION["bootstrap"], EVALUATION["seed"], top_k=[1])
    scores = metrics.classification(y, proba, NAMES, [1])
    result = {
        "task": "classification",
        "n_test": len(y),
        "label_names": NAMES,
        "metrics": scores,
        "ci": {k: bootstrap.interval(v) for k, v in reps.items() if k in scores},
        "per_class": metrics.per_class(y, proba, NAMES),
        "confusion": metrics.confusion(y, proba.argmax(1), NAMES),
        "model_sha256": "ab" * 32,
    }
    history = {
        "epoch": [1, 2],
        "lr": [1e-3, 1e-3],
        "train_loss": [0.7, 0.6],
        "val_loss": [0.7, 0.65],
        "val_accuracy": [0.6, 0.7],
    }
    write_evaluated(folder, result, data, history)
    return data


def _report(tmp_path: Path, models: list[dict]) -> tuple[pd.DataFrame, str]:
    """Run the report step on `models`; its metrics.tsv and report.html."""
    (tmp_path / "compatibility.json").write_text(json.dumps({"checkpoint": "c.pt", "status": "ok", "checks": []}))
    outputs = {
        "html": str(tmp_path / "report.html"),
        "metrics": str(tmp_path / "metrics.tsv"),
        "figures": str(tmp_path / "figures"),
    }
    report.run(
        {"compatibility": str(tmp_path / "compatibility.json"), "benchmarks": []},
        outputs,
        {"models": models, "title": "promises", "version": "0", "evaluation": EVALUATION},
    )
    return pd.read_csv(outputs["metrics"], sep="\t"), Path(outputs["html"]).read_text()


def _model(tmp_path: Path, experiment: str, stage: str, kind: str, noise: float, seed: int) -> dict:
    folder = tmp_path / "results" / experiment / stage
    y = _labels()
    data = _evaluated(folder, y, _probabilities(y, noise, seed))
    return {"experiment": experiment, "stage": stage, "dir": str(folder), "kind": kind, "data": data}


def _params(model: dict) -> dict:
    return {k: v for k, v in model.items() if k != "data"}


def test_metrics_tsv_has_exactly_one_row_per_evaluated_model(tmp_path):
    models = [
        _model(tmp_path, "a", "1_head", "stage", 0.3, 1),
        _model(tmp_path, "a", "2_all", "stage", 0.2, 2),
        _model(tmp_path, "b", "1_head", "stage", 0.25, 3),
        _model(tmp_path, "scratch", "scratch", "baseline", 0.4, 4),
        _model(tmp_path, "pretrained", "start", "baseline", 0.5, 5),
    ]
    table, page = _report(tmp_path, [_params(m) for m in models])
    expected = [(m["experiment"], m["stage"]) for m in models]
    assert list(zip(table.experiment, table.stage)) == expected  # each once, none dropped or added, in order
    shown = re.findall(r'<tr data-experiment="([^"]+)" data-stage="([^"]+)">', page)
    assert shown == expected  # the HTML table is the same rows
    for model, (_, row) in zip(models, table.iterrows()):
        result = json.loads((Path(model["dir"]) / "test_metrics.json").read_text())
        assert row["n_test"] == result["n_test"]
        for name in HEADLINE:  # each row is its own model's numbers
            assert row[name] == pytest.approx(result["metrics"][name], rel=1e-5, abs=1e-9), (model["experiment"], name)
            assert [row[f"{name}_ci_low"], row[f"{name}_ci_high"]] == pytest.approx(
                result["ci"][name], rel=1e-5, abs=1e-9
            )


def test_report_pairs_every_model_with_scratch_on_the_same_resamples(tmp_path):
    scratch = _model(tmp_path, "scratch", "scratch", "baseline", 0.4, 4)
    twin = {**scratch, "experiment": "twin", "stage": "1_all", "kind": "stage"}  # scratch's own predictions
    better = _model(tmp_path, "better", "1_all", "stage", 0.15, 9)
    table, _ = _report(tmp_path, [_params(m) for m in (twin, better, scratch)])
    rows = table.set_index("experiment")
    for name in HEADLINE:  # a model against itself: no gain on any resample
        assert rows.loc["twin", f"{name}_gain"] == 0, name
        assert rows.loc["twin", f"{name}_gain_ci_low"] == 0 and rows.loc["twin", f"{name}_gain_ci_high"] == 0, name
        assert rows.loc["twin", f"{name}_p_no_gain"] == 1, name
    # another model: exactly the paired interval of the evaluation's resamples (seed, count), shared by both
    draw = (EVALUATION["bootstrap"], EVALUATION["seed"])
    mine = tasks.get("classification").replicates(better["data"], *draw, top_k=[1])
    base = tasks.get("classification").replicates(scratch["data"], *draw, top_k=[1])
    for name in HEADLINE:
        expected = bootstrap.paired(mine[name], base[name], 0.0)
        got = rows.loc["better", [f"{name}_gain_ci_low", f"{name}_gain_ci_high", f"{name}_p_no_gain"]].tolist()
        assert got == pytest.approx([*expected["ci"], expected["p_no_gain"]], rel=1e-5, abs=1e-9), name
    assert rows.loc["better", "accuracy_gain"] > 0 and rows.loc["better", "accuracy_p_no_gain"] < 0.05


# --- 1: the models the workflow hands the report; 3: params under reordered keys ----------------


def _with_every_key_reversed(value):
    """`value` with the keys of every mapping, at every depth, in reverse order (lists keep theirs)."""
    if isinstance(value, dict):
        return {k: _with_every_key_reversed(v) for k, v in reversed(list(value.items()))}
    if isinstance(value, list):
        return [_with_every_key_reversed(v) for v in value]
    return value


def _snakemake_params(folder: Path, cfg: dict, text: str | None = None) -> dict:
    """Per job, the params Snakemake stores and compares for `cfg` (tests/snakemake_params.py); and the models
    the report is given. Nothing runs."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(text if text is not None else yaml.safe_dump(cfg, sort_keys=False))
    env = dict(os.environ)
    if env.get("MUTANT_UNDER_TEST") == "stats":  # mutmut's coverage pass records in-process calls only (TESTING.md)
        del env["MUTANT_UNDER_TEST"]
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "tests/snakemake_params.py"),
            str(REPO / "Snakefile"),
            str(folder),
            str(folder / "config.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=folder,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout.rpartition("STAGEWISE-PARAMS ")[2])


RICH = copy.deepcopy(TINY)  # every section with nested keys, both baselines, three experiments
RICH["pretrained"]["locked"] = ["hidden"]
RICH["evaluation"] = {"bootstrap": 1000, "seed": 0, "top_k": [1, 3], "baselines": ["scratch", "pretrained"]}
RICH["experiments"]["third"] = {
    "stages": [
        {"name": "warm", "train": ["head"], "scheduler": {"name": "CosineAnnealingWarmRestarts"}},
        {"name": "rest", "unfreeze_last": 1, "optimizer": {"lr": 1.0e-4, "weight_decay": 0.01}},
        {"name": "all", "unfreeze_all": True},
    ]
}


def test_the_report_is_given_every_stage_of_every_experiment_and_each_baseline(tmp_path):
    cfg = copy.deepcopy(RICH)
    cfg["pretrained"]["head"] = None  # the untouched pretrained model is a baseline only when its head is kept
    found = _snakemake_params(tmp_path / "w", cfg)
    expected = [
        (name, f"{i + 1}_{stage['name']}")
        for name, e in cfg["experiments"].items()
        for i, stage in enumerate(e["stages"])
    ]
    expected += [("scratch", "scratch"), ("pretrained", "start")]
    models = found["models"]
    assert sorted((m["experiment"], m["stage"]) for m in models) == sorted(expected)  # each exactly once
    evaluated = {key for key in found["params"] if key.startswith("evaluate:")}
    assert evaluated == {f"evaluate:{[('model', m['dir'].removeprefix('results/'))]}" for m in models}
    cfg["evaluation"]["baselines"] = ["scratch"]
    assert ("pretrained", "start") not in {
        (m["experiment"], m["stage"]) for m in _snakemake_params(tmp_path / "s", cfg)["models"]
    }


def test_keys_reordered_at_any_depth_change_no_rules_params(tmp_path):
    plain = _snakemake_params(tmp_path / "plain", RICH)["params"]
    flipped = _with_every_key_reversed(RICH)
    assert list(flipped["model"]) == ["params", "architecture"] and next(iter(flipped["pretrained"])) == "locked"
    text = "# a comment\n" + yaml.safe_dump(flipped, sort_keys=False)
    assert _snakemake_params(tmp_path / "flipped", flipped, text)["params"] == plain
    edited = copy.deepcopy(RICH)  # the probe sees a real edit: exactly that stage's params change
    edited["experiments"]["third"]["stages"][1]["optimizer"]["lr"] = 2.0e-4
    changed = _snakemake_params(tmp_path / "edited", edited)["params"]
    assert {k for k in plain if plain[k] != changed[k]} == {
        "finetune:[('experiment', 'third'), ('index', '2'), ('stage', 'rest')]"
    }


@pytest.mark.e2e
def test_keys_reordered_at_any_depth_rerun_nothing(tiny_run, tmp_path):
    from test_reruns import planned

    workdir = copy_run(tiny_run, tmp_path / "run")
    flipped = _with_every_key_reversed(copy.deepcopy(TINY))
    assert list(flipped["model"]) == ["params", "architecture"] and list(flipped["pretrained"]) == ["head", "training"]
    (workdir / "config.yaml").write_text("# a comment\n" + yaml.safe_dump(flipped, sort_keys=False))
    assert planned(workdir) == set()


@pytest.mark.e2e
def test_metrics_tsv_of_a_run_has_one_row_per_stage_and_baseline(tiny_run):
    table = pd.read_csv(tiny_run / "results/metrics.tsv", sep="\t")
    expected = [
        (name, f"{i + 1}_{s['name']}")
        for name, e in sorted(TINY["experiments"].items())
        for i, s in enumerate(e["stages"])
    ]
    assert list(zip(table.experiment, table.stage)) == [*expected, ("scratch", "scratch")]
    for _, row in table.iterrows():
        folder = "baselines/scratch" if row.experiment == "scratch" else f"{row.experiment}/stages/{row.stage}"
        result = json.loads((tiny_run / "results" / folder / "test_metrics.json").read_text())
        assert row["accuracy"] == pytest.approx(result["metrics"]["accuracy"], rel=1e-5)


# --- 4: train: [new] masks the gradient the optimizer sees ---------------------------------------


def _widened_mlp() -> torch.nn.Module:
    from stagewise.models import build

    torch.manual_seed(0)
    return build("mlp", {"in_features": 6, "out_features": 2, "hidden": [8, 4], "n_covariates": 2})


WEIGHT = "encoder.0.linear.weight"  # its columns 6 and 7 are new (covariate categories added by surgery)


def test_freeze_entries_masks_the_gradient_itself():
    model = _widened_mlp().eval()  # no dropout: both passes give the same gradient
    mask = freezing.entry_masks(model, {WEIGHT: [[6, 8]]})[WEIGHT]
    param = model.get_parameter(WEIGHT)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, c = torch.randn(16, 6), torch.eye(2)[torch.arange(16) % 2]
    model(x, c).sum().backward()
    unmasked = param.grad.clone()
    param.grad = None
    handles = freezing.freeze_entries(model, {WEIGHT: mask}, optimizer)
    model(x, c).sum().backward()
    assert torch.equal(param.grad[~mask], torch.zeros(int((~mask).sum())))  # frozen entries: no gradient at all
    assert torch.equal(param.grad[mask], unmasked[mask]) and unmasked[mask].abs().sum() > 0
    for handle in handles:
        handle.remove()


def test_train_new_optimizer_and_clipping_see_only_the_new_columns_gradient(monkeypatch):
    from test_freezing import run

    seen = {"clip": [], "step": []}
    clip = torch.nn.utils.clip_grad_norm_

    def recording_clip(params, max_norm, *args, **kwargs):
        params = list(params)
        seen["clip"].append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        return clip(params, max_norm, *args, **kwargs)

    def before_step(optimizer, _args, _kwargs):
        grads = {id(p): p.grad.clone() for g in optimizer.param_groups for p in g["params"] if p.grad is not None}
        seen["step"].append(grads)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording_clip)
    model = _widened_mlp()
    mask = freezing.entry_masks(model, {WEIGHT: [[6, 8]]})[WEIGHT]
    handle = register_optimizer_step_pre_hook(before_step)
    try:
        before, after, _result = run(
            model,
            {"train": ["new"], "freeze": ["head"]},
            masks={WEIGHT: mask},
            optimizer={"name": "AdamW", "lr": 0.05, "weight_decay": 0.5},
            grad_clip=1e-3,
        )
    finally:
        handle.remove()
    param = model.get_parameter(WEIGHT)
    assert seen["clip"] and len(seen["clip"]) == len(seen["step"])
    for grads in seen["clip"]:  # what clip_grad_norm_ measures: the new columns only
        assert set(grads) == {WEIGHT} and not grads[WEIGHT][~mask].any() and grads[WEIGHT][mask].any()
    for grads in seen["step"]:  # what the optimizer steps with
        assert not grads[id(param)][~mask].any() and grads[id(param)][mask].any()
    assert torch.equal(before[WEIGHT][~mask].reshape(8, 6), after[WEIGHT][~mask].reshape(8, 6))
    assert not torch.equal(before[WEIGHT][mask], after[WEIGHT][mask])


# --- 5: train_per_class is seeded -------------------------------------------------------------


def _prepare(folder: Path, csv: str, seed: int) -> dict[str, bytes]:
    from stagewise.steps import prepare

    spec = {"train": csv, "val_fraction": 0.25, "test_fraction": 0.25, "train_per_class": 5, "seed": seed}
    full = {
        "data": {"target": spec},
        "model": {},
        "pretrained": {"checkpoint": "model.pt"},
        "experiments": {"e": {"stages": [{"name": "s"}]}},
    }
    dataset = config.validate(full, source="test")["data"]["target"]
    outputs = {k: str(folder / f"{k}.h5") for k in ("train", "val", "test")} | {"summary": str(folder / "summary.json")}
    prepare.run({}, outputs, {"dataset": dataset, "name": "target"})
    return {Path(p).name: Path(p).read_bytes() for p in outputs.values()}


def test_train_per_class_sampling_is_seeded_byte_for_byte(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(240, 3)).astype(np.float32), columns=["g0", "g1", "g2"])
    frame["label"] = np.array(["a", "b", "c"])[np.arange(240) % 3]
    frame.to_csv(tmp_path / "t.csv", index=False)
    first = _prepare(tmp_path / "one", str(tmp_path / "t.csv"), 3)
    assert _prepare(tmp_path / "two", str(tmp_path / "t.csv"), 3) == first  # same config: same bytes
    summary = json.loads(first["summary.json"])
    assert summary["class_counts"]["train"] == {"a": 5, "b": 5, "c": 5}
    _prepare(tmp_path / "other", str(tmp_path / "t.csv"), 4)
    with h5py.File(tmp_path / "one/train.h5") as a, h5py.File(tmp_path / "other/train.h5") as b:
        assert set(a["sample_ids"][()]) != set(b["sample_ids"][()])
    from stagewise.splits import per_class  # the pick alone, from one pool: the seed decides it

    pool, codes = np.arange(0, 240, 2), np.arange(240) % 3
    picked = {seed: per_class(pool, codes, 5, seed) for seed in (3, 4)}
    assert np.array_equal(per_class(pool, codes, 5, 3), picked[3]) and not np.array_equal(picked[3], picked[4])
    assert np.bincount(codes[picked[3]]).tolist() == [5, 5, 5] and set(picked[3]) <= set(pool)


# --- freezing: edges that mutation testing found untested (TESTING.md) ---------------------------


def test_freeze_policy_edges_and_the_whole_audit():
    from stagewise.errors import StagewiseError
    from test_freezing import mlp

    model = mlp()  # 6 -> 8 -> 4 -> 2: encoder.0 72 entries, encoder.1 44, head 10
    first = freezing.entry_masks(model, {"encoder.0.linear.weight": [[0, 2]]})["encoder.0.linear.weight"]
    assert first[:, :2].all() and not first[:, 2:].any()  # a range may start at column 0
    every = {n for n, _ in model.named_parameters()}
    assert freezing.select(model, {"unfreeze_last": 2}, [], {}, "s").names == every  # as many blocks as there are
    with pytest.raises(StagewiseError, match=r"^stage: nothing trains"):
        freezing.select(model, {"train": ["head"], "freeze": ["head"]}, [], {}, "stage")
    freezing.set_trainable(model, freezing.select(model, {"train": ["head"]}, [], {}, "s").names)
    freezing.set_train_mode(model)
    assert freezing.audit(model) == {
        "trainable": 10,
        "frozen": 116,
        "partial": {},
        "modules": {
            "encoder.0": {"trainable": 0, "frozen": 72},
            "encoder.1": {"trainable": 0, "frozen": 44},
            "head": {"trainable": 10, "frozen": 0},
        },
        "modes": {
            "encoder.0.norm": "eval",
            "encoder.0.dropout": "eval",
            "encoder.1.norm": "eval",
            "encoder.1.dropout": "eval",
        },
    }
