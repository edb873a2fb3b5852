"""The prepared HDF5 layout: a split file written block by block (`Writer`) and read by rows."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp

from ..errors import StagewiseError
from ..files import atomic_path

FORMAT = 1
_STR = h5py.string_dtype("utf-8")
CHUNK_BYTES = 1 << 20  # ~1 MiB of features per HDF5 chunk


@dataclass
class Layout:
    """What a split file holds besides its rows: names, shapes, covariate categories."""

    feature_names: list[str]
    label_names: list[str]
    feature_shape: tuple[int, ...]
    label_shape: tuple[int, ...] = ()
    sparse: bool = False
    categories: dict[str, list[str]] = field(default_factory=dict)
    label_dtype: str = "int64"  # float32 for regression targets


def chunk_rows(feature_shape: tuple[int, ...]) -> int:
    """Rows per HDF5 chunk: about `CHUNK_BYTES` of float32 features, between 1 and 8192."""
    return int(np.clip(CHUNK_BYTES // (4 * max(1, int(np.prod(feature_shape)))), 1, 8192))


class Writer:
    """Append rows to a new split file; it appears under its name only when the `with` block succeeds."""

    def __init__(self, path: str | Path, layout: Layout, attrs: dict, expected: int | None = None) -> None:
        self.path, self.layout, self.attrs, self.n, self._nnz = Path(path), layout, attrs, 0, 0
        self.expected = expected  # rows to come, if known: small splits get small chunks
        self._stack = ExitStack()

    def __enter__(self) -> Writer:
        tmp = self._stack.enter_context(atomic_path(self.path))
        self.h5 = h5 = self._stack.enter_context(h5py.File(tmp, "w"))
        layout, rows = self.layout, min(chunk_rows(self.layout.feature_shape), max(1, self.expected or 1 << 30))
        if layout.sparse:
            group = h5.create_group("X")
            for key, dtype in (("data", np.float32), ("indices", np.int64)):
                group.create_dataset(key, (0,), dtype, maxshape=(None,), chunks=(1 << 16,))
            group.create_dataset("indptr", data=np.zeros(1, np.int64), maxshape=(None,), chunks=(1 << 14,))
            group.attrs["shape"] = (0, layout.feature_shape[0])
        else:
            shape = layout.feature_shape
            h5.create_dataset("X", (0, *shape), np.float32, maxshape=(None, *shape), chunks=(rows, *shape))
        h5.create_dataset(
            "y",
            (0, *layout.label_shape),
            layout.label_dtype,
            maxshape=(None, *layout.label_shape),
            chunks=(rows, *layout.label_shape),
        )
        h5.create_dataset("sample_ids", (0,), _STR, maxshape=(None,), chunks=(rows,))
        for name, names in layout.categories.items():
            codes = h5.create_dataset(f"covariates/{name}", (0,), np.int64, maxshape=(None,), chunks=(rows,))
            codes.attrs.create("categories", list(names), dtype=_STR)
        h5.create_dataset("feature_names", data=layout.feature_names, dtype=_STR)
        h5.create_dataset("label_names", data=layout.label_names, dtype=_STR)
        h5.attrs.update(stagewise_format=FORMAT, **self.attrs)
        return self

    def append(
        self,
        X: np.ndarray | sp.csr_matrix,
        y: np.ndarray,
        sample_ids: list[str],
        covariates: dict[str, np.ndarray] | None = None,
    ) -> None:
        """Append rows: features (dense, or CSR for a sparse layout), label codes, ids, covariate codes."""
        h5, start, stop = self.h5, self.n, self.n + len(y)
        if self.layout.sparse:
            X = sp.csr_matrix(X, dtype=np.float32)
            group, nnz = h5["X"], self._nnz + X.nnz
            for key, values in (("data", X.data), ("indices", X.indices)):
                group[key].resize((nnz,))
                group[key][self._nnz : nnz] = values
            group["indptr"].resize((stop + 1,))
            group["indptr"][start + 1 : stop + 1] = X.indptr[1:] + self._nnz
            group.attrs["shape"] = (stop, self.layout.feature_shape[0])
            self._nnz = nnz
        else:
            h5["X"].resize((stop, *self.layout.feature_shape))
            h5["X"][start:stop] = X
        for key, values in (
            ("y", y),
            ("sample_ids", sample_ids),
            *((f"covariates/{k}", v) for k, v in (covariates or {}).items()),
        ):
            h5[key].resize((stop, *h5[key].shape[1:]))
            h5[key][start:stop] = values
        self.n = stop

    def __exit__(self, *exc) -> bool | None:
        return self._stack.__exit__(*exc)


def _strings(values) -> list[str]:
    return [s.decode() if isinstance(s, bytes) else str(s) for s in values]


def open_split(path: str | Path) -> h5py.File:
    """Open a prepared split for reading; a clear error if it is not one."""
    try:
        h5 = h5py.File(path, "r")
    except OSError as error:
        raise StagewiseError(f"{path}: cannot read HDF5: {error}") from None
    if h5.attrs.get("stagewise_format") != FORMAT:
        h5.close()
        raise StagewiseError(f"{path}: not a stagewise prepared file (rerun prepare_data)")
    return h5


def layout(h5: h5py.File) -> Layout:
    """The layout of an open split file."""
    X = h5["X"]
    sparse = isinstance(X, h5py.Group)
    shape = (int(X.attrs["shape"][1]),) if sparse else X.shape[1:]
    categories = {k: _strings(v.attrs["categories"]) for k, v in h5.get("covariates", {}).items()}
    return Layout(
        _strings(h5["feature_names"][()]),
        _strings(h5["label_names"][()]),
        tuple(shape),
        h5["y"].shape[1:],
        sparse,
        categories,
        str(h5["y"].dtype),
    )


def n_samples(h5: h5py.File) -> int:
    """Number of samples in an open split file."""
    return len(h5["y"])


def sample_ids(h5: h5py.File) -> list[str]:
    """The sample ids of an open split file."""
    return _strings(h5["sample_ids"][()])


def read_rows(h5: h5py.File, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Rows `start:stop` as dense float32 features, label codes and covariate codes."""
    X = h5["X"]
    if isinstance(X, h5py.Group):
        indptr = X["indptr"][start : stop + 1]
        lo, hi = int(indptr[0]), int(indptr[-1])
        block = sp.csr_matrix(
            (X["data"][lo:hi], X["indices"][lo:hi], indptr - lo), shape=(stop - start, int(X.attrs["shape"][1]))
        )
        features = block.toarray()
    else:
        features = X[start:stop]
    covariates = {k: v[start:stop] for k, v in h5.get("covariates", {}).items()}
    return features, h5["y"][start:stop], covariates
