"""The training loop shared by pretrain, every fine-tuning stage and the scratch baseline."""

from __future__ import annotations

import functools
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import distributed, early_stopping, freezing, optim, tasks
from .errors import StagewiseError
from .io.batches import Batches, batch_bounds


@dataclass
class Result:
    """What a training run produced."""

    best_state: dict[str, torch.Tensor]
    last_state: dict[str, torch.Tensor]
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    stopped: str = ""
    audit: dict = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    """Seed torch and NumPy and ask for deterministic kernels (cuBLAS needs its workspace setting for that)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    torch.use_deterministic_algorithms(True, warn_only=True)


def _autocast(precision: str, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()


def _forward(model: nn.Module, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    return model(x) if c is None else model(x, c)


def predict(
    model: nn.Module, batches: Batches, precision: str = "fp32", keep_inputs: bool = False
) -> tuple[torch.Tensor | dict[str, torch.Tensor], torch.Tensor | None]:
    """Outputs of `model` over a prepared split in file order, in eval mode, on the CPU (dicts for counts), and its
    inputs if asked (count likelihoods need them); memory holds the outputs, not the features."""
    device = next(model.parameters()).device
    model.eval()
    out, xs = [], []
    with torch.no_grad(), _autocast(precision, device):
        for xb, cb, _ in batches.epoch(0, device):
            out.append(tasks.apply(_forward(model, xb, cb), lambda t: t.float().cpu()))
            if keep_inputs:
                xs.append(xb.cpu())
    return tasks.collect(out), (torch.cat(xs) if keep_inputs else None)


def _clone(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _val_row(
    model: nn.Module,
    val: Batches,
    loss_fn: tasks.TaskLoss,
    training: dict,
    device: torch.device,
    task: str,
) -> dict:
    outputs, x = predict(model, val, training["precision"], keep_inputs=tasks.get(task).needs_inputs)
    y = torch.from_numpy(val.y)
    row = {
        "val_loss": float(
            loss_fn(
                tasks.apply(outputs, lambda t: t.to(device)), y.to(device), None if x is None else x.to(device), None
            )
        )
    }
    scores = tasks.get(task).validation_metrics(outputs, val.y, val.label_names)
    return row | {f"val_{k}": v for k, v in scores.items()}


@dataclass
class _Step:
    """What one optimisation step needs, set up once per run."""

    optimizer: torch.optim.Optimizer
    schedule: optim.Schedule
    loss_fn: tasks.TaskLoss
    trained: list[torch.Tensor]  # the parameters the optimizer steps
    masked: list[tuple[torch.Tensor, torch.Tensor]]  # (parameter, mask of its trainable entries) of `train: [new]`
    sizes: torch.Tensor  # rows of each global batch of an epoch
    precision: str
    grad_clip: float | None


def _record_modes(model: nn.Module, seen: dict[str, str]) -> list:
    """Hooks that record the mode (train/eval) each norm and dropout layer first runs in."""

    def record(module: nn.Module, _inputs: tuple, name: str) -> None:
        seen.setdefault(name, "train" if module.training else "eval")

    return [
        m.register_forward_pre_hook(functools.partial(record, name=name))
        for name, m in model.named_modules()
        if isinstance(m, freezing.NORM_AND_DROPOUT)
    ]


def _start(model: nn.Module, train: Batches, training: dict, selection: freezing.Selection, where: str):
    """Seed, place the model on its device, set what trains, and join the data-parallel group if any."""
    ctx = distributed.context()
    seed_everything(training["seed"])
    device = distributed.pick_device(training["device"]) if ctx.world == 1 else distributed.device(training["device"])
    model.to(device)
    freezing.set_trainable(model, selection.names)
    if ctx.world > 1:
        if training["batch_size"] < ctx.world:
            raise StagewiseError(distributed.check(training, where)[0])
        train.shard(ctx.rank, ctx.world)
        if ctx.rank:  # dropout masks differ between ranks; rank 0 keeps one process's stream
            torch.manual_seed(training["seed"] + 7919 * ctx.rank)
        distributed.broadcast_state(model)
    return ctx, device


def _step(
    model: nn.Module,
    train: Batches,
    training: dict,
    selection: freezing.Selection,
    where: str,
    task: str,
    device: torch.device,
) -> _Step:
    """The optimizer over the selected parameters, its schedule, the task's loss and the batch sizes of an epoch."""
    bounds = batch_bounds(len(train.y), training["batch_size"], training=True)
    sizes = torch.tensor([b - a for a, b in bounds], dtype=torch.float64)
    optimizer = optim.build_optimizer(model, selection.names, training, where)
    schedule = optim.Schedule(optimizer, training["scheduler"], training["epochs"], len(sizes), where)
    n_classes = len(train.label_names) or int(train.y.max()) + 1
    loss_fn = tasks.get(task).loss(
        training["loss"], train.y, n_classes, device, getattr(model, "likelihood", "nb"), f"{where}.loss"
    )
    trained = [p for group in optimizer.param_groups for p in group["params"]]
    masked = [(model.get_parameter(name), mask.to(device)) for name, mask in selection.masks.items()]
    return _Step(optimizer, schedule, loss_fn, trained, masked, sizes, training["precision"], training["grad_clip"])


