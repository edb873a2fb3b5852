"""`stagewise check` on a 1 GB checkpoint vs `torch.load(mmap=True)` of it, paired in one run.

    python benchmarks/bench_check.py [--gib 1.0] [--pairs 7] [--folder /tmp/stagewise-bench-check]

Writes a stagewise checkpoint of an MLP (8192 features, 4 hidden layers) of about --gib GiB, a small
.npz target with the same feature names and a config that replaces the head, under --folder (deleted
afterwards). Then times whole processes in turn, A B C D A B C D ...: A = `stagewise check --config`,
B = `python -c "torch.load(path, mmap=True, weights_only=True)"`, and for the record C = the same
load plus one real AdamW (torch imports its compiler, torch._dynamo, on the first optimizer;
`stagewise check` builds every stage's optimizer as a dry run, which does not) and D = the
checkpoint checks alone (what `stagewise check` runs before it validates the stages), after one
unmeasured warm-up each, so all read the file from the page cache. Prints the median seconds and
the median of the ratios to B within each round, then an in-process breakdown (one process, no
start-up).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

WIDTH = 8192
CHECKS_ONLY = """
import tempfile
from stagewise import config
from stagewise.steps import compatibility, prepare
cfg = config.load('config.yaml')
with tempfile.TemporaryDirectory() as tmp:
    prepare.read(cfg['data']['target'], 'target', cfg['model']['task'], f'{tmp}/target.h5')
    report, start = compatibility.check('big.pt', f'{tmp}/target.h5', cfg['model'], cfg['pretrained'], 0)
assert start is not None
print(compatibility.render(report))
"""


def _write_project(folder: Path, gib: float) -> Path:
    """The checkpoint, the target data and the config; returns the config's path."""
    from stagewise import checkpoints
    from stagewise.metadata import CheckpointMeta
    from stagewise.models.mlp import MLP

    folder.mkdir(parents=True, exist_ok=True)
    layers = max(1, round(gib * 2**30 / (4 * WIDTH * WIDTH)))
    params = {"in_features": WIDTH, "out_features": 10, "hidden": [WIDTH] * layers, "dropout": 0.0}
    with torch.device("meta"):
        shapes = MLP(**params).state_dict()
    state = {k: torch.full(v.shape, 0.01, dtype=v.dtype) for k, v in shapes.items()}
    names = [f"f{i}" for i in range(WIDTH)]
    meta = CheckpointMeta(
        architecture="mlp",
        params=params,
        task="classification",
        feature_names=names,
        label_names=[str(i) for i in range(10)],
    )
    checkpoints.save(folder / "big.pt", state, meta)
    rng = np.random.default_rng(0)
    np.savez(
        folder / "target.npz",
        X=rng.random((40, WIDTH), dtype=np.float32),
        y=np.arange(40) % 2,
        feature_names=np.array(names),
    )
    config = {
        "data": {"target": {"train": "target.npz", "val_fraction": 0.25, "test_fraction": 0.25}},
        "model": {"architecture": "mlp", "params": {}},
        "pretrained": {"checkpoint": "big.pt", "head": {"module": "head"}},
        "experiments": {"one": {"stages": [{"name": "head", "train": ["head"]}]}},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder / "config.yaml"


def _seconds(cmd: list[str], folder: Path) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of `cmd`."""
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    done = subprocess.run(cmd, cwd=folder, capture_output=True, text=True)
    wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{cmd} failed:\n{done.stdout}\n{done.stderr}")
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def _in_process(folder: Path) -> dict[str, float]:
    """One process: mmap load alone, then the check (load + every check, no start model written)."""
    from stagewise import config as sw_config
    from stagewise.steps import compatibility, prepare

    os.chdir(folder)  # the config's paths are relative to it, as for the CLI
    cfg = sw_config.load("config.yaml")
    train = str(folder / "target.h5")
    prepare.read(cfg["data"]["target"], "target", cfg["model"]["task"], train)
    out = {}
    started = time.perf_counter()
    torch.load(folder / "big.pt", mmap=True, weights_only=True)
    out["torch.load(mmap=True)"] = time.perf_counter() - started
    started = time.perf_counter()
    report, start = compatibility.check(str(folder / "big.pt"), train, cfg["model"], cfg["pretrained"], 0)
    out["compatibility.check"] = time.perf_counter() - started
    assert start is not None, compatibility.render(report)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--folder", default="/tmp/stagewise-bench-check")
    args = parser.parse_args()
    folder = Path(args.folder)
    try:
        config = _write_project(folder, args.gib)
        size = (folder / "big.pt").stat().st_size
        load = "import torch; torch.load('big.pt', mmap=True, weights_only=True)"
        commands = {
            "stagewise check --config config.yaml": [
                str(Path(sys.executable).with_name("stagewise")),
                "check",
                "--config",
                config.name,
            ],
            "torch.load(mmap=True)": [sys.executable, "-c", load],
            "torch.load(mmap=True) + AdamW": [sys.executable, "-c", load + "; torch.optim.AdamW([torch.zeros(1)])"],
            "checkpoint checks alone": [sys.executable, "-c", CHECKS_ONLY],
        }
        for cmd in commands.values():
            _seconds(cmd, folder)  # warm-up: page cache, .pyc files
        rounds = [{name: _seconds(cmd, folder) for name, cmd in commands.items()} for _ in range(args.pairs)]
        print(f"checkpoint: {size / 2**30:.2f} GiB, {args.pairs} rounds; whole processes, median (min-max) seconds")
        print("| command | wall s | CPU s | ratio to torch.load, wall | CPU |\n|---|---|---|---|---|")
        for name in commands:
            wall, cpu = ([r[name][k] for r in rounds] for k in (0, 1))
            ratios = [statistics.median(r[name][k] / r["torch.load(mmap=True)"][k] for r in rounds) for k in (0, 1)]
            print(
                f"| `{name}` | {statistics.median(wall):.2f} ({min(wall):.2f}-{max(wall):.2f}) "
                f"| {statistics.median(cpu):.2f} ({min(cpu):.2f}-{max(cpu):.2f}) | {ratios[0]:.2f} | {ratios[1]:.2f} |"
            )
        print("\nin one process (no interpreter start-up):")
        for name, seconds in _in_process(folder).items():
            print(f"  {name}: {seconds:.3f} s")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
