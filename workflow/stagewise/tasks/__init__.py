"""Tasks (`model.task`): one `Task` object each, what a model's output means, how it trains and how it is scored.

| task | output of the model | target | default loss | prediction fields |
|---|---|---|---|---|
| classification | logits (N, C) | codes (N,) | cross_entropy | predictions (N,), probabilities (N, C) |
| regression | values (N,) or (N, T) | values (N,) or (N, T) | mse | predictions (like the target) |
| sequence_labeling | logits (N, L, C) | codes (N, L'), cut to L | cross_entropy | predictions (N, L), probabilities |
| counts | dict (`models.cvae`) | the input counts | nb (zinb: `likelihood: zinb`) | latent (N, D), nll (N,), kl (N,) |

Every prediction file also holds `labels` (the target, cropped like the predictions) and
`sample_ids`. The training loop calls `get(task).loss(spec, y_train, n_classes, device)` once and the
result as `loss_fn(output, y, x, epoch)`; `epoch` is None outside training (full KL weight).
`training.loss.name: auto` (the default) is the task's default loss.

A new task is one module with a `Task` subclass and one entry in `TASKS` (`model.task` accepts its names).
Below `models` in the layering: `models` may import this package, never the reverse.
"""

from __future__ import annotations

from ..errors import StagewiseError
from .base import Task, TaskLoss, apply, collect
from .classification import Classification
from .counts import Counts
from .regression import Regression
from .sequence_labeling import SequenceLabeling, crop

TASKS: dict[str, Task] = {task.name: task for task in (Classification(), Regression(), SequenceLabeling(), Counts())}
DEFAULT = "classification"  # `model.task`'s default, and the task of a checkpoint that records none

__all__ = ["DEFAULT", "TASKS", "Task", "TaskLoss", "apply", "collect", "crop", "get"]


def get(name: str | None) -> Task:
    """The task called `name` (None: `DEFAULT`)."""
    name = DEFAULT if name is None else name
    if name not in TASKS:
        raise StagewiseError(f"model.task: unknown {name!r}; one of {sorted(TASKS)}")
    return TASKS[name]
