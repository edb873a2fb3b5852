"""Tasks (`model.task`): what a model's output means, its default loss, and what evaluation writes.

| task | output of the model | target | default loss | prediction fields |
|---|---|---|---|---|
| classification | logits (N, C) | codes (N,) | cross_entropy | predictions (N,), probabilities (N, C) |
| regression | values (N,) or (N, T) | values (N,) or (N, T) | mse | predictions (like the target) |
| sequence_labeling | logits (N, L, C) | codes (N, L'), cut to L | cross_entropy | predictions (N, L), probabilities |
| counts | dict (`models.cvae`) | the input counts | nb (zinb: `likelihood: zinb`) | latent (N, D), nll (N,), kl (N,) |

Every prediction file also holds `labels` (the target, cropped like the predictions) and
`sample_ids`. The training loop calls `loss(task, spec, y_train, n_classes, device)` once and the
result as `loss_fn(output, y, x, epoch)`; `epoch` is None outside training (full KL weight).
`training.loss.name: auto` (the default) is the task's default loss.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .. import likelihoods, losses
from ..errors import StagewiseError

TaskLoss = Callable[[object, torch.Tensor, torch.Tensor, "int | None"], torch.Tensor]


@dataclass(frozen=True)
class Task:
    """One `model.task`: its losses (the first is the default) and whether the model has one output per label."""

    name: str
    losses: tuple[str, ...]
    output_per_label: bool = True


TASKS = {
    "classification": Task("classification", ("cross_entropy", "focal", "mse", "huber")),
    "regression": Task("regression", ("mse", "huber")),
    "sequence_labeling": Task("sequence_labeling", ("cross_entropy", "focal")),
    "counts": Task("counts", ("nb", "zinb"), output_per_label=False),  # labels (e.g. cell types) only annotate samples
}
COUNT_LOSSES = {"nb": likelihoods.nb_loss, "zinb": likelihoods.zinb_loss}


def get(name: str) -> Task:
    """The task called `name`."""
    if name not in TASKS:
        raise StagewiseError(f"model.task: unknown {name!r}; one of {sorted(TASKS)}")
    return TASKS[name]


def out_features(task: str, n_features: int, n_labels: int) -> int:
    """The model's `out_features`: one output per class or target, or per feature for counts."""
    return n_labels if get(task).output_per_label else n_features


def loss_name(task: str, spec: dict, likelihood: str = "nb", where: str = "training.loss") -> str:
    """The loss a stage uses: `auto` is the task's default (counts: the model's `likelihood`)."""
    name = spec["name"]
    if name == "auto":
        return likelihood if task == "counts" else get(task).losses[0]
    if name not in get(task).losses:
        raise StagewiseError(
            f"{where}.name: {name!r} does not fit model.task {task!r}; use one of {list(get(task).losses)} or auto"
        )
    return name


def loss(
    task: str,
    spec: dict,
    y: np.ndarray,
    n_classes: int,
    device: torch.device,
    likelihood: str = "nb",
    where: str = "training.loss",
) -> TaskLoss:
    """The stage's loss as `fn(output, y, x, epoch)`, with the output and target shaped for it."""
    spec = {**spec, "name": loss_name(task, spec, likelihood, where)}
    if task == "counts":
        return _count_loss(spec, where)
    base = losses.build(spec, y.reshape(-1) if task == "sequence_labeling" else y, n_classes, device, where)
    if task == "sequence_labeling":

        def positions(output, y, x, epoch):
            return base(output.reshape(-1, output.shape[-1]), crop(y, output.shape[1]).reshape(-1))

        return positions
    return lambda output, y, x, epoch: base(output, y)


def _count_loss(spec: dict, where: str) -> TaskLoss:
    fn = COUNT_LOSSES[spec["name"]]
    warmup = spec.get("kl_warmup", 0)
    kwargs = {
        k: v for k, v in spec.items() if k not in ("name", "kl_warmup") and not (k == "class_weights" and v is None)
    }
    unknown = sorted(set(kwargs) - set(list(inspect.signature(fn).parameters)[2:]))
    if unknown or not isinstance(warmup, int) or warmup < 0:
        raise StagewiseError(
            f"{where}: {spec['name']} accepts kl_warmup (epochs, integer >= 0) only; got {sorted(spec)}"
        )
    return lambda output, y, x, epoch: fn(output, x, kl_weight=likelihoods.warmup_weight(epoch, warmup))


