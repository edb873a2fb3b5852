"""evaluate: one model on the test split -> test_metrics.json and test_predictions.h5."""

from __future__ import annotations

import h5py
import torch

from .. import checkpoints, metrics, surgery, training
from ..files import atomic_path, sha256_file, write_json
from ..io import hdf5


def run(inputs: dict, outputs: dict, params: dict) -> None:
    """Predict the test split with the checkpoint and score it."""
    ckpt = checkpoints.load(inputs["model"])
    model = checkpoints.build_model(ckpt)
    test = surgery.align(hdf5.read(inputs["test"]), ckpt.meta["feature_names"])
    logits = training.predict(model, torch.from_numpy(test.X), batch_size=512)
    proba = logits.softmax(1).numpy()
    evaluation = params["evaluation"]
    scores = metrics.classification(test.y, proba, test.label_names, evaluation["top_k"])
    wanted = set(evaluation["metrics"])
    scores = {k: v for k, v in scores.items() if k in wanted or (k.startswith("top_") and "top_k" in wanted)}
    with atomic_path(outputs["predictions"]) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("predictions", data=proba.argmax(1))
        h5.create_dataset("probabilities", data=proba)
        h5.create_dataset("labels", data=test.y)
        h5.create_dataset("sample_ids", data=test.sample_ids, dtype=h5py.string_dtype("utf-8"))
        h5.create_dataset("label_names", data=test.label_names, dtype=h5py.string_dtype("utf-8"))
    write_json(outputs["metrics"], {"model": inputs["model"], "model_sha256": sha256_file(inputs["model"]),
                                    "n_test": int(len(test.y)), "metrics": scores})
