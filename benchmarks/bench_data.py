"""Data benchmarks, side by side in one run: streaming vs in-memory training, flat RSS, prepare_data vs pandas.

    python benchmarks/bench_data.py [--scale 1.0] [--folder /tmp/stagewise-bench-data]

Writes its data under --folder and deletes it afterwards. Prints a Markdown table for BENCHMARKS.md.
Each measured run is a fresh Python process; peak RSS is its ru_maxrss.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

FEATURES = 256
ROW_BYTES = FEATURES * 4


def _write_split(path: Path, rows: int, seed: int) -> None:
    """A prepared split of `rows` samples, written block by block (never whole in RAM)."""
    from stagewise.io import hdf5

    layout = hdf5.Layout([f"f{i}" for i in range(FEATURES)], [f"c{i}" for i in range(10)], (FEATURES,))
    centers = (
        np.random.default_rng(0).normal(size=(10, FEATURES)).astype(np.float32) * 0.2
    )  # same classes in every split
    rng = np.random.default_rng(seed)
    with hdf5.Writer(path, layout, {"split": "train", "source_sha256": "bench", "in_memory": "false"}) as out:
        for start in range(0, rows, 65536):
            y = rng.integers(0, 10, min(65536, rows - start))
            X = centers[y] + rng.normal(size=(len(y), FEATURES)).astype(np.float32)
            out.append(X, y, [str(i) for i in range(start, start + len(y))])


def _write_csv(path: Path, rows: int) -> None:
    """A CSV of `rows` rows: 100 float columns and a label, written in blocks with pyarrow."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(0)
    names = [f"g{i}" for i in range(100)] + ["label"]
    with pacsv.CSVWriter(path, pa.schema([(n, pa.float32()) for n in names[:-1]] + [("label", pa.string())])) as out:
        for start in range(0, rows, 50000):
            n = min(50000, rows - start)
            columns = [pa.array(rng.normal(size=n).astype(np.float32)) for _ in range(100)]
            out.write_batch(pa.record_batch([*columns, pa.array(rng.choice(["a", "b", "c"], n))], names=names))


def _child(kind: str, *args: str) -> dict:
    """Run one measurement in a fresh process; return its JSON result with its peak RSS."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, *args], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _fit(train, val, epochs: int = 1) -> dict:
    """One real training run (trainer.fit, an MLP, all parameters) on `train`; samples/s of its epochs."""
    from stagewise import config, freezing, trainer
    from stagewise.models import build

    cfg = config.validate(
        {
            "data": {"target": {"train": "x"}},
            "model": {},
            "pretrained": {"checkpoint": "x"},
            "training": {"epochs": epochs, "batch_size": 512, "device": "cpu", "optimizer": {"lr": 1e-3}},
            "experiments": {"e": {"stages": [{"name": "s"}]}},
        }
    )
    settings = config.stage_config(cfg, "e", 0)["training"]
    trainer.seed_everything(0)
    model = build("mlp", {"in_features": FEATURES, "out_features": 10, "hidden": [256, 128]})
    result = trainer.fit(
        model, train, val, settings, freezing.Selection({n for n, _ in model.named_parameters()}), "bench"
    )
    return {
        "samples_per_s": max(r["samples_per_s"] for r in result.history),
        "val_accuracy": result.history[-1]["val_accuracy"],
    }


def child(kind: str, *args: str) -> None:
    """The measured side of `_child`."""
    import torch
    from stagewise.io.batches import Batches

    torch.set_num_threads(1)  # one core per measurement, like a `threads: 1` rule
    started = time.perf_counter()
    if kind == "train":
        path, val, mode = args
        out = _fit(Batches(path, 512, shuffle=True, in_memory=mode), Batches(val, 512, in_memory="true"))
    elif kind == "prepare":
        from stagewise import config
        from stagewise.steps import prepare

        folder = Path(args[1])
        spec = config.validate(
            {
                "data": {"target": {"train": args[0]}},
                "model": {},
                "pretrained": {"checkpoint": "x"},
                "experiments": {"e": {"stages": [{"name": "s"}]}},
            }
        )["data"]["target"]
        prepare.run(
            {},
            {k: str(folder / f"{k}.h5") for k in ("train", "val", "test")} | {"summary": str(folder / "summary.json")},
            {"dataset": spec, "name": "target"},
        )
        out = {}
    else:
        import pandas as pd

        out = {"rows": len(pd.read_csv(args[0]))}
    out |= {
        "seconds": time.perf_counter() - started,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="data sizes times this (0.05 for a quick check)")
    parser.add_argument("--folder", default="/tmp/stagewise-bench-data")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    gib = 1 << 30
    try:
        rows = {name: int(size * gib * args.scale) // ROW_BYTES for name, size in (("0.5GB", 0.5), ("4GB", 4.0))}
        _write_split(folder / "val.h5", 4096, seed=1)
        _write_split(folder / "small.h5", rows["0.5GB"], seed=0)
        speed = {
            mode: _child("train", str(folder / "small.h5"), str(folder / "val.h5"), mode) for mode in ("true", "false")
        }
        _write_split(folder / "large.h5", rows["4GB"], seed=0)
        rss = {
            size: _child("train", str(folder / f"{name}.h5"), str(folder / "val.h5"), "false")
            for size, name in (("0.5GB", "small"), ("4GB", "large"))
        }
        for name in ("small.h5", "large.h5"):
            (folder / name).unlink()
        csv = folder / "table.csv"
        _write_csv(csv, int(1.0 * gib * args.scale) // 1070)
        mb = csv.stat().st_size / 1e6
        prep = _child("prepare", str(csv), str(folder / "prepared"))
        pandas = _child("pandas", str(csv))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print("| measurement | value | reference | ratio |\n|---|---|---|---|")
    ref, streamed = speed["true"]["samples_per_s"], speed["false"]["samples_per_s"]
    print(
        f"| training samples/s, streaming (in_memory: false) | {streamed:.0f} | the same file in RAM "
        f"(in_memory: true) {ref:.0f} | {streamed / ref:.2f} |"
    )
    print(
        f"| finetune peak RSS, 4 GB streamed | {rss['4GB']['peak_rss_mb']:.0f} MB | 0.5 GB streamed "
        f"{rss['0.5GB']['peak_rss_mb']:.0f} MB | {rss['4GB']['peak_rss_mb'] / rss['0.5GB']['peak_rss_mb']:.2f} |"
    )
    print(
        f"| prepare_data on a {mb:.0f} MB CSV | {mb / prep['seconds']:.0f} MB/s, {prep['peak_rss_mb']:.0f} MB "
        f"RSS | pandas.read_csv "
        f"{mb / pandas['seconds']:.0f} MB/s, {pandas['peak_rss_mb']:.0f} MB RSS | speed "
        f"{pandas['seconds'] / prep['seconds']:.2f}, "
        f"RSS {prep['peak_rss_mb'] / pandas['peak_rss_mb']:.2f} |"
    )
    print(json.dumps({"speed": speed, "rss": rss, "prepare": prep, "pandas": pandas, "csv_mb": mb}))


if __name__ == "__main__":
    main()