def _train_epoch(model: nn.Module, train: Batches, epoch: int, step: _Step, device: torch.device, bar) -> torch.Tensor:
    """One epoch of optimisation steps; the loss of each batch (summed over the ranks of a data-parallel stage)."""
    world = distributed.context().world
    batch_losses = torch.empty(len(step.sizes), device=device)
    for b, (xb, cb, yb) in enumerate(train.epoch(epoch, device)):
        step.optimizer.zero_grad(set_to_none=True)
        # in a data-parallel stage: this rank's share of the batch's mean loss, so the ranks' gradients add up
        share = 1.0 if world == 1 else len(yb) / float(step.sizes[b])
        if len(yb):
            with _autocast(step.precision, device):
                loss = step.loss_fn(tasks.apply(_forward(model, xb, cb), torch.Tensor.float), yb, xb, epoch)
            loss = loss if world == 1 else loss * share
            loss.backward()
        else:  # a rank's part of the last batch may be empty
            loss = torch.zeros((), device=device)
        if world > 1:
            distributed.all_reduce_gradients(step.trained, step.masked)  # masks of `train: [new]` after the sum
        if step.grad_clip:
            nn.utils.clip_grad_norm_(step.trained, step.grad_clip)
        step.schedule.step(epoch - 1, b)
        batch_losses[b] = loss.detach()
        bar.update()
    return distributed.all_reduce_sum(batch_losses).double().cpu()  # the epoch's one device sync


def _check_finite(values: torch.Tensor, epoch: int, where: str) -> None:
    bad = (~torch.isfinite(values)).nonzero()
    if len(bad):
        raise StagewiseError(
            f"{where}: loss is {values[bad[0, 0]].item()} at epoch {epoch}, batch {bad[0, 0].item() + 1}; "
            "lower optimizer.lr, set grad_clip, or use precision: fp32"
        )


