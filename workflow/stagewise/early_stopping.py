"""Early stopping: the monitored metric, which way is better, and patience."""

from __future__ import annotations

from . import metric_names, tasks


def _improved(value: float, best: float | None, mode: str, delta: float) -> bool:
    if best is None:
        return True
    return value < best - delta if mode == "min" else value > best + delta


class Stopper:
    """Follows `training.early_stopping.monitor` epoch by epoch: which epoch is best, and when patience runs out."""

    def __init__(self, spec: dict, task: str, where: str, label_names: list[str]) -> None:
        tasks.get(task).check_monitor(spec["monitor"], where, label_names)
        self.spec, self.best, self.best_epoch, self.waited, self.stopped = spec, None, 0, 0, ""
        auto = "max" if metric_names.higher_is_better(spec["monitor"]) else "min"
        self.mode = spec["mode"] if spec["mode"] != "auto" else auto

    def update(self, row: dict) -> bool:
        """Record epoch `row`; True if it is the best so far. `stopped` says why training ends, once it does."""
        value, spec = row[self.spec["monitor"]], self.spec
        if _improved(value, self.best, self.mode, spec["min_delta"]):
            self.best, self.best_epoch, self.waited = value, row["epoch"], 0
            return True
        self.waited += 1
        if spec["patience"] and self.waited >= spec["patience"]:
            self.stopped = (
                f"early stopping: {spec['monitor']} did not improve for {self.waited} epochs (best "
                f"{self.best:.6g} at epoch {self.best_epoch})"
            )
        return False
