"""prepare_data: a user's file -> validated train/val/test HDF5 splits and summary.json, block by block."""

from __future__ import annotations

import json
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from .. import encoding, splits, tasks
from ..errors import StagewiseError
from ..files import sha256_file, sha256_json, write_json
from ..io import hdf5, readers
from ..io.source import Block, Source

SPLITS = splits.NAMES


class _Rows:
    """Feature checks while streaming: NaN/inf count and first rows, or replacement by zero."""

    def __init__(self, missing: str, where: str) -> None:
        self.missing, self.where, self.count, self.first = missing, where, 0, []

    def clean(self, block: Block):
        X = block.X
        values = X if isinstance(X, np.ndarray) else X.data
        bad = ~np.isfinite(values)
        if not bad.any():
            return X
        if self.missing == "zero":
            values[bad] = 0.0
            self.count += int(bad.sum())
            return X
        rows = (
            np.flatnonzero(bad.reshape(len(values), -1).any(axis=1))
            if isinstance(X, np.ndarray)
            else np.unique(np.searchsorted(X.indptr, np.flatnonzero(bad), side="right") - 1)
        )
        self.count += len(rows)
        self.first.extend((rows[: 5 - len(self.first)] + block.start).tolist())
        return X

    def check(self) -> None:
        if self.missing != "zero" and self.count:
            raise StagewiseError(
                f"{self.where}: {self.count} samples have NaN/inf/empty features (first rows {self.first}); "
                "fix the file, or set data.*.missing: zero to replace them by 0"
            )


def _write(
    source: Source,
    assign: np.ndarray,
    codes: np.ndarray | None,
    covariates: dict,
    writers: dict,
    counts: dict,
    rows: _Rows,
) -> None:
    """Route each kept row of `source` to the writer its `assign` value names (-1: dropped)."""
    for block in source.blocks():
        stop = block.start + block.X.shape[0]
        part = assign[block.start : stop]
        X = rows.clean(block)
        y = block.y if codes is None else codes[block.start : stop]
        for split, writer in writers.items():
            mask = np.flatnonzero(part == SPLITS.index(split))
            if len(mask):
                ids = source.ids(block.start, stop)
                writer.append(
                    X[mask],
                    y[mask],
                    [ids[i] for i in mask],
                    {c: v[block.start : stop][mask] for c, v in covariates.items()},
                )
                if counts is not None:
                    counts[split] += np.bincount(y[mask].ravel(), minlength=len(counts[split]))


def run(inputs: dict, outputs: dict, params: dict) -> None:
    """Read `params['dataset']` (its train file, and test file if any), split it, write the three splits and summary."""
    spec = params["dataset"]
    task = params.get("task", tasks.DEFAULT)
    summary = _prepare(spec, params["name"], task, outputs, Path(outputs["summary"]).parent, split=True)
    write_json(outputs["summary"], summary)


def read(dataset: dict, name: str, task: str, path: str) -> dict:
    """What `stagewise check` reads of a dataset: every selected row of its train file in one HDF5 file at `path`.

    The same names, labels, categories, preprocessing and checks as prepare_data's, without a split (nor
    scikit-learn's import); a genome's test chromosomes are left out. Returns the summary of that one file.
    """
    return _prepare(dataset, name, task, {"train": path}, Path(path).parent, split=False)


def _prepare(spec: dict, name: str, task: str, outputs: dict, scratch: Path, split: bool) -> dict:
    """Write the splits `outputs` names (train, val, test: paths) from the dataset `spec`; return the summary."""
    files = {"train": spec["train"]} | ({"test": spec["test"]} if spec["test"] else {})
    wheres = {k: f"data.{name} ({path})" for k, path in files.items()}
    regression = tasks.get(task).label_values  # labels are target values, not classes
    with ExitStack() as stack:
        sources = {k: stack.enter_context(readers.open_source(path, spec, scratch)) for k, path in files.items()}
        selected = {
            k: splits.select(s.n, s.labels, spec if k == "train" else {**spec, "rows": None}, wheres[k])
            for k, s in sources.items()
        }
        _check_files(sources, spec, name)
        train = sources["train"]
        encoded = encoding.encode(sources, selected, spec, name, task)
        sizes, kept = {k: s.n for k, s in sources.items()}, {k: rows for k, (rows, _) in selected.items()}
        stratify = None if regression else encoded.codes["train"]
        assign = (
            splits.assign(sizes, kept, train.split, stratify, spec, encoded.label_names, wheres["train"])
            if split
            else splits.unsplit(sizes, kept, train.split)
        )
        hashes = {
            k: sources[k].sha256 or (path if path.startswith("sklearn:") else sha256_file(path))
            for k, path in files.items()
        }
        attrs = {"source_sha256": sha256_json(hashes), "in_memory": str(spec["in_memory"]).lower()}
        samples, counts, preprocessing = _write_splits(
            sources, assign, encoded, outputs, attrs, spec["missing"], wheres, regression
        )
    label_names = encoded.label_names
    return {
        "dataset": name,
        "sources": hashes,
        "source_sha256": attrs["source_sha256"],
        "n_features": len(train.feature_names),
        "feature_shape": list(train.feature_shape),
        "sparse": train.sparse,
        "label_names": label_names,
        "categories": encoded.categories,
        "samples": samples,
        "class_counts": {k: {label_names[c]: int(n) for c, n in enumerate(v) if n} for k, v in (counts or {}).items()},
        "bytes": int(sum(samples.values()) * 4 * np.prod(train.feature_shape)),
        "preprocessing": preprocessing,
    }


