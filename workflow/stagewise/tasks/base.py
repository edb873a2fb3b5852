"""The `Task` every `model.task` subclasses, and helpers for model outputs (a tensor, or a dict of tensors).

Only names are read at import: torch, the losses and the metrics are imported where a method needs them, so the
config check (`metric_names`) stays light and `stagewise check` never imports scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import StagewiseError
from ..metric_names import family

if TYPE_CHECKING:
    import numpy as np
    import torch

# the training loop calls it as `loss_fn(output, y, x, epoch)`; `epoch` is None outside training (full KL weight)
TaskLoss = Callable[[object, "torch.Tensor", "torch.Tensor | None", "int | None"], "torch.Tensor"]


class Task:
    """One `model.task`: what the model's output means, how it trains, and what evaluation writes and scores."""

    name: str
    losses: tuple[str, ...]  # the `training.loss.name`s that fit; the first is the default (`auto`)
    headline: tuple[str, ...]  # test metrics in display order (`top_k` expands to top_1, top_3, ...)
    validation: tuple[str, ...]  # what every validation pass records in history.tsv as val_<name>, besides val_loss
    primary: str  # the metric the report ranks models by
    output_per_label = True  # False: one output per feature, labels only annotate samples
    label_values = False  # the labels are target values (regression), not class names
    one_class_per_sample = False  # prepare refuses a target with fewer than two classes, or measurements as classes
    output_kind = "logits"  # what `model.output` names in a model's output
    needs_inputs = False  # the loss and the predictions read the model's inputs
    latent_key: str | None = None  # the output whose embedding transfers labels by kNN from a reference split

    def out_features(self, n_features: int, n_labels: int) -> int:
        """The model's `out_features`: one output per class or target, or per feature."""
        return n_labels if self.output_per_label else n_features

    def default_loss(self, likelihood: str) -> str:
        """The loss of `training.loss.name: auto`."""
        return self.losses[0]

    def loss_name(self, spec: dict, likelihood: str = "nb", where: str = "training.loss") -> str:
        """The loss a stage uses: `auto` is the task's default (counts: the model's `likelihood`)."""
        name = spec["name"]
        if name == "auto":
            return self.default_loss(likelihood)
        if name not in self.losses:
            raise StagewiseError(
                f"{where}.name: {name!r} does not fit model.task {self.name!r}; use one of {list(self.losses)} or auto"
            )
        return name

    def loss(
        self,
        spec: dict,
        y: np.ndarray,
        n_classes: int,
        device: torch.device,
        likelihood: str = "nb",
        where: str = "training.loss",
    ) -> TaskLoss:
        """The stage's loss as `fn(output, y, x, epoch)`, with the output and target shaped for it."""
        return self._build_loss({**spec, "name": self.loss_name(spec, likelihood, where)}, y, n_classes, device, where)

    def _build_loss(self, spec: dict, y: np.ndarray, n_classes: int, device: torch.device, where: str) -> TaskLoss:
        from .. import losses

        base = losses.build(spec, y, n_classes, device, where)
        return lambda output, y, x, epoch: base(output, y)

    def predictions(self, output, x: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The fields of test_predictions.h5 (besides labels and sample_ids) from the collected outputs."""
        raise NotImplementedError

    def labels(self, output, y: np.ndarray) -> np.ndarray:
        """The target as stored next to the predictions."""
        return y

    def validation_metrics(self, output, y: np.ndarray, names: list[str]) -> dict[str, float]:
        """The metrics of a validation pass that history.tsv records (besides val_loss)."""
        return {}

    def score(self, data: dict, names: list[str], top_k: list[int]) -> dict[str, float]:
        """The headline metrics from the prediction arrays."""
        raise NotImplementedError

    def details(self, data: dict, names: list[str]) -> dict:
        """What test_metrics.json holds besides the headline metrics (classification: per class, confusion)."""
        return {}

    def bootstrap_options(self, names: list[str], top_k: list[int]) -> dict:
        """The keyword arguments of `replicate`."""
        return {}

    def replicate(self, data: dict, W: np.ndarray, **options) -> dict[str, np.ndarray]:
        """Every headline metric on each resample, a row of sample multiplicities of `W` (`bootstrap`)."""
        raise NotImplementedError

    def replicates(self, data: dict, resamples: int, seed: int, **options) -> dict[str, np.ndarray]:
        """Every headline metric on each of `resamples` seeded resamples of the test samples (`options`:
        `bootstrap_options`); the same `seed` draws the same resamples for every model, so gains are paired."""
        import warnings

        import numpy as np

        from ..bootstrap import weights

        first = next(iter(data.values()))
        with warnings.catch_warnings():  # a resample without some class leaves that class's curve undefined (nan)
            warnings.simplefilter("ignore", RuntimeWarning)
            chunks = [
                self.replicate(data, W, **options) for W in weights(len(first), resamples, seed, self.positions(data))
            ]
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}

    def select(self, scores: dict, wanted: list[str] | None) -> dict:
        """The headline `scores` named by `evaluation.metrics` (None: all of the task's)."""
        names = self.headline if wanted is None else wanted
        return {name: value for name, value in scores.items() if family(name) in names}

    def check_monitor(self, monitor: str, where: str, label_names: list[str] | None = None) -> None:
        """Raise unless `monitor` is a column every epoch records (per-class names: any, until labels are known)."""
        if not self.records(monitor, label_names):
            raise StagewiseError(
                f"{where}.early_stopping.monitor: {monitor!r} is not recorded for task {self.name!r}; "
                f"choose from {self.monitors(label_names)}"
            )

    def positions(self, data: dict) -> int:
        """How many scored positions a resampled sample brings."""
        return 1

    def monitors(self, label_names: list[str] | None = None) -> list[str]:
        """The history.tsv columns `early_stopping.monitor` may name."""
        return ["val_loss", "train_loss", *(f"val_{m}" for m in self.validation)]

    def records(self, monitor: str, label_names: list[str] | None = None) -> bool:
        """Whether every epoch records the column `monitor`."""
        return monitor in self.monitors(label_names)

    def output_problem(self, output: object, n_outputs: int, label_shape: tuple[int, ...], n: int = 2) -> str | None:
        """What is wrong with a model's output on `n` samples (None when it fits)."""
        import torch

        if not isinstance(output, torch.Tensor):
            return (
                f"expected one tensor, got {describe(output)}; set model.output to the index, key or attribute of the "
                + self.output_kind
            )
        shape = tuple(output.shape)
        expected, fits = self._expected_output(shape, n_outputs, label_shape, n)
        return None if fits else f"expected {expected} for {self.name}, got {shape}"

    def _expected_output(
        self, shape: tuple[int, ...], n_outputs: int, label_shape: tuple[int, ...], n: int
    ) -> tuple[str, bool]:
        """The output tensor the task expects, in words, and whether `shape` is it."""
        raise NotImplementedError


def class_predictions(output) -> dict[str, np.ndarray]:
    """The most probable class and the class probabilities of logits (classes last)."""
    proba = output.softmax(-1)
    return {"predictions": proba.argmax(-1).numpy(), "probabilities": proba.numpy()}


def collect(chunks: list) -> torch.Tensor | dict[str, torch.Tensor]:
    """Concatenate batched outputs (tensors, or dicts of tensors) along the sample axis."""
    import torch

    if isinstance(chunks[0], dict):
        return {key: torch.cat([c[key] for c in chunks]) for key in chunks[0]}
    return torch.cat(chunks)


def apply(output, fn: Callable[[torch.Tensor], torch.Tensor]):
    """`fn` applied to an output tensor, or to each tensor of a dict output."""
    return {key: fn(value) for key, value in output.items()} if isinstance(output, dict) else fn(output)


def describe(output: object) -> str:
    """A model output in words: its type and shape or keys."""
    import torch

    if isinstance(output, torch.Tensor):
        return f"a tensor of shape {tuple(output.shape)}"
    if isinstance(output, dict):
        return f"a dict with keys {list(output)}"
    if isinstance(output, (tuple, list)):
        return f"a {type(output).__name__} of {len(output)}"
    return f"a {type(output).__name__}"
