"""End to end: one real snakemake run of a three-stage experiment, read through stage.json and history.tsv."""

from __future__ import annotations

import copy
import json
import math

import pandas as pd
import pytest
import torch
from conftest import TINY, shared_folder, snakemake, write_config

pytestmark = pytest.mark.e2e

STAGES = [
    # 1: the new head, lr stepped down after epoch 1
    {
        "name": "head",
        "train": ["head"],
        "epochs": 3,
        "optimizer": {"lr": 3.0e-3},
        "scheduler": {"name": "MultiStepLR", "milestones": [1], "gamma": 0.1},
        "tensorboard": True,
    },
    # 2: the top block and the head
    {"name": "top", "unfreeze_last": 1, "epochs": 2, "loss": {"name": "cross_entropy", "class_weights": "balanced"}},
    # 3: everything, cosine restarts per batch, and early stopping that must fire (no gain can exceed 1.0)
    {
        "name": "all",
        "unfreeze_all": True,
        "epochs": 6,
        "layer_decay": 0.5,
        "scheduler": {"name": "CosineAnnealingWarmRestarts", "T_0": 2, "interval": "batch"},
        "early_stopping": {"monitor": "val_accuracy", "patience": 2, "min_delta": 1.0},
    },
]


def _run_stages(workdir):
    cfg = copy.deepcopy(TINY)
    cfg["experiments"] = {"gradual": {"stages": STAGES}}
    write_config(workdir, cfg)
    snakemake(workdir, "results/gradual/stages/3_all/stage.json")  # the chain of stages, no evaluate/report


@pytest.fixture
def staged(tmp_path_factory):
    """The run, once per session for all xdist workers (read only)."""
    return shared_folder(tmp_path_factory, "staged", _run_stages) / "results" / "gradual" / "stages"


def read(stages, folder: str) -> tuple[dict, pd.DataFrame]:
    return json.loads((stages / folder / "stage.json").read_text()), pd.read_csv(
        stages / folder / "history.tsv", sep="\t"
    )


def test_head_stage(staged):
    stage, history = read(staged, "1_head")
    assert stage["effective_config"]["policy"] == {"name": "head", "train": ["head"]}
    assert stage["trainable_parameters"] == 16 * 2 + 2 and stage["freeze_audit"]["modes"]["encoder.1.norm"] == "eval"
    assert history.epoch.tolist() == [1, 2, 3] and history.lr.tolist() == pytest.approx([3e-3, 3e-4, 3e-4])
    assert {"train_loss", "val_loss", "val_accuracy", "seconds", "samples_per_s"} <= set(history.columns)
    assert stage["stopped"] == "completed 3 epochs" and stage["best_epoch"] == int(history.val_loss.idxmin()) + 1
    assert list((staged / "1_head" / "tensorboard").glob("events.out.tfevents.*"))


def test_top_stage_trains_the_last_block_and_the_head(staged):
    stage, _ = read(staged, "2_top")
    modules = stage["freeze_audit"]["modules"]
    assert (
        modules["encoder.0"]["trainable"] == 0
        and modules["encoder.1"]["frozen"] == 0
        and modules["head"]["frozen"] == 0
    )
    assert stage["freeze_audit"]["modes"] == {
        "encoder.0.dropout": "eval",
        "encoder.0.norm": "eval",
        "encoder.1.dropout": "train",
        "encoder.1.norm": "train",
    }
    assert stage["effective_config"]["training"]["optimizer"] == {"lr": 1e-3, "name": "AdamW"}  # inherited
    first = torch.load(staged / "1_head" / "model_best.pt", weights_only=True)["state_dict"]
    second = torch.load(staged / "2_top" / "model_best.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(first[k], second[k]) for k in first if k.startswith("encoder.0."))


def test_all_stage_stops_early_with_cosine_restarts_and_layer_decay(staged):
    stage, history = read(staged, "3_all")
    assert stage["epochs_run"] == 3 and len(history) == 3 and stage["best_epoch"] == 1
    assert stage["stopped"].startswith("early stopping: val_accuracy did not improve for 2 epochs")
    assert stage["frozen_parameters"] == 0
    assert [g["lr_scale"] for g in stage["freeze_audit"]["optimizer_groups"]] == [0.25, 0.5, 1.0]
    # 20 samples, batch 16: 2 batches an epoch; cosine per batch with T_0 = 2 epochs, so the lr of each
    # epoch's last batch is at t = 0.5, 1.5, then restarted at 2.5 = 0.5
    high, low = 0.5e-3 * (1 + math.cos(math.pi / 4)), 0.5e-3 * (1 + math.cos(3 * math.pi / 4))
    assert history.lr.tolist() == pytest.approx([high, low, high])
    best = torch.load(staged / "3_all" / "model_best.pt", weights_only=True)
    assert best["stagewise"]["epoch"] == 1 and best["stagewise"]["stage"] == stage["effective_config"]
