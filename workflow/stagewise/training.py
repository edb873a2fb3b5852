"""The training loop shared by pretrain, every fine-tuning stage and the scratch baseline."""

from __future__ import annotations

import copy
import functools
import math
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import freezing, losses, metrics, optim
from .errors import StagewiseError
from .io.hdf5 import Split


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
    """Seed torch and NumPy and make CPU kernels deterministic."""
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


def predict(model: nn.Module, X: torch.Tensor, batch_size: int, precision: str = "fp32") -> torch.Tensor:
    """Logits of `model` on `X`, in eval mode, batched."""
    device = next(model.parameters()).device
    model.eval()
    out = []
    with torch.no_grad(), _autocast(precision, device):
        for start in range(0, len(X), batch_size):
            out.append(model(X[start:start + batch_size].to(device)).float().cpu())
    return torch.cat(out)


def _improved(value: float, best: float | None, mode: str, delta: float) -> bool:
    if best is None:
        return True
    return value < best - delta if mode == "min" else value > best + delta


def fit(model: nn.Module, train: Split, val: Split, training: dict, trainable: set[str], label: str) -> Result:
    """Train the `trainable` parameters of `model`; keep the best state by the monitored metric."""
    seed_everything(training["seed"])
    device = pick_device(training["device"])
    model.to(device)
    freezing.set_trainable(model, trainable)
    optimizer = optim.build_optimizer(model, training["optimizer"])
    scheduler = optim.build_scheduler(optimizer, training["scheduler"])
    loss_fn = losses.build(training["loss"])
    stop = training["early_stopping"]
    mode = stop["mode"] if stop["mode"] != "auto" else ("min" if stop["monitor"].endswith("loss") else "max")
    X, y = torch.from_numpy(train.X), torch.from_numpy(train.y)
    Xv, yv = torch.from_numpy(val.X), torch.from_numpy(val.y)
    generator = torch.Generator().manual_seed(training["seed"])
    batch_size, epochs = training["batch_size"], training["epochs"]
    result = Result(best_state={}, last_state={})
    best, waited = None, 0
    modes_seen: dict[str, str] = {}

    def record_mode(module: nn.Module, _inputs, name: str) -> None:
        modes_seen.setdefault(name, "train" if module.training else "eval")

    hooks = [m.register_forward_pre_hook(functools.partial(record_mode, name=name))
             for name, m in model.named_modules() if isinstance(m, freezing.NORM_AND_DROPOUT)]
    bar = tqdm(total=epochs * math.ceil(len(y) / batch_size), desc=label, file=sys.stderr, mininterval=1.0)
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        freezing.set_train_mode(model)
        order = torch.randperm(len(y), generator=generator)
        total = 0.0
        for batch, start in enumerate(range(0, len(y), batch_size), 1):
            idx = order[start:start + batch_size]
            xb, yb = X[idx].to(device), y[idx].to(device)
            with _autocast(training["precision"], device):
                loss = loss_fn(model(xb).float(), yb)
            if not torch.isfinite(loss):
                raise StagewiseError(f"{label}: loss is {loss.item()} at epoch {epoch}, batch {batch}; lower training.optimizer.lr or set grad_clip")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if training["grad_clip"]:
                nn.utils.clip_grad_norm_(model.parameters(), training["grad_clip"])
            optimizer.step()
            total += loss.item() * len(idx)
            bar.update()
        for hook in hooks:
            hook.remove()
        hooks = []
        lr = optimizer.param_groups[0]["lr"]
        if scheduler is not None:
            scheduler.step()
        logits = predict(model, Xv, batch_size, training["precision"])
        row = {"epoch": epoch, "lr": lr, "train_loss": total / len(y),
               "val_loss": float(loss_fn(logits, yv.to(logits.device)))}
        row |= {f"val_{k}": v for k, v in metrics.classification(val.y, logits.softmax(1).numpy(), val.label_names, top_k=[]).items()}
        seconds = time.perf_counter() - started
        row |= {"seconds": round(seconds, 4), "samples_per_s": round(len(y) / seconds, 1)}
        result.history.append(row)
        if stop["monitor"] not in row:
            raise StagewiseError(f"training.early_stopping.monitor: {stop['monitor']!r} is not one of {sorted(row)}")
        if _improved(row[stop["monitor"]], best, mode, stop["min_delta"]):
            best, waited, result.best_epoch = row[stop["monitor"]], 0, epoch
            result.best_state = copy.deepcopy(model.state_dict())
        else:
            waited += 1
            if stop["patience"] and waited >= stop["patience"]:
                result.stopped = f"early stopping: {stop['monitor']} did not improve for {waited} epochs"
                break
    bar.close()
    result.stopped = result.stopped or f"completed {epochs} epochs"
    result.last_state = copy.deepcopy(model.state_dict())
    result.audit = freezing.audit(model) | {"modes": modes_seen}
    return result
