"""What every reader yields: a `Source` (labels, ids and covariates up front, features in `Block`s of rows), and the
helpers the readers share."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..errors import StagewiseError

BLOCK_BYTES = 32 << 20  # features read per block, whatever the format


@dataclass
class Block:
    """Rows `start:start+len(X)` of a source: features (dense or CSR) and, for per-position labels, y."""

    start: int
    X: np.ndarray | sp.csr_matrix
    y: np.ndarray | None = None


@dataclass
class Source:
    """An input file opened for one pass: labels, ids and covariates up front, features in blocks."""

    path: str
    feature_names: list[str]
    feature_shape: tuple[int, ...]
    n: int
    blocks: Callable[[], Iterator[Block]]
    labels: np.ndarray | None  # (N,) raw labels as str; None: per-position labels, in the blocks
    label_names: list[str] | None = None  # given by the file (per-position labels)
    label_shape: tuple[int, ...] = ()  # (L,) for per-position labels
    covariates: dict[str, np.ndarray] = field(default_factory=dict)  # raw values as str
    sample_ids: np.ndarray | None = None  # None: "{file stem}_{row}"
    sparse: bool = False
    sha256: str | None = None  # of every input the source read (image folder, FASTA + annotation); None: the file's
    info: dict = field(default_factory=dict)  # preprocessing settings, recorded in summary.json
    split: np.ndarray | None = None  # per row: 0 training pool, 2 test, -1 dropped (genome chromosome split)
    finish: Callable[[dict], dict] | None = None  # run on the open split writers once every row is written

    def ids(self, start: int, stop: int) -> list[str]:
        """Sample ids of rows `start:stop`."""
        if self.sample_ids is not None:
            return [str(s) for s in self.sample_ids[start:stop]]
        stem = Path(self.path).stem
        return [f"{stem}_{i}" for i in range(start, stop)]


def block_rows(feature_shape: tuple[int, ...]) -> int:
    """Rows per block: about `BLOCK_BYTES` of float32 features."""
    return max(1, BLOCK_BYTES // (4 * max(1, int(np.prod(feature_shape)))))


def array_blocks(X, y: np.ndarray | None = None, columns: np.ndarray | None = None) -> Callable[[], Iterator[Block]]:
    """Blocks of an array-like (NumPy, h5py dataset, anndata sparse dataset), optionally a column subset."""
    shape = (X.shape[1],) if columns is None else (len(columns),)
    step = block_rows(shape if len(X.shape) == 2 else X.shape[1:])

    def blocks() -> Iterator[Block]:
        for start in range(0, X.shape[0], step):
            part = X[start : start + step]
            if sp.issparse(part):
                part = sp.csr_matrix(part)
            if columns is not None:
                part = part[:, columns]
            yield Block(start, part, None if y is None else np.asarray(y[start : start + step]))

    return blocks


def as_labels(values) -> np.ndarray:
    """Raw labels or categories as strings ("1" for 1 and 1.0 alike when integral)."""
    values = np.asarray(values)
    if values.dtype.kind == "f" and np.all(np.isfinite(values)) and np.all(values == np.round(values)):
        values = values.astype(np.int64)
    return values.astype(str)


def check_numeric(dtype, path: str, key: str) -> None:
    """Features must be numbers or booleans."""
    if np.dtype(dtype).kind not in "biuf":
        raise StagewiseError(f"{path}: {key} holds {np.dtype(dtype)} values, not numbers; features must be numeric")


def no_table_keys(spec: dict, path: str, allowed: tuple[str, ...] = ()) -> None:
    """Refuse the table-only keys (`features`, `covariates`, `layer`) on a file type that has no use for them."""
    for key in ("features", "covariates", "layer"):
        if spec.get(key) and key not in allowed:
            raise StagewiseError(f"{path}: data.*.{key} does not apply to this file type; remove it")
