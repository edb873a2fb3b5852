"""pretrain: train the source model the example transfers from (when no checkpoint is given)."""

from __future__ import annotations

from .. import models, training
from ..io import hdf5
from .finetune import train_and_save


def run(inputs: dict, outputs: dict, params: dict) -> None:
    """Build `model` for the source data's features and labels and train it from scratch."""
    features, labels = hdf5.read_names(inputs["train"])
    model_cfg = params["model"]
    arch_params = {**model_cfg["params"], "in_features": len(features), "out_features": len(labels)}
    training.seed_everything(params["stage"]["training"]["seed"])
    model = models.build(model_cfg["architecture"], arch_params)
    meta = {"architecture": model_cfg["architecture"], "params": arch_params, "task": model_cfg["task"],
            "feature_names": features, "label_names": labels, "new_parameters": []}
    train_and_save(model, meta, inputs, outputs, params["stage"], "pretrain")
