"""Loss registry: a config mapping `{name, **kwargs}` -> a loss function of (outputs, targets)."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .errors import StagewiseError

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _weighted_mean(loss: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if weight is None:
        return loss.mean()
    w = weight[targets]
    return (loss * w).sum() / w.sum()


def cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy on logits, with optional label smoothing and class weights (weighted mean)."""
    return F.cross_entropy(logits, targets, weight=weight, label_smoothing=label_smoothing)


def focal(
    logits: torch.Tensor,
    targets: torch.Tensor,
    gamma: float = 2.0,
    alpha: float | list[float] | None = None,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Focal loss (Lin et al. 2017): cross-entropy down-weighted by (1 - p_true)^gamma; `alpha` scales it (per class
    if a list)."""
    log_p = F.log_softmax(logits, dim=1).gather(1, targets[:, None]).squeeze(1)
    loss = -((1 - log_p.exp()) ** gamma) * log_p
    if alpha is not None:
        loss = loss * (
            torch.as_tensor(alpha, dtype=loss.dtype, device=loss.device)[targets] if isinstance(alpha, list) else alpha
        )
    return _weighted_mean(loss, targets, weight)


def _as_targets(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Class labels against several outputs become one-hot vectors; values stay values."""
    if not targets.is_floating_point() and outputs.dim() == 2 and outputs.shape[1] > 1:
        return F.one_hot(targets, outputs.shape[1]).to(outputs.dtype)
    return targets.to(outputs.dtype).reshape(outputs.shape)


def mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error (class labels against logits: one-hot targets)."""
    return F.mse_loss(outputs, _as_targets(outputs, targets))


def huber(outputs: torch.Tensor, targets: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    """Huber loss with threshold `delta` (class labels against logits: one-hot targets)."""
    return F.huber_loss(outputs, _as_targets(outputs, targets), delta=delta)


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "cross_entropy": cross_entropy,
    "focal": focal,
    "mse": mse,
    "huber": huber,
}
WEIGHTED = ("cross_entropy", "focal")  # the losses that take `class_weights`


def class_weights(setting: str | list[float], y: np.ndarray, n_classes: int) -> torch.Tensor:
    """Per-class weights: `balanced` is n / (classes × count) on the training labels (scikit-learn's rule), or a
    list."""
    if setting == "balanced":
        counts = np.bincount(y, minlength=n_classes).astype(np.float64)
        weights = np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0)
    else:
        weights = np.asarray(setting, dtype=np.float64)
        if weights.shape != (n_classes,):
            raise StagewiseError(f"training.loss.class_weights: {len(weights)} weights for {n_classes} classes")
    return torch.tensor(weights, dtype=torch.float32)


def build(spec: dict, y: np.ndarray, n_classes: int, device: torch.device, where: str = "training.loss") -> Loss:
    """The loss named by `spec['name']` with its arguments bound; `class_weights` is computed from the training labels
    `y`."""
    name = spec["name"]
    fn = LOSSES[name]
    kwargs = {k: v for k, v in spec.items() if k not in ("name", "class_weights")}
    accepted = [p for p in list(inspect.signature(fn).parameters)[2:] if p != "weight"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise StagewiseError(f"{where}.{unknown[0]}: not an argument of the {name} loss; it accepts {accepted}")
    if spec.get("class_weights") is not None:
        if name not in WEIGHTED:
            raise StagewiseError(f"{where}.class_weights: only {list(WEIGHTED)} take class weights, not {name}")
        kwargs["weight"] = class_weights(spec["class_weights"], y, n_classes).to(device)
    return lambda outputs, targets: fn(outputs, targets, **kwargs)
