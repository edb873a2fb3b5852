"""Tables (.csv, .tsv, .parquet) as a `Source`, read with pyarrow in blocks, never whole."""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..errors import StagewiseError
from .hdf5 import chunk_rows
from .source import Block, Source, array_blocks, as_labels, block_rows


def _columns(path: str, header: list[str], spec: dict) -> tuple[str, list[str], list[str]]:
    """The label, feature and covariate columns, checked against the header."""
    dupes = [c for c, k in Counter(header).items() if k > 1]
    if dupes:
        raise StagewiseError(f"{path}: duplicate column names {dupes[:5]}; rename them so each feature is named once")
    label, covariates = spec.get("label") or "label", list(spec.get("covariates") or [])
    if label not in header:
        raise StagewiseError(f"{path}: label column {label!r} (data.*.label) not found; columns are {header[:20]}")
    missing = [c for c in covariates + list(spec.get("features") or []) if c not in header]
    if missing:
        raise StagewiseError(
            f"{path}: columns {missing[:5]} (data.*.features / covariates) not found; columns are {header[:20]}"
        )
    features = list(spec.get("features") or [c for c in header if c != label and c not in covariates])
    if not features:
        raise StagewiseError(f"{path}: no feature columns besides the label {label!r}")
    return label, features, covariates


def _matrix(batch: pa.RecordBatch, features: list[str]) -> np.ndarray:
    """Feature columns of a record batch as a float32 (rows, features) array; nulls become NaN."""
    columns = [batch.column(f).cast(pa.float32()) for f in features]
    return pa.RecordBatch.from_arrays(columns, features).to_tensor(null_to_nan=True, row_major=True).to_numpy()


@contextmanager
def open_csv(path: str, spec: dict, scratch: Path) -> Iterator[Source]:
    """Parse the CSV/TSV once in blocks into a temporary HDF5 file in `scratch`, then read that."""
    parse = pacsv.ParseOptions(delimiter="\t" if path.lower().endswith(".tsv") else ",")
    options = pacsv.ReadOptions(block_size=16 << 20)
    try:
        header = pacsv.open_csv(path, read_options=options, parse_options=parse).schema.names
    except (pa.ArrowInvalid, OSError) as error:
        raise StagewiseError(f"{path}: cannot read as a table: {error}") from None
    label, features, covariates = _columns(path, header, spec)
    types = {f: pa.float32() for f in features} | {c: pa.string() for c in [label, *covariates]}
    convert = pacsv.ConvertOptions(column_types=types, include_columns=[label, *covariates, *features])
    staging = Path(scratch) / f".staging-{os.getpid()}-{Path(path).name}.h5"
    staging.parent.mkdir(parents=True, exist_ok=True)
    text: dict[str, list] = {c: [] for c in [label, *covariates]}
    try:
        with h5py.File(staging, "w") as h5:
            rows = chunk_rows((len(features),))
            X = h5.create_dataset(
                "X", (0, len(features)), np.float32, maxshape=(None, len(features)), chunks=(rows, len(features))
            )
            try:
                for batch in pacsv.open_csv(path, read_options=options, parse_options=parse, convert_options=convert):
                    X.resize((X.shape[0] + batch.num_rows, len(features)))
                    X[-batch.num_rows :] = _matrix(batch, features)
                    for c, values in text.items():
                        values.extend(batch.column(c).to_pylist())
            except pa.ArrowInvalid as error:
                raise StagewiseError(_conversion_error(path, header, str(error))) from None
        with h5py.File(staging, "r") as h5:
            yield Source(
                path,
                features,
                (len(features),),
                h5["X"].shape[0],
                array_blocks(h5["X"]),
                as_labels(text[label]),
                covariates={c: as_labels(text[c]) for c in covariates},
            )
    finally:
        staging.unlink(missing_ok=True)


def _conversion_error(path: str, header: list[str], message: str) -> str:
    found = re.search(r"column #(\d+)", message)
    column = header[int(found.group(1))] if found and int(found.group(1)) < len(header) else "?"
    return (
        f"{path}: column {column!r} is not numeric ({message.splitlines()[0]}); "
        "features must be numbers: fix the value, or list the feature columns in data.*.features"
    )


@contextmanager
def open_parquet(path: str, spec: dict, scratch: Path) -> Iterator[Source]:
    """Read labels and covariates whole (a few columns), features in row batches."""
    try:
        file = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise StagewiseError(f"{path}: cannot read as parquet: {error}") from None
    schema = file.schema_arrow
    label, features, covariates = _columns(path, schema.names, spec)
    for f in features:
        kind = schema.field(f).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
            raise StagewiseError(
                f"{path}: column {f!r} holds {kind} values, not numbers; features must be numeric: "
                "convert it, or list the feature columns in data.*.features"
            )
    meta = file.read(columns=[label, *covariates])
    step = block_rows((len(features),))

    def blocks() -> Iterator[Block]:
        start = 0
        for batch in file.iter_batches(batch_size=step, columns=features):
            yield Block(start, _matrix(batch, features))
            start += batch.num_rows

    yield Source(
        path,
        features,
        (len(features),),
        file.metadata.num_rows,
        blocks,
        as_labels(meta.column(label).to_numpy(zero_copy_only=False)),
        covariates={c: as_labels(meta.column(c).to_numpy(zero_copy_only=False)) for c in covariates},
    )
