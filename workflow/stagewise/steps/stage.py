"""One stage: train it and write its outputs (finetune, train_scratch, pretrain), or check it without training."""

from __future__ import annotations

import csv
import io
import shutil
import time
from pathlib import Path

import torch
from torch import nn

from .. import checkpoints, distributed, freezing, launcher, models, optim, tasks, trainer
from .. import config as sw_config
from ..errors import StagewiseError
from ..files import sha256_file, sha256_json, write_json, write_text
from ..io.batches import Batches
from ..metadata import CheckpointMeta
from ..paths import PRETRAIN_LABEL, config_path, stage_label


def _tsv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), delimiter="\t", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def train_and_save(
    model: nn.Module, meta: CheckpointMeta, inputs: dict, outputs: dict, stage: dict, label: str
) -> None:
    """Train `model` under `stage` (`{training, policy}`) and write model_best/last, history, stage.json."""
    started = time.perf_counter()
    path = config_path(label)
    masks = freezing.entry_masks(model, meta.new_parameter_masks or {}, "checkpoint meta new_parameter_masks")
    selection = freezing.select(model, stage["policy"], meta.new_parameters or [], masks, path)
    ctx = distributed.context()  # in a data-parallel stage only rank 0 validates and writes
    train = _batches(inputs["train"], meta, stage["training"], shuffle=True)
    val = _batches(inputs["val"], meta, stage["training"]) if ctx.main else None
    board = Path(outputs["stage"]).parent / "tensorboard"
    if ctx.main:
        shutil.rmtree(board, ignore_errors=True)  # a rerun's event files replace the previous run's
    try:
        result = trainer.fit(
            model,
            train,
            val,
            stage["training"],
            selection,
            path,
            board,
            meta.task or tasks.DEFAULT,
        )
    finally:
        train.close()
        if val is not None:
            val.close()
    if ctx.main:
        _save(result, meta, inputs, outputs, stage, label, board, time.perf_counter() - started)


def _batches(path: str, meta: CheckpointMeta, training: dict, shuffle: bool = False) -> Batches:
    """A split file served in the model's feature order and covariate columns (training: shuffled, seeded)."""
    return Batches(
        path,
        training["batch_size"],
        shuffle=shuffle,
        seed=training["seed"] if shuffle else 0,
        feature_names=meta.feature_names,
        categories=meta.categories,
        fill=meta.padded_features or [],
    )


def _save(
    result: trainer.Result,
    meta: CheckpointMeta,
    inputs: dict,
    outputs: dict,
    stage: dict,
    label: str,
    board: Path,
    seconds: float,
) -> None:
    """model_best/last with their provenance, history.tsv and stage.json (the freeze audit, the timings)."""
    provenance = {
        "config_sha256": sha256_json(stage),
        "data": inputs["train"],
        "data_sha256": sha256_file(inputs["train"]),
        **(checkpoints.lineage(inputs["model"]) if "model" in inputs else {"parent": None, "parent_sha256": None}),
    }
    meta = meta.replace(**provenance, stage=stage, label=label)
    checkpoints.save(outputs["best"], result.best_state, meta.replace(epoch=result.best_epoch))
    checkpoints.save(outputs["last"], result.last_state, meta.replace(epoch=len(result.history)))
    write_text(outputs["history"], _tsv(result.history))
    monitor = stage["training"]["early_stopping"]["monitor"]
    write_json(
        outputs["stage"],
        {
            "label": label,
            "effective_config": stage,
            "trainable_parameters": result.audit["trainable"],
            "frozen_parameters": result.audit["frozen"],
            "best_epoch": result.best_epoch,
            "best": {monitor: result.history[result.best_epoch - 1][monitor]},
            "epochs_run": len(result.history),
            "stopped": result.stopped,
            "freeze_audit": result.audit,
            "seconds": round(seconds, 3),
            "train_seconds": round(sum(row["seconds"] for row in result.history), 3),
            "tensorboard": str(board) if stage["training"].get("tensorboard") else None,
            "processes": distributed.context().world,
            **provenance,
        },
    )


def validate(start: checkpoints.Checkpoint, config: dict, pretraining: bool = False) -> list[str]:
    """Every stage's problems found without training: names that match nothing, nothing to train,
    optimizer or scheduler arguments torch rejects (what `stagewise check` reports before a run).
    `pretraining`: the pretrain stage on the source model `start`, instead of the experiments' stages."""
    problems = []
    with torch.device("meta"):  # names and shapes only: no weights initialised, copied or allocated
        model = models.from_meta(start.meta)
    masks = freezing.entry_masks(model, start.meta.new_parameter_masks or {})  # the start model's: one for all stages
    stages = (
        [(PRETRAIN_LABEL, sw_config.pretrain_config(config))]
        if pretraining
        else [
            (stage_label(experiment, folder), sw_config.stage_config(config, experiment, index))
            for experiment in config["experiments"]
            for index, folder in enumerate(sw_config.stage_dirs(config, experiment))
        ]
    )
    for label, stage in stages:
        path = config_path(label)
        try:
            tasks.get(start.meta.task).loss_name(
                stage["training"]["loss"], getattr(model, "likelihood", "nb"), f"{path}.loss"
            )
            selection = freezing.select(model, stage["policy"], start.meta.new_parameters or [], masks, path)
            optimizer = optim.build_optimizer(model, selection.names, stage["training"], path, dry_run=True)
            per_process = stage["training"]["batch_size"] // launcher.world_size(stage["training"])
            norms = freezing.batchnorms_in_training(model, selection.names) if per_process < 2 else []
            if norms:
                raise StagewiseError(
                    f"{path}.batch_size: {per_process} sample per batch (and process) while BatchNorm layers train "
                    f"({', '.join(norms[:3])}): batch statistics need two samples or more; raise batch_size or "
                    "freeze those modules"
                )
            optim.Schedule(optimizer, stage["training"]["scheduler"], stage["training"]["epochs"], 1, path)
        except StagewiseError as error:
            problems.append(str(error))
        problems += distributed.check(stage["training"], path)
    return problems
