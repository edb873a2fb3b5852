"""pretrain: train the source model the example transfers from (when no checkpoint is given)."""

from __future__ import annotations

from .. import models, training
from ..io import hdf5
from ..models import tasks
from ..stages import train_and_save


def run(inputs: dict, outputs: dict, params: dict) -> None:
    """Build `model` for the source data's features, labels and covariates and train it from scratch."""
    with hdf5.open_split(inputs["train"]) as h5:
        layout = hdf5.layout(h5)
    model_cfg = params["model"]
    features, labels, categories = layout.feature_names, layout.label_names, layout.categories
    arch_params = {**model_cfg["params"], "in_features": len(features),
                   "out_features": tasks.out_features(model_cfg["task"], len(features), len(labels))}
    if categories:
        arch_params["n_covariates"] = sum(len(names) for names in categories.values())
    training.seed_everything(params["stage"]["training"]["seed"])
    model = models.build(model_cfg["architecture"], arch_params)
    meta = {"architecture": model_cfg["architecture"], "params": arch_params, "task": model_cfg["task"],
            "feature_names": features, "label_names": labels, "new_parameters": [], "plugin": params.get("plugin")}
    if categories:
        meta["categories"] = categories
    train_and_save(model, meta, inputs, outputs, params["stage"], "pretrain")
