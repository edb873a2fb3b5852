"""counts: a count model (`models.cvae`) scored by the likelihood of its own inputs; labels only annotate samples."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

from ..errors import StagewiseError
from .base import Task, TaskLoss, describe

if TYPE_CHECKING:
    import numpy as np
    import torch


class Counts(Task):
    """The model reconstructs its input counts: its loss is the negative ELBO, `nb` or `zinb` (`likelihood`)."""

    name = "counts"
    losses = ("nb", "zinb")
    headline = ("nll", "elbo", "knn_accuracy")
    validation = ()  # val_loss is the negative ELBO
    primary = "elbo"
    output_per_label = False
    needs_inputs = True
    latent_key = "z_mean"

    def default_loss(self, likelihood: str) -> str:
        """The model's `likelihood`."""
        return likelihood

    def _build_loss(self, spec: dict, y: np.ndarray, n_classes: int, device: torch.device, where: str) -> TaskLoss:
        from .. import likelihoods

        fn = {"nb": likelihoods.nb_loss, "zinb": likelihoods.zinb_loss}[spec["name"]]
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

    def predictions(self, output, x: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The latent means, and per sample the reconstruction NLL and the KL term."""
        import torch

        from .. import likelihoods

        counts = torch.as_tensor(x, dtype=torch.float32)
        likelihood = "zinb" if "dropout_logits" in output else "nb"
        return {
            "latent": output[self.latent_key].numpy(),
            "nll": likelihoods.reconstruction_nll(output, counts, likelihood).numpy(),
            "kl": likelihoods.kl_standard_normal(output["z_mean"], output["z_logvar"]).numpy(),
        }

    def score(self, data: dict, names: list[str], top_k: list[int]) -> dict[str, float]:
        from .. import metrics

        return metrics.counts(data["nll"], data["kl"], data.get("knn_correct"))

    def replicate(self, data: dict, W: np.ndarray, **options) -> dict[str, np.ndarray]:
        from .. import bootstrap

        return bootstrap.counts(data, W)

    def output_problem(self, output: object, n_outputs: int, label_shape: tuple[int, ...], n: int = 2) -> str | None:
        """None for a dict with z_mean (as stagewise's cvae returns)."""
        if isinstance(output, dict) and "z_mean" in output:
            return None
        return (
            "expected a dict with z_mean, z_logvar and the likelihood's parameters (as stagewise's cvae), "
            f"got {describe(output)}"
        )
