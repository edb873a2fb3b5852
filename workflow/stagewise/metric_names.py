"""Metric names: which way each is better, and the `evaluation.metrics` family a score belongs to.

Names only, no torch or scikit-learn. Which metrics a task reports, validates and may monitor is its `tasks.Task`
(`headline`, `validation`, `primary`, `monitors`).
"""

from __future__ import annotations

LOWER_IS_BETTER = {"mae", "rmse", "nll"}


def higher_is_better(metric: str) -> bool:
    """False for errors and losses (`val_mae`, `train_loss`), True for everything else."""
    return not (metric.endswith("loss") or metric.removeprefix("val_") in LOWER_IS_BETTER)


def family(name: str) -> str:
    """The `evaluation.metrics` name a score belongs to (`top_3` -> `top_k`, `auprc_donor` -> `auprc`)."""
    return "top_k" if name.startswith("top_") else "auprc" if name.startswith("auprc_") else name
