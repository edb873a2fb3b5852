"""regression: values (N,) or (N, T) against targets of the same shape; predictions like the target."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Task

if TYPE_CHECKING:
    import numpy as np


class Regression(Task):
    """One or more numbers per sample."""

    name = "regression"
    losses = ("mse", "huber")
    headline = ("mae", "rmse", "r2", "pearson", "spearman")
    validation = headline
    primary = "r2"
    output_kind = "values"
    label_values = True

    def predictions(self, output, x: np.ndarray | None = None) -> dict[str, np.ndarray]:
        return {"predictions": output.numpy()}

    def labels(self, output, y: np.ndarray) -> np.ndarray:
        """The target in the output's shape, as float32."""
        import numpy as np

        return y.reshape(output.shape).astype(np.float32)

    def validation_metrics(self, output, y: np.ndarray, names: list[str]) -> dict[str, float]:
        from .. import metrics  # scikit-learn and scipy: imported by trainer, not by the compatibility check

        return metrics.regression(self.labels(output, y), output.numpy())

    def score(self, data: dict, names: list[str], top_k: list[int]) -> dict[str, float]:
        from .. import metrics

        return metrics.regression(data["labels"], data["predictions"])

    def replicate(self, data: dict, W: np.ndarray, **options) -> dict[str, np.ndarray]:
        from .. import bootstrap

        return bootstrap.regression(data, W)

    def _expected_output(
        self, shape: tuple[int, ...], n_outputs: int, label_shape: tuple[int, ...], n: int
    ) -> tuple[str, bool]:
        targets = label_shape[0] if label_shape else 1
        expected = f"values ({n}, {targets})" + (f" or ({n},)" if targets == 1 else "")
        return expected, shape == (n, targets) or (targets == 1 and shape == (n,))
