"""evaluate: one model on the test split -> test_metrics.json and test_predictions.h5 (next to the model)."""

from __future__ import annotations

import h5py
import numpy as np
import torch
from torch import nn

from .. import bootstrap, checkpoints, metrics, surgery, training
from ..errors import StagewiseError
from ..files import atomic_path, sha256_file, write_json
from ..io import hdf5

PROVENANCE = ["architecture", "task", "label", "epoch", "config_sha256", "data_sha256", "parent", "parent_sha256",
              "stagewise_version", "torch_version", "python_version"]


def _classification(model: nn.Module, test: hdf5.Split, inputs: dict) -> dict:
    proba = training.predict(model, torch.from_numpy(test.X), batch_size=512).softmax(1).numpy()
    return {"labels": test.y, "probabilities": proba, "predictions": proba.argmax(1)}


def _regression(model: nn.Module, test: hdf5.Split, inputs: dict) -> dict:
    out = training.predict(model, torch.from_numpy(test.X), batch_size=512).numpy()
    return {"labels": test.y.astype(float), "predictions": out.reshape(test.y.shape)}


def _sequence_labeling(model: nn.Module, test: hdf5.Split, inputs: dict) -> dict:
    logits = training.predict(model, torch.from_numpy(test.X), batch_size=64)  # (N, classes, L)
    proba = logits.softmax(1).transpose(1, 2).numpy()
    return {"labels": test.y, "probabilities": proba, "predictions": proba.argmax(-1)}


def _counts(model: nn.Module, test: hdf5.Split, inputs: dict) -> dict:
    """A counts model must offer `encode(x) -> latent` and `loss_terms(x) -> (nll, kl)` per sample."""
    if not all(hasattr(model, name) for name in ("encode", "loss_terms")):
        raise StagewiseError(f"{type(model).__name__}: task counts needs model.encode(x) and model.loss_terms(x)")
    model.eval()
    with torch.no_grad():
        x = torch.from_numpy(test.X).float()
        nll, kl = (t.numpy() for t in model.loss_terms(x))
        data = {"nll": nll, "kl": kl, "latent": model.encode(x).numpy(), "labels": test.y}
        if test.label_names and "reference" in inputs:
            reference = hdf5.read(inputs["reference"])
            ref_latent = model.encode(torch.from_numpy(reference.X).float()).numpy()
            data["knn_correct"] = metrics.knn_hits(ref_latent, reference.y, data["latent"], test.y)
    return data


PREDICT = {"classification": _classification, "regression": _regression,
           "sequence_labeling": _sequence_labeling, "counts": _counts}


def score(task: str, data: dict, names: list[str], top_k: list[int]) -> dict:
    """The headline metrics of `task` from the prediction arrays."""
    if task == "classification":
        return metrics.classification(data["labels"], data["probabilities"], names, top_k)
    if task == "regression":
        return metrics.regression(data["labels"], data["predictions"])
    if task == "sequence_labeling":
        return metrics.sequence_labeling(data["labels"], data["probabilities"], names)
    return metrics.counts(data["nll"], data["kl"], data.get("knn_correct"))


def bootstrap_options(task: str, names: list[str], top_k: list[int]) -> dict:
    """Task-specific arguments of `bootstrap.replicates`."""
    return {"classification": {"top_k": top_k}, "sequence_labeling": {"names": names}}.get(task, {})


def _write_predictions(path: str, data: dict, test: hdf5.Split, task: str) -> None:
    strings = h5py.string_dtype("utf-8")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        for name, array in data.items():
            h5.create_dataset(name, data=np.asarray(array))
        h5.create_dataset("sample_ids", data=test.sample_ids, dtype=strings)
        h5.create_dataset("label_names", data=test.label_names, dtype=strings)
        h5.attrs["task"] = task


def run(inputs: dict, outputs: dict, params: dict) -> None:
    """Predict the test split with the checkpoint, score it with bootstrap intervals, write both files."""
    ckpt = checkpoints.load(inputs["model"])
    task = ckpt.meta.get("task", "classification")
    if task not in PREDICT:
        raise StagewiseError(f"{inputs['model']}: unknown task {task!r}; known: {sorted(PREDICT)}")
    test = surgery.align(hdf5.read(inputs["test"]), ckpt.meta["feature_names"], ckpt.meta.get("padded_features", []))
    data = PREDICT[task](checkpoints.build_model(ckpt), test, inputs)
    evaluation, names = params["evaluation"], test.label_names
    scores = metrics.select(score(task, data, names, evaluation["top_k"]), evaluation["metrics"], task)
    resamples, seed = evaluation["bootstrap"], evaluation["seed"]
    reps = bootstrap.replicates(task, data, resamples, seed, **bootstrap_options(task, names, evaluation["top_k"])) if resamples else {}
    result = {"model": inputs["model"], "model_sha256": sha256_file(inputs["model"]), "task": task,
              "n_test": int(len(test.y)), "label_names": names, "metrics": scores,
              "ci": {name: bootstrap.interval(reps[name]) for name in scores if name in reps},
              "bootstrap": {"resamples": resamples, "seed": seed, "level": 0.95},
              "provenance": {key: ckpt.meta[key] for key in PROVENANCE if key in ckpt.meta},
              "effective_config": ckpt.meta.get("stage")}
    if task == "classification":
        result["per_class"] = metrics.per_class(data["labels"], data["probabilities"], names)
        result["confusion"] = metrics.confusion(data["labels"], data["predictions"], names)
    _write_predictions(outputs["predictions"], data, test, task)
    write_json(outputs["metrics"], result)
