"""finetune and train_scratch: train one stage from a parent checkpoint and write its outputs."""

from __future__ import annotations

from .. import checkpoints, distributed, launcher, models, trainer
from .stage import config_path, train_and_save


def run(inputs: dict, outputs: dict, params: dict) -> None:
    """Continue from the parent checkpoint (`init: parent`) or from a random init of its architecture."""
    if launcher.world_size(params["stage"]["training"]) > 1 and distributed.context().world == 1:
        return launcher.launch(
            "stagewise.steps.finetune:run", inputs, outputs, params, config_path(params["label"])
        )  # the ranks run this again
    parent = checkpoints.load(inputs["model"])
    meta = parent.meta
    if params["init"] == "random":
        trainer.seed_everything(params["stage"]["training"]["seed"])
        model = models.from_meta(meta)
        meta = meta.replace(new_parameters=[])
    else:
        model = checkpoints.build_model(parent)
    train_and_save(model, meta, inputs, outputs, params["stage"], params["label"])
