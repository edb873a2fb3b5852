"""evaluate: one model on the test split -> test_metrics.json and test_predictions.h5 (next to the model)."""

from __future__ import annotations

import h5py
import numpy as np
from torch import nn

from .. import bootstrap, checkpoints, metrics, tasks, trainer
from ..files import atomic_path, sha256_file, write_json
from ..io.batches import Batches
from ..metadata import CheckpointMeta

PROVENANCE = [
    "architecture",
    "task",
    "label",
    "epoch",
    "config_sha256",
    "data_sha256",
    "parent",
    "parent_sha256",
    "stagewise_version",
    "torch_version",
    "python_version",
]


def batches(path: str, meta: CheckpointMeta) -> Batches:
    """A prepared split streamed in file order, its features in the model's order."""
    return Batches(
        path,
        256,
        feature_names=meta.feature_names,
        categories=meta.categories,
        fill=meta.padded_features or [],
    )


def predict(model: nn.Module, test: Batches, meta: CheckpointMeta, inputs: dict, knn_k: int = 15) -> dict:
    """The prediction arrays of the test split (`tasks`); a task with a latent space (counts) and labels adds kNN
    label transfer (`knn_k` neighbours) from the `reference` split's latent space (labels matched by name)."""
    task = tasks.get(meta.task)
    output, x = trainer.predict(model, test, keep_inputs=task.needs_inputs)
    data = task.predictions(output, x) | {"labels": task.labels(output, test.y)}
    if task.latent_key and test.label_names and inputs.get("reference"):
        reference = batches(inputs["reference"], meta)
        try:
            latent = trainer.predict(model, reference)[0][task.latent_key].numpy()
            known, query = np.array(reference.label_names)[reference.y], np.array(test.label_names)[test.y]
        finally:
            reference.close()
        data["knn_correct"] = metrics.knn_hits(latent, known, data["latent"], query, knn_k)
    return data


def _write_predictions(path: str, data: dict, sample_ids: list[str], label_names: list[str], task: str) -> None:
    strings = h5py.string_dtype("utf-8")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        for name, array in data.items():
            h5.create_dataset(name, data=np.asarray(array))
        h5.create_dataset("sample_ids", data=sample_ids, dtype=strings)
        h5.create_dataset("label_names", data=label_names, dtype=strings)
        h5.attrs["task"] = task


def run(inputs: dict, outputs: dict, params: dict) -> None:
    """Predict the test split with the checkpoint, score it with bootstrap intervals, write both files."""
    ckpt = checkpoints.load(inputs["model"])
    spec = tasks.get(ckpt.meta.task)
    task = spec.name
    test = batches(inputs["test"], ckpt.meta)
    try:
        data = predict(checkpoints.build_model(ckpt), test, ckpt.meta, inputs, params["evaluation"].get("knn_k", 15))
        sample_ids = test.sample_ids
    finally:
        test.close()
    evaluation, names = params["evaluation"], test.label_names
    scores = spec.select(spec.score(data, names, evaluation["top_k"]), evaluation["metrics"])
    resamples, seed = evaluation["bootstrap"], evaluation["seed"]
    reps = (
        spec.replicates(data, resamples, seed, **spec.bootstrap_options(names, evaluation["top_k"]))
        if resamples
        else {}
    )
    result = {
        "model": inputs["model"],
        "model_sha256": sha256_file(inputs["model"]),
        "task": task,
        "n_test": len(test.y),
        "label_names": names,
        "metrics": scores,
        "ci": {name: bootstrap.interval(reps[name]) for name in scores if name in reps},
        "bootstrap": {"resamples": resamples, "seed": seed, "level": 0.95},
        "provenance": {key: value for key, value in ckpt.meta.to_dict().items() if key in PROVENANCE},
        "effective_config": ckpt.meta.stage,
    }
    result |= spec.details(data, names)
    _write_predictions(outputs["predictions"], data, sample_ids, names, task)
    write_json(outputs["metrics"], result)