def fit(
    model: nn.Module,
    train: Batches,
    val: Batches | None,
    training: dict,
    selection: freezing.Selection,
    where: str,
    tensorboard: Path | None = None,
    task: str = tasks.DEFAULT,
) -> Result:
    """Train the selected parameters of `model` on the batches of `train`; keep the best state by the monitored
    metric on `val`.

    In a data-parallel stage (`distributed.context().world > 1`) every rank runs this with the same model and
    seed: each global batch of `batch_size` is cut across the ranks (`train` serves this rank's part), each rank's
    loss is weighted by its share of the batch and the gradients are summed, so a step sees the gradient of the
    whole batch's mean loss. Only rank 0 validates (`val` may be None elsewhere), keeps states and writes
    TensorBoard; its early-stopping decision is broadcast."""
    ctx, device = _start(model, train, training, selection, where)
    frozen = freezing.frozen_names(model)
    frozen_start = distributed.digest(model.state_dict(), frozen)
    n, epochs = len(train.y), training["epochs"]
    step = _step(model, train, training, selection, where, task, device)
    handles = freezing.freeze_entries(model, selection.masks, step.optimizer)
    stopper = early_stopping.Stopper(training["early_stopping"], task, where, train.label_names)
    writer = _tensorboard(tensorboard) if training.get("tensorboard") and ctx.main else None
    result, modes_seen = Result(best_state={}, last_state={}), {}
    hooks = _record_modes(model, modes_seen)
    bar = tqdm(total=epochs * len(step.sizes), desc=where, file=sys.stderr, mininterval=1.0, disable=not ctx.main)
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        freezing.set_train_mode(model)
        values = _train_epoch(model, train, epoch, step, device, bar)
        distributed.broadcast_state(model, buffers_only=True)
        _check_finite(values, epoch, where)
        train_seconds = time.perf_counter() - started
        while hooks:  # the modes of the first epoch's first batch are the ones recorded
            hooks.pop().remove()
        row = {"epoch": epoch, "lr": step.schedule.lr, "train_loss": float((values * step.sizes).sum() / n)}
        step.schedule.end_epoch()
        if ctx.main:  # rank 0 validates and decides; the others follow its decision
            row |= _val_row(model, val, step.loss_fn, training, device, task)
            row |= {"seconds": round(time.perf_counter() - started, 4), "samples_per_s": round(n / train_seconds, 1)}
            result.history.append(row)
            bar.set_postfix(train_loss=f"{row['train_loss']:.4g}", val_loss=f"{row['val_loss']:.4g}", refresh=False)
            _log_scalars(writer, row)
            if stopper.update(row):
                result.best_epoch, result.best_state = epoch, _clone(model)
            result.stopped = stopper.stopped
        if distributed.broadcast_flag(bool(result.stopped), device):
            break
    bar.close()
    if writer is not None:
        writer.close()
    for handle in handles:
        handle.remove()
    result.stopped = result.stopped or f"completed {epochs} epochs"
    result.last_state = _clone(model) if ctx.main else {}
    _audit(model, step.optimizer, selection, result, modes_seen, frozen, frozen_start)
    return result


def _log_scalars(writer, row: dict) -> None:
    if writer is not None:
        for key, value in row.items():
            if key != "epoch":
                writer.add_scalar(key, value, row["epoch"])


def _audit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    selection: freezing.Selection,
    result: Result,
    modes_seen: dict,
    frozen: list[str],
    frozen_start: str,
) -> None:
    """The freeze audit: what trained, the optimizer's groups, the layer modes; in a data-parallel stage each
    rank's own view (its final weights, its frozen tensors before and after, its layer modes)."""
    groups = [{"lr_scale": g["lr_scale"], "parameters": g["names"]} for g in optimizer.param_groups]
    result.audit = freezing.audit(model, selection.masks) | {"modes": modes_seen, "optimizer_groups": groups}
    ctx = distributed.context()
    if ctx.world > 1:
        state = model.state_dict()
        result.audit["ranks"] = distributed.gather(
            {
                "rank": ctx.rank,
                "state_sha256": distributed.digest(state),
                "frozen_sha256_start": frozen_start,
                "frozen_sha256_end": distributed.digest(state, frozen),
                "modes": modes_seen,
            }
        )


def _tensorboard(folder: Path | None):
    """A TensorBoard writer for `folder` (the `tensorboard` package is needed)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise StagewiseError(
            "training.tensorboard: true needs the tensorboard package: pip install tensorboard"
        ) from None
    if folder is None:
        raise StagewiseError("training.tensorboard: true but no folder was given for the event files")
    return SummaryWriter(log_dir=str(folder))