def crop(y: torch.Tensor | np.ndarray, length: int):
    """Per-position labels cut to the model's `length` output positions, equally from both ends."""
    extra = y.shape[1] - length
    if extra < 0 or extra % 2:
        raise StagewiseError(
            f"sequence_labeling: labels of length {y.shape[1]} cannot be centred on {length} output positions"
        )
    return y[:, extra // 2 : y.shape[1] - extra // 2]


def collect(chunks: list) -> torch.Tensor | dict[str, torch.Tensor]:
    """Concatenate batched outputs (tensors, or dicts of tensors) along the sample axis."""
    if isinstance(chunks[0], dict):
        return {key: torch.cat([c[key] for c in chunks]) for key in chunks[0]}
    return torch.cat(chunks)


def apply(output, fn: Callable[[torch.Tensor], torch.Tensor]):
    """`fn` applied to an output tensor, or to each tensor of a dict output."""
    return {key: fn(value) for key, value in output.items()} if isinstance(output, dict) else fn(output)


def validation_metrics(task: str, output, y: np.ndarray, names: list[str]) -> dict[str, float]:
    """The metrics of a validation pass that history.tsv records (besides val_loss)."""
    from .. import metrics  # scikit-learn and scipy: imported by trainer, not by the compatibility check

    if task == "classification":
        return metrics.classification(y, output.softmax(-1).numpy(), names, top_k=[])
    if task == "regression":
        return metrics.regression(labels(task, output, y), output.numpy())
    if task == "sequence_labeling":
        return metrics.sequence_labeling(labels(task, output, y), output.softmax(-1).numpy(), names)
    return {}  # counts: val_loss is the negative ELBO


def predictions(task: str, output, x: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The fields of test_predictions.h5 (besides labels and sample_ids) from the collected outputs."""
    if task == "counts":
        counts = torch.as_tensor(x, dtype=torch.float32)
        likelihood = "zinb" if "dropout_logits" in output else "nb"
        return {
            "latent": output["z_mean"].numpy(),
            "nll": likelihoods.reconstruction_nll(output, counts, likelihood).numpy(),
            "kl": likelihoods.kl_standard_normal(output["z_mean"], output["z_logvar"]).numpy(),
        }
    if task == "regression":
        return {"predictions": output.numpy()}
    proba = output.softmax(-1)
    return {"predictions": proba.argmax(-1).numpy(), "probabilities": proba.numpy()}


def labels(task: str, output, y: np.ndarray) -> np.ndarray:
    """The target as stored next to the predictions (per-position labels cropped like the output)."""
    if task == "sequence_labeling":
        return np.ascontiguousarray(crop(y, output.shape[1]))
    if task == "regression":
        return y.reshape(output.shape).astype(np.float32)
    return y


def _describe(output: object) -> str:
    if isinstance(output, torch.Tensor):
        return f"a tensor of shape {tuple(output.shape)}"
    if isinstance(output, dict):
        return f"a dict with keys {list(output)}"
    if isinstance(output, (tuple, list)):
        return f"a {type(output).__name__} of {len(output)}"
    return f"a {type(output).__name__}"


def output_problem(task: str, output: object, n_outputs: int, label_shape: tuple[int, ...], n: int = 2) -> str | None:
    """What is wrong with a model's output on `n` samples for `task` (None when it fits)."""
    if task == "counts":
        return (
            None
            if isinstance(output, dict) and "z_mean" in output
            else f"expected a dict with z_mean, z_logvar and the likelihood's parameters (as stagewise's cvae), "
            f"got {_describe(output)}"
        )
    if not isinstance(output, torch.Tensor):
        return (
            f"expected one tensor, got {_describe(output)}; set model.output to the index, key or attribute of the "
            + ("values" if task == "regression" else "logits")
        )
    shape = tuple(output.shape)
    if task == "classification":
        expected, fits = f"logits ({n}, {n_outputs})", shape == (n, n_outputs)
    elif task == "regression":
        targets = label_shape[0] if label_shape else 1
        expected = f"values ({n}, {targets})" + (f" or ({n},)" if targets == 1 else "")
        fits = shape == (n, targets) or (targets == 1 and shape == (n,))
    else:
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
    return None if fits else f"expected {expected} for {task}, got {shape}"
