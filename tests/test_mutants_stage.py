"""steps.stage.train_and_save without Snakemake: a stage trained on tiny prepared files, its outputs checked exactly.

Written for the mutation score of issue 21 (benchmarks/mutation.sh): before these tests only the end-to-end
workflow reached `train_and_save`, so none of its mutants met a fast test.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import TINY
from stagewise import checkpoints, models
from stagewise import config as sw_config
from stagewise.errors import StagewiseError
from stagewise.files import sha256_file, sha256_json
from stagewise.io import hdf5
from stagewise.metadata import CheckpointMeta
from stagewise.steps import pretrain
from stagewise.steps import stage as sw_stage

FILES = {"best": "model_best.pt", "last": "model_last.pt", "history": "history.tsv", "stage": "stage.json"}
STAGE_KEYS = {
    "label",
    "effective_config",
    "trainable_parameters",
    "frozen_parameters",
    "best_epoch",
    "best",
    "epochs_run",
    "stopped",
    "freeze_audit",
    "seconds",
    "train_seconds",
    "tensorboard",
    "processes",
    "config_sha256",
    "data",
    "data_sha256",
    "parent",
    "parent_sha256",
}


def _write(path: str, n: int, seed: int, regression: bool = False) -> None:
    """A prepared split file, written by the package's own writer (regression: one float target)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    labels, dtype = (["t"], "float32") if regression else (["no", "yes"], "int64")
    y = X[:, 0] * 2 if regression else (X[:, 0] > 0).astype(np.int64)
    layout = hdf5.Layout(
        [f"f{i}" for i in range(6)], labels, (6,), categories={"batch": ["p1", "p2"]}, label_dtype=dtype
    )
    with hdf5.Writer(path, layout, {"split": "train", "source_sha256": "0" * 64}, n) as out:
        out.append(X, y, [f"s{i}" for i in range(n)], {"batch": rng.integers(0, 2, n)})


@pytest.fixture
def data(tmp_path) -> dict:
    """Prepared train and val files (6 features, 2 labels, one covariate of 2 categories)."""
    inputs = {"train": str(tmp_path / "train.h5"), "val": str(tmp_path / "val.h5")}
    _write(inputs["train"], 40, 0)
    _write(inputs["val"], 20, 1)
    return inputs


def _config(**pretrain_training) -> dict:
    config = copy.deepcopy(TINY)
    config["pretrained"]["training"] = {"epochs": 3, "optimizer": {"lr": 3.0e-3}, **pretrain_training}
    return sw_config.validate(config)


def _meta(data: dict, config: dict) -> CheckpointMeta:
    with hdf5.open_split(data["train"]) as h5:
        return pretrain.source_model(hdf5.layout(h5), config["model"])


def _outputs(folder) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    return {key: str(folder / name) for key, name in FILES.items()}


def _history(path: str) -> list[dict]:
    text = Path(path).read_bytes().decode()
    assert text.endswith("\n") and "\r" not in text  # Unix line ends
    header, *rows = [line.split("\t") for line in text.splitlines()]
    assert all(len(row) == len(header) for row in rows)
    return [{k: float(v) for k, v in zip(header, row)} for row in rows]


def _open_for_writing(path: str) -> None:
    """Fails while the stage still holds the file open (HDF5 refuses a second, read-write open)."""
    with h5py.File(path, "r+"):
        pass


