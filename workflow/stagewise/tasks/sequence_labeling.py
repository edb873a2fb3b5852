"""sequence_labeling: per-position logits (N, L, C) against codes (N, L') centre-cropped to L; SpliceAI's metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import StagewiseError
from .base import Task, TaskLoss, class_predictions

if TYPE_CHECKING:
    import numpy as np
    import torch


def crop(y: torch.Tensor | np.ndarray, length: int):
    """Per-position labels cut to the model's `length` output positions, equally from both ends."""
    extra = y.shape[1] - length
    if extra < 0 or extra % 2:
        raise StagewiseError(
            f"sequence_labeling: labels of length {y.shape[1]} cannot be centred on {length} output positions"
        )
    return y[:, extra // 2 : y.shape[1] - extra // 2]


class SequenceLabeling(Task):
    """One class per position; scored per site class, every class but the first (SpliceAI's 'none')."""

    name = "sequence_labeling"
    losses = ("cross_entropy", "focal")
    headline = ("top_k", "auprc")
    validation = headline  # and top_k_<class>, auprc_<class> for every class but the first
    primary = "auprc"

    def _build_loss(self, spec: dict, y: np.ndarray, n_classes: int, device: torch.device, where: str) -> TaskLoss:
        from .. import losses

        base = losses.build(spec, y.reshape(-1), n_classes, device, where)

        def positions(output, y, x, epoch):
            return base(output.reshape(-1, output.shape[-1]), crop(y, output.shape[1]).reshape(-1))

        return positions

    def predictions(self, output, x: np.ndarray | None = None) -> dict[str, np.ndarray]:
        return class_predictions(output)

    def labels(self, output, y: np.ndarray) -> np.ndarray:
        """The per-position labels cropped like the output."""
        import numpy as np

        return np.ascontiguousarray(crop(y, output.shape[1]))

    def validation_metrics(self, output, y: np.ndarray, names: list[str]) -> dict[str, float]:
        from .. import metrics  # scikit-learn and scipy: imported by trainer, not by the compatibility check

        return metrics.sequence_labeling(self.labels(output, y), output.softmax(-1).numpy(), names)

    def score(self, data: dict, names: list[str], top_k: list[int]) -> dict[str, float]:
        from .. import metrics

        return metrics.sequence_labeling(data["labels"], data["probabilities"], names)

    def bootstrap_options(self, names: list[str], top_k: list[int]) -> dict:
        return {"names": names}

    def replicate(self, data: dict, W: np.ndarray, **options) -> dict[str, np.ndarray]:
        from .. import bootstrap

        return bootstrap.sequence_labeling(data, W, **options)

    def positions(self, data: dict) -> int:
        """A resampled sequence brings all its positions."""
        return data["labels"][0].size

    def monitors(self, label_names: list[str] | None = None) -> list[str]:
        """Also val_<metric>_<class> for every class but the first, when the labels are known."""
        names = super().monitors(label_names)
        return names + [f"val_{m}_{c}" for m in self.validation for c in (label_names or [])[1:]]

    def records(self, monitor: str, label_names: list[str] | None = None) -> bool:
        """Per-class names: any, until the labels are known."""
        per_class = label_names is None and monitor.startswith(tuple(f"val_{m}_" for m in self.validation))
        return per_class or super().records(monitor, label_names)

    def _expected_output(
        self, shape: tuple[int, ...], n_outputs: int, label_shape: tuple[int, ...], n: int
    ) -> tuple[str, bool]:
        length = label_shape[0]
        expected = f"per-position logits ({n}, L, {n_outputs}) with L <= {length} positions, centred"
        fits = (
            len(shape) == 3
            and shape[0] == n
            and shape[2] == n_outputs
            and shape[1] <= length
            and (length - shape[1]) % 2 == 0
        )
        if not fits and len(shape) == 3 and shape[1] == n_outputs:
            expected += " (the model returns channels first: set model.channels_first: true)"
        return expected, fits
