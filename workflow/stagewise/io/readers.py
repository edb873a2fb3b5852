"""Readers for the input formats: tables, .npz, .h5ad, .h5, and data shipped with scikit-learn."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import StagewiseError


@dataclass
class Table:
    """Samples as arrays: features `X` (N, ...), raw labels `y` (N,), names and ids."""

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    sample_ids: list[str]


def read(path: str, label: str, features: list[str] | None = None) -> Table:
    """Read any supported input file into a `Table`."""
    if path.startswith("sklearn:"):
        return _read_sklearn(path)
    file = Path(path)
    if not file.is_file():
        raise StagewiseError(f"{path}: data file not found (check data.*.train / data.*.test in the config)")
    suffix = file.suffix.lower()
    readers = {".csv": _read_table, ".tsv": _read_table, ".parquet": _read_table, ".npz": _read_npz}
    if suffix not in readers:
        raise StagewiseError(f"{path}: unsupported file type {suffix!r}; use one of {sorted(readers)} or sklearn:digits")
    return readers[suffix](file, label, features)


def _read_sklearn(path: str) -> Table:
    from sklearn import datasets

    name = path.split(":", 1)[1]
    if name != "digits":
        raise StagewiseError(f"{path}: unknown built-in dataset; available: sklearn:digits")
    bunch = datasets.load_digits()
    return Table(
        X=bunch.data.astype(np.float32) / 16.0,
        y=bunch.target,
        feature_names=[f"pixel_{i // 8}_{i % 8}" for i in range(bunch.data.shape[1])],
        sample_ids=[f"digits_{i}" for i in range(len(bunch.target))],
    )


def _read_table(path: Path, label: str, features: list[str] | None) -> Table:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        if path.suffix.lower() == ".parquet":
            table = pq.read_table(path)
        else:
            delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
            table = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter=delimiter))
    except Exception as error:  # pyarrow raises several types for unreadable files
        raise StagewiseError(f"{path}: cannot read as a table: {error}") from None
    columns = table.column_names
    if label not in columns:
        raise StagewiseError(f"{path}: label column {label!r} not found; columns are {columns[:20]}")
    names = features or [c for c in columns if c != label]
    missing = [c for c in names if c not in columns]
    if missing:
        raise StagewiseError(f"{path}: feature columns {missing[:5]} not found (data.*.features)")
    try:
        X = np.column_stack([table.column(c).to_numpy().astype(np.float32) for c in names])
    except (ValueError, TypeError) as error:
        raise StagewiseError(f"{path}: feature columns must be numeric: {error}") from None
    y = table.column(label).to_numpy(zero_copy_only=False)
    return Table(X, y, list(names), [f"{path.stem}_{i}" for i in range(len(y))])


def _read_npz(path: Path, label: str, features: list[str] | None) -> Table:
    with np.load(path, allow_pickle=False) as arrays:
        if "X" not in arrays or label not in arrays:
            raise StagewiseError(f"{path}: needs arrays 'X' and {label!r}; found {sorted(arrays)}")
        X = arrays["X"].astype(np.float32)
        y = arrays[label]
        names = [str(n) for n in arrays["feature_names"]] if "feature_names" in arrays else None
    names = names or [f"f{i}" for i in range(int(np.prod(X.shape[1:])))]
    return Table(X, y, names, [f"{path.stem}_{i}" for i in range(len(y))])