def test_a_pretrain_stage_writes_exactly_its_files(data, tmp_path):
    config = _config(early_stopping={"monitor": "val_loss", "mode": "max"})  # best: the worst epoch, not the last
    stage = sw_config.pretrain_config(config)
    meta = _meta(data, config)
    model = models.from_meta(meta)
    outputs = _outputs(tmp_path / "pretrain")
    started = time.perf_counter()
    sw_stage.train_and_save(model, meta, data, outputs, stage, "pretrain")
    elapsed = time.perf_counter() - started

    history = _history(outputs["history"])
    header = Path(outputs["history"]).read_text().splitlines()[0].split("\t")
    assert header[:4] == ["epoch", "lr", "train_loss", "val_loss"] and "val_accuracy" in header
    assert [row["epoch"] for row in history] == [1, 2, 3]
    written = json.loads(Path(outputs["stage"]).read_text())
    assert set(written) == STAGE_KEYS
    best = written["best_epoch"]
    assert 1 <= best < 3 and history[best - 1]["val_loss"] == max(row["val_loss"] for row in history)
    audit = written["freeze_audit"]
    n_parameters = sum(p.numel() for p in model.parameters())
    assert written["trainable_parameters"] == audit["trainable"] == n_parameters
    assert written["frozen_parameters"] == audit["frozen"] == 0
    assert {k: written[k] for k in STAGE_KEYS - {"freeze_audit", "seconds", "train_seconds"}} == {
        "label": "pretrain",
        "effective_config": stage,
        "trainable_parameters": n_parameters,
        "frozen_parameters": 0,
        "best_epoch": best,
        "best": {"val_loss": history[best - 1]["val_loss"]},
        "epochs_run": 3,
        "stopped": "completed 3 epochs",
        "tensorboard": None,
        "processes": 1,
        "config_sha256": sha256_json(stage),
        "data": data["train"],
        "data_sha256": sha256_file(data["train"]),
        "parent": None,
        "parent_sha256": None,
    }
    assert written["train_seconds"] == round(sum(row["seconds"] for row in history), 3)
    assert 0 < written["train_seconds"] <= written["seconds"] <= elapsed + 0.001
    assert written["seconds"] == round(written["seconds"], 3)  # milliseconds

    best_ckpt, last_ckpt = checkpoints.load(outputs["best"]), checkpoints.load(outputs["last"])
    provenance = {k: written[k] for k in ("config_sha256", "data", "data_sha256", "parent", "parent_sha256")}
    for ckpt, epoch in ((best_ckpt, best), (last_ckpt, 3)):
        expected = meta.replace(**provenance, stage=stage, label="pretrain", epoch=epoch)
        assert ckpt.meta.to_dict().items() >= expected.to_dict().items()
    final = model.state_dict()  # the model is left with its last weights
    assert all(torch.equal(last_ckpt.state_dict[k], final[k]) for k in final)
    assert not all(torch.equal(best_ckpt.state_dict[k], final[k]) for k in final)
    assert checkpoints.build_model(best_ckpt).state_dict().keys() == final.keys()
    for path in data.values():
        _open_for_writing(path)  # both splits closed


def test_a_stage_from_a_parent_records_it_trains_its_selection_and_writes_tensorboard(data, tmp_path):
    config = _config()
    meta = _meta(data, config)
    parent = tmp_path / "start.pt"
    checkpoints.save(parent, models.from_meta(meta).state_dict(), meta)
    stage = sw_config.stage_config(config, "gradual", 0)  # train: [head]
    stage["training"]["tensorboard"] = True
    outputs = _outputs(tmp_path / "gradual/1_head")
    board = tmp_path / "gradual/1_head/tensorboard"
    board.mkdir()
    (board / "events.from.a.previous.run").write_text("stale")
    model = checkpoints.build_model(checkpoints.load(parent))
    head = sum(p.numel() for p in model.head.parameters())
    sw_stage.train_and_save(model, meta, data | {"model": str(parent)}, outputs, stage, "gradual/1_head")

    written = json.loads(Path(outputs["stage"]).read_text())
    assert written["label"] == "gradual/1_head" and written["effective_config"] == stage
    assert written["parent"] == str(parent) and written["parent_sha256"] == sha256_file(parent)
    assert written["trainable_parameters"] == head
    assert written["frozen_parameters"] == sum(p.numel() for p in model.parameters()) - head > 0
    assert written["tensorboard"] == str(board)
    events = [p.name for p in board.iterdir()]
    assert "events.from.a.previous.run" not in events and any(name.startswith("events.out") for name in events)
    meta_best = checkpoints.load(outputs["best"]).meta
    assert meta_best.parent == str(parent) and meta_best.label == "gradual/1_head"


def test_the_stage_streams_shuffled_training_batches_seeded_by_the_stage(data, tmp_path, monkeypatch):
    """The training split is read shuffled with the stage's seed and batch size, the validation split in file order;
    both ordered as the model's features (a padded feature zero-filled) with its covariate categories."""
    made = []

    class Recorded(sw_stage.Batches):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.closed = False
            made.append(self)

        def close(self):
            self.closed = True
            super().close()

    monkeypatch.setattr(sw_stage, "Batches", Recorded)
    config = _config()
    meta = _meta(data, config)
    meta.update(feature_names=["f5", "pad", *meta.feature_names[:5]], padded_features=["pad"])
    meta.params["in_features"] = 7
    meta.task = None  # a checkpoint without a task: classification
    stage = sw_config.pretrain_config(config)
    stage["training"] |= {"batch_size": 8, "epochs": 1}  # one epoch: a history of one row
    sw_stage.train_and_save(models.from_meta(meta), meta, data, _outputs(tmp_path / "out"), stage, "pretrain")
    train, val = made
    assert (train.path, train.shuffle, train.seed, train.batch_size) == (
        data["train"],
        True,
        stage["training"]["seed"],
        8,
    )
    assert (val.path, val.shuffle, val.batch_size) == (data["val"], False, 8)
    for batches in made:
        assert batches.columns.tolist() == [5, -1, 0, 1, 2, 3, 4]
        assert batches.categories == {"batch": ["p1", "p2"]}
        assert batches.closed
    (row,) = _history(str(tmp_path / "out/history.tsv"))
    assert row["epoch"] == 1 and "val_accuracy" in row


