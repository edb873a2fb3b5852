"""Which way each metric is better, and what `early_stopping.monitor` and `evaluation.metrics` may name.

Names only, no torch or scikit-learn: the config is checked against them before any rule runs. Each task's metrics
are its `tasks.Task` (`headline`, `validation`, `primary`, `monitors`).
"""

from __future__ import annotations

from . import tasks
from .errors import StagewiseError

LOWER_IS_BETTER = {"mae", "rmse", "nll"}


def higher_is_better(metric: str) -> bool:
    """False for errors and losses (`val_mae`, `train_loss`), True for everything else."""
    return not (metric.endswith("loss") or metric.removeprefix("val_") in LOWER_IS_BETTER)


def family(name: str) -> str:
    """The `evaluation.metrics` name a score belongs to (`top_3` -> `top_k`, `auprc_donor` -> `auprc`)."""
    return "top_k" if name.startswith("top_") else "auprc" if name.startswith("auprc_") else name


def check_monitor(task: str, monitor: str, where: str, label_names: list[str] | None = None) -> None:
    """Raise unless `monitor` is a column every epoch of `task` records (per-class names: any, until labels are
    known)."""
    spec = tasks.get(task)
    if not spec.records(monitor, label_names):
        raise StagewiseError(
            f"{where}.early_stopping.monitor: {monitor!r} is not recorded for task {task!r}; "
            f"choose from {spec.monitors(label_names)}"
        )


def check_config(config: dict, source: str) -> None:
    """`evaluation.metrics` and every `early_stopping.monitor` of a validated config against `model.task`."""
    task = config["model"]["task"]
    headline = list(tasks.get(task).headline)
    unknown = sorted(set(config["evaluation"]["metrics"] or []) - set(headline))
    if unknown:
        raise StagewiseError(
            f"{source}: evaluation.metrics: {unknown} do not apply to task {task!r}; "
            f"choose from {headline} or set it to null"
        )
    places = {"training": config["training"], "pretrained.training": config["pretrained"].get("training", {})}
    for experiment, spec in config["experiments"].items():
        places |= {f"experiments.{experiment}.stages[{i}] ({s['name']})": s for i, s in enumerate(spec["stages"])}
    for where, training in places.items():
        monitor = training.get("early_stopping", {}).get("monitor")
        if monitor is not None:
            check_monitor(task, monitor, f"{source}: {where}")
