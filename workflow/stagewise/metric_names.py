"""The metrics each task reports, which way each is better, and what `early_stopping.monitor` may name.

Names only, no scikit-learn: the config is checked against them before any rule runs.
"""

from __future__ import annotations

from .errors import StagewiseError

# headline test metrics of each task, in display order (`top_k` expands to top_1, top_3, ...)
TASK_METRICS = {
    "classification": ["accuracy", "balanced_accuracy", "precision", "recall", "f1", "auprc", "auroc", "top_k"],
    "regression": ["mae", "rmse", "r2", "pearson", "spearman"],
    "sequence_labeling": ["top_k", "auprc"],
    "counts": ["nll", "elbo", "knn_accuracy"],
}
PRIMARY = {"classification": "accuracy", "regression": "r2", "sequence_labeling": "auprc", "counts": "elbo"}
LOWER_IS_BETTER = {"mae", "rmse", "nll"}
# what every validation pass records in history.tsv as val_<name>, besides val_loss (counts: val_loss only)
VALIDATION = {
    "classification": TASK_METRICS["classification"][:-1],
    "regression": TASK_METRICS["regression"],
    "sequence_labeling": ["top_k", "auprc"],  # and top_k_<class>, auprc_<class> for every class but the first
    "counts": [],
}


def higher_is_better(metric: str) -> bool:
    """False for errors and losses (`val_mae`, `train_loss`), True for everything else."""
    return not (metric.endswith("loss") or metric.removeprefix("val_") in LOWER_IS_BETTER)


def family(name: str) -> str:
    """The `evaluation.metrics` name a score belongs to (`top_3` -> `top_k`, `auprc_donor` -> `auprc`)."""
    return "top_k" if name.startswith("top_") else "auprc" if name.startswith("auprc_") else name


def monitors(task: str, label_names: list[str] | None = None) -> list[str]:
    """The history.tsv columns `early_stopping.monitor` may name; per-class ones only when the labels are known."""
    names = ["val_loss", "train_loss", *(f"val_{m}" for m in VALIDATION[task])]
    if task == "sequence_labeling" and label_names:
        names += [f"val_{m}_{c}" for m in VALIDATION[task] for c in label_names[1:]]
    return names


def check_monitor(task: str, monitor: str, where: str, label_names: list[str] | None = None) -> None:
    """Raise unless `monitor` is a column every epoch of `task` records (per-class names: any, until labels are
    known)."""
    per_class = task == "sequence_labeling" and label_names is None and monitor.startswith(("val_top_k_", "val_auprc_"))
    if monitor not in monitors(task, label_names) and not per_class:
        raise StagewiseError(
            f"{where}.early_stopping.monitor: {monitor!r} is not recorded for task {task!r}; "
            f"choose from {monitors(task, label_names)}"
        )


def check_config(config: dict, source: str) -> None:
    """`evaluation.metrics` and every `early_stopping.monitor` of a validated config against `model.task`."""
    task = config["model"]["task"]
    unknown = sorted(set(config["evaluation"]["metrics"] or []) - set(TASK_METRICS[task]))
    if unknown:
        raise StagewiseError(
            f"{source}: evaluation.metrics: {unknown} do not apply to task {task!r}; "
            f"choose from {TASK_METRICS[task]} or set it to null"
        )
    places = {"training": config["training"], "pretrained.training": config["pretrained"].get("training", {})}
    for experiment, spec in config["experiments"].items():
        places |= {f"experiments.{experiment}.stages[{i}] ({s['name']})": s for i, s in enumerate(spec["stages"])}
    for where, training in places.items():
        monitor = training.get("early_stopping", {}).get("monitor")
        if monitor is not None:
            check_monitor(task, monitor, f"{source}: {where}")
