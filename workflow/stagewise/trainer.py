"""The training loop shared by pretrain, every fine-tuning stage and the scratch baseline."""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import distributed, freezing, metric_names, optim, tasks
from .errors import StagewiseError
from .io.batches import Batches, batch_bounds, one_hot
from .io.hdf5 import Split

RESIDENT_BYTES = 2 << 30  # a training set smaller than this is moved to the GPU once, not per batch


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


def pick_device(name: str) -> torch.device:
    """`auto` is CUDA when available, else CPU."""
    if name == "cuda" and not torch.cuda.is_available():
        raise StagewiseError("training.device: cuda requested but torch sees no GPU; use device: auto or cpu")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def _autocast(precision: str, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()


def covariate_inputs(split: Split, categories: dict[str, list[str]] | None) -> torch.Tensor | None:
    """The one-hot covariates a model takes (concatenated in `categories` order), or None when it takes none."""
    if not categories:
        return None
    return torch.from_numpy(one_hot(split.covariates, split.categories, categories, "the data"))


def _forward(model: nn.Module, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    return model(x) if c is None else model(x, c)


def predict(
    model: nn.Module, X: torch.Tensor, batch_size: int, precision: str = "fp32", covariates: torch.Tensor | None = None
) -> torch.Tensor | dict[str, torch.Tensor]:
    """Outputs of `model` on `X` (and its one-hot `covariates`), in eval mode, batched, on the CPU (dicts for
    counts)."""
    device = next(model.parameters()).device
    model.eval()
    out = []
    with torch.no_grad(), _autocast(precision, device):
        for start in range(0, len(X), batch_size):
            c = None if covariates is None else covariates[start : start + batch_size].to(device)
            out.append(
                tasks.apply(_forward(model, X[start : start + batch_size].to(device), c), lambda t: t.float().cpu())
            )
    return tasks.collect(out)


def predict_stream(
    model: nn.Module, batches: Batches, precision: str = "fp32", keep_inputs: bool = False
) -> tuple[torch.Tensor | dict[str, torch.Tensor], torch.Tensor | None]:
    """Outputs of `model` over a prepared split read block by block in file order, and its inputs if asked
    (count likelihoods need them); memory holds the outputs, not the features."""
    device = next(model.parameters()).device
    model.eval()
    out, xs = [], []
    with torch.no_grad(), _autocast(precision, device):
        for xb, cb, _ in batches.epoch(0, device):
            out.append(tasks.apply(_forward(model, xb, cb), lambda t: t.float().cpu()))
            if keep_inputs:
                xs.append(xb.cpu())
    return tasks.collect(out), (torch.cat(xs) if keep_inputs else None)


def _resident(tensor: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    if tensor is None or device.type == "cpu" or tensor.nbytes > RESIDENT_BYTES:
        return tensor
    return tensor.to(device)


def _batches(
    data: tuple, order: torch.Tensor, bounds: list[tuple[int, int]], device: torch.device, rank: int = 0, world: int = 1
) -> Iterator[tuple]:
    """(x, covariates or None, y) batches of `order` cut at `bounds`: one whole-batch gather per tensor, then to
    `device`
    (of a data-parallel stage: rank `rank`'s part of each batch, as `Batches.shard` cuts it)."""
    order = order.to(data[0].device)
    for start, stop in bounds:
        idx = order[start:stop]
        if world > 1:
            idx = idx[distributed.shard(len(idx), rank, world)]
        yield tuple(None if t is None else t[idx].to(device, non_blocking=True) for t in data)


def _improved(value: float, best: float | None, mode: str, delta: float) -> bool:
    if best is None:
        return True
    return value < best - delta if mode == "min" else value > best + delta


def _clone(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _val_outputs(model: nn.Module, val: Split | Batches, categories: dict | None, training: dict, task: str) -> tuple:
    """Validation outputs, targets and inputs (None unless the loss needs them): streamed from the file, or a Split in
    RAM."""
    if isinstance(val, Batches):
        outputs, x = predict_stream(model, val, training["precision"], keep_inputs=tasks.get(task).needs_inputs)
        return outputs, torch.from_numpy(val.y), x
    x = torch.from_numpy(val.X)
    return (
        predict(model, x, training["batch_size"], training["precision"], covariate_inputs(val, categories)),
        torch.from_numpy(val.y),
        x,
    )


def _val_row(
    model: nn.Module,
    val: Split | Batches,
    categories: dict | None,
    loss_fn: tasks.TaskLoss,
    training: dict,
    device: torch.device,
    task: str,
) -> dict:
    outputs, y, x = _val_outputs(model, val, categories, training, task)
    row = {
        "val_loss": float(
            loss_fn(
                tasks.apply(outputs, lambda t: t.to(device)), y.to(device), None if x is None else x.to(device), None
            )
        )
    }
    scores = tasks.get(task).validation_metrics(outputs, val.y, val.label_names)
    return row | {f"val_{k}": v for k, v in scores.items()}


def _frozen_names(model: nn.Module) -> list[str]:
    """Parameters that do not train and the buffers of modules whose parameters all are frozen (BatchNorm
    statistics)."""
    names = [n for n, p in model.named_parameters() if not p.requires_grad]
    for prefix, module in model.named_modules():
        params = list(module.parameters(recurse=False))
        if params and not any(p.requires_grad for p in params):
            names += [f"{prefix}.{b}" if prefix else b for b, _ in module.named_buffers(recurse=False)]
    return names


def fit(
    model: nn.Module,
    train: Split | Batches,
    val: Split | Batches | None,
    training: dict,
    selection: freezing.Selection,
    where: str,
    categories: dict | None = None,
    tensorboard: Path | None = None,
    task: str = "classification",
) -> Result:
    """Train the selected parameters of `model`; keep the best state by the monitored metric.

    In a data-parallel stage (`distributed.context().world > 1`) every rank runs this with the same model and
    seed: each global batch of `batch_size` is cut across the ranks (`train` serves this rank's part; a `Split`
    is cut here), each rank's loss is weighted by its share of the batch and the gradients are summed, so a step
    sees the gradient of the whole batch's mean loss. Only rank 0 validates (`val` may be None elsewhere), keeps
    states and writes TensorBoard; its early-stopping decision is broadcast."""
    ctx = distributed.context()
    seed_everything(training["seed"])
    device = pick_device(training["device"]) if ctx.world == 1 else distributed.device(training["device"])
    model.to(device)
    freezing.set_trainable(model, selection.names)
    if ctx.world > 1:
        if training["batch_size"] < ctx.world:
            raise StagewiseError(distributed.check(training, where)[0])
        if isinstance(train, Batches):
            train.shard(ctx.rank, ctx.world)
        if ctx.rank:  # dropout masks differ between ranks; rank 0 keeps one process's stream
            torch.manual_seed(training["seed"] + 7919 * ctx.rank)
        distributed.broadcast_state(model)
    frozen = _frozen_names(model)
    frozen_start = distributed.digest(model.state_dict(), frozen)
    streamed = isinstance(train, Batches)  # a prepared file read block by block (io.batches), else a Split in RAM
    data = (
        None
        if streamed
        else tuple(
            _resident(t, device)
            for t in (torch.from_numpy(train.X), covariate_inputs(train, categories), torch.from_numpy(train.y))
        )
    )
    n, batch_size, epochs = len(train.y), training["batch_size"], training["epochs"]
    bounds = batch_bounds(n, batch_size, training=True)  # as `Batches` serves a training epoch
    n_batches = len(bounds)
    optimizer = optim.build_optimizer(model, selection.names, training, where)
    schedule = optim.Schedule(optimizer, training["scheduler"], epochs, n_batches, where)
    n_classes = len(train.label_names) or int(train.y.max()) + 1
    loss_fn = tasks.get(task).loss(
        training["loss"], train.y, n_classes, device, getattr(model, "likelihood", "nb"), f"{where}.loss"
    )
    handles = freezing.freeze_entries(model, selection.masks, optimizer)
    trained = [p for group in optimizer.param_groups for p in group["params"]]
    masked = [(model.get_parameter(name), mask.to(device)) for name, mask in selection.masks.items()]
    stop = training["early_stopping"]
    metric_names.check_monitor(task, stop["monitor"], where, train.label_names)
    mode = (
        stop["mode"] if stop["mode"] != "auto" else ("max" if metric_names.higher_is_better(stop["monitor"]) else "min")
    )
    generator = torch.Generator().manual_seed(training["seed"])
    sizes = torch.tensor([stop - start for start, stop in bounds], dtype=torch.float64)
    writer = _tensorboard(tensorboard) if training.get("tensorboard") and ctx.main else None
    result = Result(best_state={}, last_state={})
    best, waited = None, 0
    modes_seen: dict[str, str] = {}

    def record_mode(module: nn.Module, _inputs: tuple, name: str) -> None:
        modes_seen.setdefault(name, "train" if module.training else "eval")

    hooks = [
        m.register_forward_pre_hook(functools.partial(record_mode, name=name))
        for name, m in model.named_modules()
        if isinstance(m, freezing.NORM_AND_DROPOUT)
    ]
    bar = tqdm(total=epochs * n_batches, desc=where, file=sys.stderr, mininterval=1.0, disable=not ctx.main)
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        freezing.set_train_mode(model)
        batch_losses = torch.empty(n_batches, device=device)
        order = torch.randperm(n, generator=generator)
        batches = train.epoch(epoch, device) if streamed else _batches(data, order, bounds, device, ctx.rank, ctx.world)
        for b, (xb, cb, yb) in enumerate(batches):
            optimizer.zero_grad(set_to_none=True)
            if ctx.world == 1:
                with _autocast(training["precision"], device):
                    loss = loss_fn(tasks.apply(_forward(model, xb, cb), torch.Tensor.float), yb, xb, epoch)
                loss.backward()
            else:  # this rank's share of the batch's mean loss; the ranks' gradients add up to the whole batch's
                share = len(yb) / float(sizes[b])
                if len(yb):
                    with _autocast(training["precision"], device):
                        loss = loss_fn(tasks.apply(_forward(model, xb, cb), torch.Tensor.float), yb, xb, epoch) * share
                    loss.backward()
                else:
                    loss = torch.zeros((), device=device)
                distributed.all_reduce_gradients(trained, masked)  # masks of `train: [new]` applied after the sum
            if training["grad_clip"]:
                nn.utils.clip_grad_norm_(trained, training["grad_clip"])
            schedule.step(epoch - 1, b)
            batch_losses[b] = loss.detach()
            bar.update()
        values = distributed.all_reduce_sum(batch_losses).double().cpu()  # the epoch's one device sync
        distributed.broadcast_state(model, buffers_only=True)
        bad = (~torch.isfinite(values)).nonzero()
        if len(bad):
            raise StagewiseError(
                f"{where}: loss is {values[bad[0, 0]].item()} at epoch {epoch}, batch {bad[0, 0].item() + 1}; "
                "lower optimizer.lr, set grad_clip, or use precision: fp32"
            )
        train_seconds = time.perf_counter() - started
        for hook in hooks:
            hook.remove()
        hooks = []
        row = {"epoch": epoch, "lr": schedule.lr, "train_loss": float((values * sizes).sum() / n)}
        schedule.end_epoch()
        if not ctx.main:  # rank 0 validates and decides; the others follow its decision
            if distributed.broadcast_flag(False, device):
                break
            continue
        row |= _val_row(model, val, categories, loss_fn, training, device, task)
        row |= {"seconds": round(time.perf_counter() - started, 4), "samples_per_s": round(n / train_seconds, 1)}
        result.history.append(row)
        bar.set_postfix(train_loss=f"{row['train_loss']:.4g}", val_loss=f"{row['val_loss']:.4g}", refresh=False)
        if writer is not None:
            for key, value in row.items():
                if key != "epoch":
                    writer.add_scalar(key, value, epoch)
        if _improved(row[stop["monitor"]], best, mode, stop["min_delta"]):
            best, waited, result.best_epoch = row[stop["monitor"]], 0, epoch
            result.best_state = _clone(model)
        else:
            waited += 1
            if stop["patience"] and waited >= stop["patience"]:
                result.stopped = (
                    f"early stopping: {stop['monitor']} did not improve for {waited} epochs (best "
                    f"{best:.6g} at epoch {result.best_epoch})"
                )
        if distributed.broadcast_flag(bool(result.stopped), device):
            break
    bar.close()
    if writer is not None:
        writer.close()
    for handle in handles:
        handle.remove()
    result.stopped = result.stopped or f"completed {epochs} epochs"
    result.last_state = _clone(model) if ctx.main else {}
    groups = [{"lr_scale": g["lr_scale"], "parameters": g["names"]} for g in optimizer.param_groups]
    result.audit = freezing.audit(model, selection.masks) | {"modes": modes_seen, "optimizer_groups": groups}
    if ctx.world > 1:  # each rank's own view: its final weights, its frozen tensors before and after, its layer modes
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
    return result


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
