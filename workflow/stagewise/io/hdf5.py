"""The prepared HDF5 layout (DESIGN.md §4): write a split, read it back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..errors import StagewiseError
from ..files import atomic_path

FORMAT = 1
_STR = h5py.string_dtype("utf-8")


@dataclass
class Split:
    """One prepared split, in memory."""

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    label_names: list[str]
    sample_ids: list[str]


def write(path: str | Path, split: Split, name: str, source_sha256: str) -> None:
    """Write one split atomically, chunked along the sample axis."""
    chunk = (max(1, min(len(split.y), 1024)),) + split.X.shape[1:]
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("X", data=split.X, chunks=chunk)
        h5.create_dataset("y", data=split.y, chunks=chunk[:1])
        h5.create_dataset("feature_names", data=split.feature_names, dtype=_STR)
        h5.create_dataset("label_names", data=split.label_names, dtype=_STR)
        h5.create_dataset("sample_ids", data=split.sample_ids, dtype=_STR)
        h5.attrs.update(stagewise_format=FORMAT, source_sha256=source_sha256, split=name)


def _strings(h5: h5py.File, key: str) -> list[str]:
    return [s.decode() if isinstance(s, bytes) else str(s) for s in h5[key][()]] if key in h5 else []


def read(path: str | Path) -> Split:
    """Read a prepared split into memory."""
    try:
        with h5py.File(path, "r") as h5:
            if h5.attrs.get("stagewise_format") != FORMAT:
                raise StagewiseError(f"{path}: not a stagewise prepared file (rerun prepare_data)")
            return Split(h5["X"][()], h5["y"][()], _strings(h5, "feature_names"), _strings(h5, "label_names"), _strings(h5, "sample_ids"))
    except OSError as error:
        raise StagewiseError(f"{path}: cannot read HDF5: {error}") from None


def read_names(path: str | Path) -> tuple[list[str], list[str]]:
    """Feature and label names of a prepared split, without loading the data."""
    with h5py.File(path, "r") as h5:
        return _strings(h5, "feature_names"), _strings(h5, "label_names")
