"""pretrain: train the source model the example transfers from (when no checkpoint is given)."""

from __future__ import annotations

from .. import checkpoints, distributed, launcher, models, tasks, trainer
from ..errors import StagewiseError
from ..io import hdf5
from ..metadata import CheckpointMeta
from ..models import interface
from .stage import config_path, train_and_save


def run(inputs: dict, outputs: dict, params: dict) -> None:
    """Build `model` for the source data's features, labels and covariates and train it from scratch."""
    if launcher.world_size(params["stage"]["training"]) > 1 and distributed.context().world == 1:
        return launcher.launch(
            "stagewise.steps.pretrain:run", inputs, outputs, params, config_path("pretrain")
        )  # the ranks run this again
    with hdf5.open_split(inputs["train"]) as h5:
        layout = hdf5.layout(h5)
    meta = source_model(layout, params["model"])
    meta.update(plugin=params.get("plugin"))
    trainer.seed_everything(params["stage"]["training"]["seed"])
    model = models.from_meta(meta)
    train_and_save(model, meta, inputs, outputs, params["stage"], "pretrain")


def source_model(layout: hdf5.Layout, model_cfg: dict) -> CheckpointMeta:
    """The metadata of the model `pretrain` trains: `model` sized for the source data's features, labels and
    covariates."""
    features, labels, categories = layout.feature_names, layout.label_names, layout.categories
    n_covariates = sum(len(names) for names in categories.values())
    n_outputs = tasks.get(model_cfg["task"]).out_features(len(features), len(labels))
    sizes = models.data_sizes(layout.feature_shape, len(features), n_outputs, n_covariates, len(labels))
    names = models.size_map(model_cfg["architecture"], model_cfg.get("from_data"), bool(n_covariates))
    return CheckpointMeta(
        architecture=model_cfg["architecture"],
        params={**model_cfg["params"], **{a: sizes[n] for a, n in names.items()}},
        interface=interface.Interface.from_dict(model_cfg).to_dict(),
        task=model_cfg["task"],
        feature_names=features,
        label_names=labels,
        new_parameters=[],
        categories=categories or None,
    )


def untrained(train_path: str, model_cfg: dict, seed: int) -> checkpoints.Checkpoint:
    """The model `pretrain` would train, at its seeded init, after a first forward pass on the source data's shape."""
    with hdf5.open_split(train_path) as h5:
        layout = hdf5.layout(h5)
    meta = source_model(layout, model_cfg)
    trainer.seed_everything(seed)
    model = models.from_meta(meta)
    n_covariates = sum(len(names) for names in layout.categories.values())
    output = models.first_forward(model, lambda: model, layout.feature_shape, n_covariates, meta.architecture)
    task = tasks.get(model_cfg["task"])
    problem = task.output_problem(
        output, task.out_features(len(layout.feature_names), len(layout.label_names)), layout.label_shape
    )
    if problem:
        raise StagewiseError(
            f"model output on data.source: {problem} (model.output, model.channels_first, model.returns say how "
            f"to read it)"
        )
    return checkpoints.Checkpoint(model.state_dict(), meta)