def test_new_parameters_and_masks_of_the_checkpoint_decide_what_train_new_trains(data, tmp_path):
    config = _config()
    meta = _meta(data, config).replace(
        new_parameters=["head.bias", "encoder.0.linear.weight"],
        new_parameter_masks={"encoder.0.linear.weight": [[4, 6]]},  # 2 new input columns of 32 rows
    )
    stage = sw_config.stage_config(config, "gradual", 0)
    stage["policy"]["train"] = ["new"]
    outputs = _outputs(tmp_path / "new")
    sw_stage.train_and_save(models.from_meta(meta), meta, data, outputs, stage, "gradual/1_head")
    written = json.loads(Path(outputs["stage"]).read_text())
    head = 2 * 16 + 2  # train: [new] trains the head too
    assert written["trainable_parameters"] == head + 32 * 2  # of the partly new weight, only its new entries
    assert written["freeze_audit"]["partial"] == {"encoder.0.linear.weight": 64}
    meta = _meta(data, config).replace(new_parameters=["encoder.1.linear.bias"])  # wholly new, no mask
    sw_stage.train_and_save(models.from_meta(meta), meta, data, outputs, stage, "gradual/1_head")
    written = json.loads(Path(outputs["stage"]).read_text())
    assert written["trainable_parameters"] == head + 16 and written["freeze_audit"]["partial"] == {}


@pytest.mark.parametrize(
    "label,meta_change,policy,where",
    [
        ("gradual/1_head", {}, {"name": "head", "train": ["nothing.*"]}, "experiments.gradual.stages[0] (head).train"),
        ("pretrain", {}, {"name": "x", "freeze": ["nothing.*"]}, "pretrained.training.freeze"),
        (
            "gradual/2_all",
            {"new_parameter_masks": {"missing.weight": [[0, 1]]}},
            {"name": "all", "unfreeze_all": True},
            "checkpoint meta new_parameter_masks",
        ),
    ],
)
def test_stage_errors_name_the_config_key_and_release_the_files(data, tmp_path, label, meta_change, policy, where):
    config = _config()
    meta = _meta(data, config).replace(**meta_change)
    stage = sw_config.pretrain_config(config) | {"policy": policy}
    with pytest.raises(StagewiseError) as error:
        sw_stage.train_and_save(models.from_meta(meta), meta, data, _outputs(tmp_path / "x"), stage, label)
    assert str(error.value).startswith(where)
    assert not (tmp_path / "x/stage.json").exists()


def test_a_failed_fit_closes_both_splits(data, tmp_path):
    config = _config()
    meta = _meta(data, config)
    stage = sw_config.pretrain_config(config)
    stage["training"]["early_stopping"]["monitor"] = "val_nothing"  # trainer.fit refuses it before the first batch
    with pytest.raises(StagewiseError, match=r"^pretrained\.training\.early_stopping\.monitor: 'val_nothing' is not"):
        sw_stage.train_and_save(models.from_meta(meta), meta, data, _outputs(tmp_path / "x"), stage, "pretrain")
    for path in data.values():
        _open_for_writing(path)


@pytest.mark.parametrize(
    "label,path",
    [
        ("gradual/1_head", "experiments.gradual.stages[0] (head)"),
        ("long/12_last_one", "experiments.long.stages[11] (last_one)"),
        ("pretrain", "pretrained.training"),
        ("baselines/scratch", "baselines/scratch"),
        ("baselines/1_x", "baselines/1_x"),
        ("odd/x_head", "odd/x_head"),
    ],
)
def test_config_path_names_the_stage_in_the_config(label, path):
    assert sw_stage.config_path(label) == path


def test_a_regression_stage_trains_and_validates_as_regression(tmp_path):
    data = {"train": str(tmp_path / "train.h5"), "val": str(tmp_path / "val.h5")}
    _write(data["train"], 40, 0, regression=True)
    _write(data["val"], 20, 1, regression=True)
    config = copy.deepcopy(TINY)
    config["model"]["task"] = "regression"
    config["pretrained"]["training"] = {"epochs": 1}
    config = sw_config.validate(config)
    meta = _meta(data, config)
    outputs = _outputs(tmp_path / "out")
    sw_stage.train_and_save(models.from_meta(meta), meta, data, outputs, sw_config.pretrain_config(config), "pretrain")
    (row,) = _history(outputs["history"])
    assert "val_rmse" in row and "val_accuracy" not in row
