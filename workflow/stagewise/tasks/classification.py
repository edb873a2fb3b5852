"""classification: logits (N, C), class codes (N,); predictions (N,) and probabilities (N, C)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Task, class_predictions

if TYPE_CHECKING:
    import numpy as np


class Classification(Task):
    """One class per sample."""

    name = "classification"
    losses = ("cross_entropy", "focal", "mse", "huber")
    headline = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "auprc", "auroc", "top_k")
    validation = headline[:-1]
    primary = "accuracy"
    one_class_per_sample = True

    def predictions(self, output, x: np.ndarray | None = None) -> dict[str, np.ndarray]:
        return class_predictions(output)

    def validation_metrics(self, output, y: np.ndarray, names: list[str]) -> dict[str, float]:
        from .. import metrics  # scikit-learn and scipy: imported by trainer, not by the compatibility check

        return metrics.classification(y, output.softmax(-1).numpy(), names, top_k=[])

    def score(self, data: dict, names: list[str], top_k: list[int]) -> dict[str, float]:
        from .. import metrics

        return metrics.classification(data["labels"], data["probabilities"], names, top_k)

    def details(self, data: dict, names: list[str]) -> dict:
        from .. import metrics

        return {
            "per_class": metrics.per_class(data["labels"], data["probabilities"], names),
            "confusion": metrics.confusion(data["labels"], data["predictions"], names),
        }

    def bootstrap_options(self, names: list[str], top_k: list[int]) -> dict:
        return {"top_k": top_k}

    def replicate(self, data: dict, W: np.ndarray, **options) -> dict[str, np.ndarray]:
        from .. import bootstrap

        return bootstrap.classification(data, W, **options)

    def _expected_output(
        self, shape: tuple[int, ...], n_outputs: int, label_shape: tuple[int, ...], n: int
    ) -> tuple[str, bool]:
        return f"logits ({n}, {n_outputs})", shape == (n, n_outputs)