def _write_splits(
    sources: dict,
    assign: dict[str, np.ndarray],
    encoded: encoding.Encoded,
    outputs: dict,
    attrs: dict,
    missing: str,
    wheres: dict,
    regression: bool,
) -> tuple[dict[str, int], dict[str, np.ndarray] | None, dict]:
    """Stream every file's rows into the split files `outputs` names; return the samples and class counts per split
    (None for regression) and the preprocessing recorded."""
    train = sources["train"]
    layout = hdf5.Layout(
        train.feature_names,
        encoded.label_names,
        tuple(train.feature_shape),
        train.label_shape,
        train.sparse,
        encoded.categories,
        "float32" if regression else "int64",
    )
    with ExitStack() as stack:
        writers = {
            k: stack.enter_context(hdf5.Writer(outputs[k], layout, attrs | {"split": k}, _rows_to(assign, k)))
            for k in SPLITS
            if k in outputs
        }
        counts = None if regression else {k: np.zeros(len(encoded.label_names), np.int64) for k in writers}
        for k, source in sources.items():
            rows = _Rows(missing, wheres[k])
            _write(source, assign[k], encoded.codes[k], encoded.covariates[k], writers, counts, rows)
            rows.check()
        preprocessing = dict(train.info)
        if train.finish is not None:  # e.g. image statistics of the training split, applied to every split
            preprocessing = _merge(preprocessing, train.finish(writers))
        for writer in writers.values():
            writer.h5.attrs["preprocessing"] = json.dumps(preprocessing, sort_keys=True, default=str)
        empty = [] if regression else [encoded.label_names[c] for c in np.flatnonzero(counts["train"] == 0)]
        if empty:
            raise StagewiseError(
                f"{wheres['train']}: labels {empty[:5]} have no samples in the training split; "
                "lower data.*.val_fraction / test_fraction or add samples"
            )
        return {k: writer.n for k, writer in writers.items()}, counts, preprocessing


def _rows_to(assign: dict[str, np.ndarray], split: str) -> int:
    """How many rows of all the files `assign` sends to `split`."""
    return sum(int((a == SPLITS.index(split)).sum()) for a in assign.values())


def _check_files(sources: dict, spec: dict, name: str) -> None:
    """Each file's feature names are unique, a test file has the train file's, and a genome has no test file."""
    for k, source in sources.items():
        dupes = [n for n, count in Counter(source.feature_names).items() if count > 1]
        if dupes:
            raise StagewiseError(
                f"data.{name} ({spec[k]}): duplicate feature names {dupes[:5]}; each feature needs its own name"
            )
    train, test = sources["train"], sources.get("test")
    if test is not None and test.feature_names != train.feature_names:
        extra, lacking = (
            sorted(set(a) - set(b))[:5]
            for a, b in ((test.feature_names, train.feature_names), (train.feature_names, test.feature_names))
        )
        raise StagewiseError(
            f"data.{name}: test file {spec['test']} has different features than {spec['train']} "
            f"(only in test: {extra}, only in train: {lacking}, or another order); use the same columns"
        )
    if test is not None and train.split is not None:
        raise StagewiseError(
            f"data.{name}: a genome's test split is its data.*.genome.test_chromosomes; remove data.*.test"
        )


def _merge(info: dict, found: dict) -> dict:
    """`info` with what `Source.finish` computed added under each of its sections (one section: images)."""
    return {key: {**value, **found} for key, value in info.items()} if info else found
