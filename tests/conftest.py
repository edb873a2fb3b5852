"""Shared fixtures: a tiny config and a helper that runs the real `snakemake` in a temp dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

TINY = {
    "data": {
        "source": {"train": "sklearn:digits", "rows": [0, 600], "val_fraction": 0.2},
        "target": {
            "train": "sklearn:digits",
            "rows": [600, 1000],
            "label_map": {d: ("even" if d % 2 == 0 else "odd") for d in range(10)},
            "test_fraction": 0.4,
            "val_fraction": 0.25,
            "train_per_class": 10,
        },
    },
    "model": {"architecture": "mlp", "params": {"hidden": [32, 16], "dropout": 0.1}},
    "pretrained": {"training": {"epochs": 4, "optimizer": {"lr": 3.0e-3}}, "head": {"module": "head"}},
    "training": {"epochs": 2, "batch_size": 16, "optimizer": {"lr": 1.0e-3}},
    "experiments": {
        "gradual": {
            "stages": [
                {"name": "head", "train": ["head"], "optimizer": {"lr": 3.0e-3}},
                {"name": "all", "unfreeze_all": True},
            ]
        },
        "fixed": {"stages": [{"name": "head", "train": ["head"]}]},
    },
    "report": {"title": "tiny"},
}


def write_config(folder: Path, config: dict) -> Path:
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake_command(workdir: Path, *args: str, cores: int = 2) -> list[str]:
    """The real snakemake on the repo's Snakefile in `workdir` with `workdir/config.yaml`."""
    return [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(workdir / "config.yaml"), "--cores", str(cores), *args]


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `snakemake_command` and fail with its output tail unless it succeeds (or `check` is off)."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(snakemake_command(workdir, *args), cwd=workdir, capture_output=True, text=True,
                          timeout=timeout, env=env)
    if check and done.returncode != 0:
        raise AssertionError(f"snakemake failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-6000:]}")
    return done


@pytest.fixture
def tiny_config() -> dict:
    import copy

    return copy.deepcopy(TINY)


def complete_run(workdir: Path, config: dict) -> Path:
    """`workdir` after a complete run of `config`."""
    write_config(workdir, config)
    snakemake(workdir)
    return workdir


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One complete run of the tiny config, shared by the tests that only read its outputs."""
    return complete_run(tmp_path_factory.mktemp("tiny_run"), TINY)
