"""Training throughput of the stagewise loop against three references, side by side in one run.

For a small MLP (64 features) and a large one (2000 -> 512 -> 256 -> 10), same model, data, batch
size, optimizer and initial weights, it times:
  stagewise   `stagewise.trainer.fit` (a whole stage: setup, every epoch's validation included)
  compute     forward/backward/step on one resident batch: no data movement (the upper limit)
  dataloader  a hand-written loop over DataLoader(TensorDataset), per-sample collate (OpenSpliceAI's way)
  lightning   Lightning's Trainer on the same DataLoader (validation, logging, checkpoints off)
Methods run interleaved, `--repeats` rounds; the table gives median training samples/s and ratios.
Rates are per second of this process's CPU time (`time.process_time`, one torch thread): on a
machine shared with other jobs, wall time mostly measures the neighbours.

    python benchmarks/bench_finetune.py [--epochs 3] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # split_files: arrays to a prepared file
from split_files import Split, batches
from stagewise import config, freezing, trainer
from stagewise.models import build
from torch.utils.data import DataLoader, TensorDataset

SIZES = {
    "small": dict(features=64, hidden=[128, 64], samples=40000),
    "large": dict(features=2000, hidden=[512, 256], samples=10000),
}
CLASSES, BATCH, LR = 10, 256, 1e-3


def data(features: int, samples: int) -> tuple[Split, Split]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(samples + 256, features)).astype(np.float32)
    y = rng.integers(0, CLASSES, size=samples + 256)
    names, labels = [f"f{i}" for i in range(features)], [str(c) for c in range(CLASSES)]
    train = Split(X[:samples], y[:samples], names, labels, [str(i) for i in range(samples)])
    val = Split(
        X[samples:], y[samples:], names, labels, [str(i) for i in range(256)]
    )  # small: the loop validates every epoch
    return train, val


def stagewise_loop(model, train, val, epochs):
    raw = {
        "data": {"target": {"train": "x"}},
        "model": {},
        "pretrained": {"checkpoint": "x"},
        "experiments": {"bench": {"stages": [{"name": "all", "unfreeze_all": True}]}},
        "training": {"epochs": epochs, "batch_size": BATCH, "device": "cpu", "optimizer": {"name": "AdamW", "lr": LR}},
    }
    cfg = config.stage_config(config.validate(raw), "bench", 0)["training"]
    selection = freezing.select(model, {"unfreeze_all": True}, [], {}, "bench")
    trainer.fit(model, batches(train, BATCH, shuffle=True), batches(val, BATCH), cfg, selection, "bench")


def compute_only(model, train, val, epochs):
    x, y = torch.from_numpy(train.X[:BATCH]), torch.from_numpy(train.y[:BATCH])
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    model.train()
    for _ in range(epochs * -(-len(train.y) // BATCH)):
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()


def dataloader_loop(model, train, val, epochs):
    loader = DataLoader(
        TensorDataset(torch.from_numpy(train.X), torch.from_numpy(train.y)), batch_size=BATCH, shuffle=True
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    for _ in range(epochs):
        model.train()
        total = 0.0
        for x, y in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(y)


def lightning_loop(model, train, val, epochs):
    import lightning as L

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = model

        def training_step(self, batch, _index):
            x, y = batch
            return F.cross_entropy(self.model(x), y)

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=LR)

    loader = DataLoader(
        TensorDataset(torch.from_numpy(train.X), torch.from_numpy(train.y)), batch_size=BATCH, shuffle=True
    )
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(Module(), loader)


METHODS = {
    "stagewise": stagewise_loop,
    "compute": compute_only,
    "dataloader": dataloader_loop,
    "lightning": lightning_loop,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), batch {BATCH}, AdamW, {args.epochs} epochs, "
        f"median of {args.repeats} interleaved rounds, samples per CPU second"
    )
    print(
        "| model | stagewise samples/s | compute-only | DataLoader | Lightning | stagewise / compute | / "
        "DataLoader | / Lightning |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for size, spec in SIZES.items():
        train, val = data(spec["features"], spec["samples"])
        torch.manual_seed(0)
        initial = build("mlp", {"in_features": spec["features"], "out_features": CLASSES, "hidden": spec["hidden"]})
        rates: dict[str, list[float]] = {name: [] for name in METHODS}
        for _ in range(args.repeats):
            for name, method in METHODS.items():
                model = copy.deepcopy(initial)
                started = time.process_time()
                method(model, train, val, args.epochs)
                rates[name].append(args.epochs * len(train.y) / (time.process_time() - started))
        med = {name: statistics.median(values) for name, values in rates.items()}
        label = f"{size} ({spec['features']}→{'→'.join(map(str, spec['hidden']))}→{CLASSES}, {spec['samples']} samples)"
        print(
            f"| {label} | {med['stagewise']:,.0f} | {med['compute']:,.0f} | {med['dataloader']:,.0f} | "
            f"{med['lightning']:,.0f} | "
            f"{med['stagewise'] / med['compute']:.2f}× | {med['stagewise'] / med['dataloader']:.2f}× | "
            f"{med['stagewise'] / med['lightning']:.2f}× |",
            flush=True,
        )


if __name__ == "__main__":
    main()
