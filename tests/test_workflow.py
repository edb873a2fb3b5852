"""End to end: the real snakemake on the tiny config."""

from __future__ import annotations

import json

import h5py
import pandas as pd
import pytest
import torch
from conftest import snakemake, write_config

pytestmark = pytest.mark.e2e

STAGE_FILES = [
    "model_best.pt",
    "model_last.pt",
    "history.tsv",
    "stage.json",
    "test_metrics.json",
    "test_predictions.h5",
]


def test_every_contract_output_exists(tiny_run):
    results = tiny_run / "results"
    for dataset in ("source", "target"):
        for name in ("train.h5", "val.h5", "test.h5", "summary.json"):
            assert (results / "data" / dataset / name).is_file(), f"data/{dataset}/{name}"
    for path in [
        "pretrain/model.pt",
        "compatibility.json",
        "compatibility.txt",
        "start/model.pt",
        "report.html",
        "metrics.tsv",
    ]:
        assert (results / path).is_file(), path
    for folder in ["gradual/stages/1_head", "gradual/stages/2_all", "fixed/stages/1_head", "baselines/scratch"]:
        for name in STAGE_FILES:
            assert (results / folder / name).is_file(), f"{folder}/{name}"
    for rule in ["prepare_data", "pretrain", "check_compatibility", "finetune", "train_scratch", "evaluate", "report"]:
        assert list((tiny_run / "logs" / rule).rglob("*.log")), rule
        assert list((tiny_run / "benchmarks" / rule).rglob("*.tsv")), rule


def test_user_config_replaces_the_embedded_example(tiny_run):
    # config/config.yaml defines head_then_all and fixed_extractor; --configfile must not merge them in
    assert not (tiny_run / "results" / "head_then_all").exists()
    assert not (tiny_run / "results" / "fixed_extractor").exists()


def test_prepared_hdf5_layout(tiny_run):
    with h5py.File(tiny_run / "results/data/target/train.h5") as h5:
        assert h5["X"].shape == (20, 64) and h5["X"].chunks[0] <= 20
        assert sorted(h5["y"][()].tolist()) == [0] * 10 + [1] * 10
        assert [s.decode() for s in h5["label_names"][()]] == ["even", "odd"]
        assert h5.attrs["split"] == "train" and len(h5.attrs["source_sha256"]) == 64
    summary = json.loads((tiny_run / "results/data/target/summary.json").read_text())
    assert summary["class_counts"]["train"] == {"even": 10, "odd": 10}


def test_stage_k_starts_from_stage_k_minus_1(tiny_run):
    results = tiny_run / "results"
    second = torch.load(results / "gradual/stages/2_all/model_best.pt", weights_only=True)
    first = results / "gradual/stages/1_head/model_best.pt"
    from stagewise.files import sha256_file

    assert second["stagewise"]["parent_sha256"] == sha256_file(first)
    assert second["stagewise"]["stage"]["training"]["optimizer"] == {"lr": 0.001, "name": "AdamW"}


def test_head_stage_leaves_the_encoder_bitwise_unchanged(tiny_run):
    results = tiny_run / "results"
    start = torch.load(results / "start/model.pt", weights_only=True)["state_dict"]
    head = torch.load(results / "fixed/stages/1_head/model_best.pt", weights_only=True)["state_dict"]
    for name, tensor in start.items():
        if name.startswith("encoder."):
            assert torch.equal(tensor, head[name]), name  # BatchNorm running stats included
    assert not torch.equal(start["head.weight"], head["head.weight"])
    audit = json.loads((results / "fixed/stages/1_head/stage.json").read_text())["freeze_audit"]
    assert audit["modes"]["encoder.0.norm"] == "eval" and audit["modules"]["encoder.0"]["trainable"] == 0


def test_report_holds_the_metrics(tiny_run):
    table = pd.read_csv(tiny_run / "results/metrics.tsv", sep="\t")
    assert set(table.experiment) == {"gradual", "fixed", "scratch"}
    page = (tiny_run / "results/report.html").read_text()
    for accuracy in table.accuracy:
        assert f"{accuracy:.4f}" in page
    assert "data:image/png;base64," in page


def test_second_run_has_nothing_to_do(tiny_run):
    done = snakemake(tiny_run, "-n")
    assert "Nothing to be done" in done.stdout + done.stderr


def test_misspelled_key_fails_before_any_rule(tmp_path, tiny_config):
    tiny_config["training"]["epochz"] = 3
    write_config(tmp_path, tiny_config)
    done = snakemake(tmp_path, check=False)
    assert done.returncode != 0
    assert "config.training" in done.stderr and "'epochz' was unexpected" in done.stderr
    assert not (tmp_path / "results").exists()
