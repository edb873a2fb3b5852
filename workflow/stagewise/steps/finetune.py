"""finetune and train_scratch: train one stage from a parent checkpoint and write its outputs."""

from __future__ import annotations

import csv
import io
import time

from torch import nn

from .. import checkpoints, freezing, models, surgery, training
from ..files import sha256_file, sha256_json, write_json, write_text
from ..io import hdf5


def _tsv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), delimiter="\t", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def train_and_save(model: nn.Module, meta: dict, inputs: dict, outputs: dict, stage: dict, label: str) -> None:
    """Train `model` under `stage` (`{training, policy}`) and write model_best/last, history, stage.json."""
    started = time.perf_counter()
    train, val = (surgery.align(hdf5.read(inputs[k]), meta["feature_names"]) for k in ("train", "val"))
    where = f"stage {label}"
    trainable = freezing.trainable_names(model, stage["policy"], meta.get("new_parameters", []), where)
    result = training.fit(model, train, val, stage["training"], trainable, label)
    provenance = {
        "config_sha256": sha256_json(stage),
        "data_sha256": sha256_file(inputs["train"]),
        **(checkpoints.lineage(inputs["model"]) if "model" in inputs else {"parent": None, "parent_sha256": None}),
    }
    meta = meta | provenance | {"stage": stage, "label": label}
    checkpoints.save(outputs["best"], result.best_state, meta | {"epoch": result.best_epoch})
    checkpoints.save(outputs["last"], result.last_state, meta | {"epoch": len(result.history)})
    write_text(outputs["history"], _tsv(result.history))
    write_json(outputs["stage"], {
        "label": label,
        "effective_config": stage,
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped": result.stopped,
        "freeze_audit": result.audit,
        "seconds": round(time.perf_counter() - started, 3),
        **provenance,
    })


def run(inputs: dict, outputs: dict, params: dict) -> None:
    """Continue from the parent checkpoint (`init: parent`) or from a random init of its architecture."""
    parent = checkpoints.load(inputs["model"])
    meta = dict(parent.meta)
    if params["init"] == "random":
        training.seed_everything(params["stage"]["training"]["seed"])
        model = models.build(meta["architecture"], meta["params"])
        meta["new_parameters"] = []
    else:
        model = checkpoints.build_model(parent)
    train_and_save(model, meta, inputs, outputs, params["stage"], params["label"])
