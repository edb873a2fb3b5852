"""Prepared split files from arrays and back, for tests: the package reads splits only through `io.batches`."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from stagewise.io import hdf5
from stagewise.io.batches import Batches


@dataclass
class Split:
    """One prepared split, in memory."""

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    label_names: list[str]
    sample_ids: list[str]
    covariates: dict[str, np.ndarray] = field(default_factory=dict)
    categories: dict[str, list[str]] = field(default_factory=dict)


def write(path: str | Path, split: Split, name: str, source_sha256: str) -> None:
    """Write one in-memory split atomically."""
    layout = hdf5.Layout(
        split.feature_names,
        split.label_names,
        split.X.shape[1:],
        split.y.shape[1:],
        categories=split.categories,
        label_dtype=str(split.y.dtype),
    )
    with hdf5.Writer(path, layout, {"split": name, "source_sha256": source_sha256}, len(split.y)) as out:
        out.append(split.X, split.y, split.sample_ids, split.covariates)


def read(path: str | Path) -> Split:
    """Read a prepared split into memory (sparse features densified)."""
    with hdf5.open_split(path) as h5:
        info, n = hdf5.layout(h5), hdf5.n_samples(h5)
        X, y, covariates = hdf5.read_rows(h5, 0, n)
        return Split(X, y, info.feature_names, info.label_names, hdf5.sample_ids(h5), covariates, info.categories)


def batches(split: Split, batch_size: int, *, shuffle: bool = False, seed: int = 0, **kwargs) -> Batches:
    """`split` as `trainer.fit` and `trainer.predict` take it: written to a prepared file and served by `Batches`
    (in memory: the file is small; `kwargs` as `Batches` takes them)."""
    with tempfile.TemporaryDirectory() as folder:
        write(Path(folder) / "split.h5", split, "split", "0" * 64)
        return Batches(str(Path(folder) / "split.h5"), batch_size, shuffle=shuffle, seed=seed, **kwargs)
