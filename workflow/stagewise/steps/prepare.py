"""prepare_data: a user's file -> validated train/val/test HDF5 splits and summary.json."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from ..errors import StagewiseError
from ..files import sha256_file, sha256_json, write_json
from ..io import hdf5, readers


def _subset(table: readers.Table, keep: np.ndarray) -> readers.Table:
    return readers.Table(table.X[keep], table.y[keep], table.feature_names, [table.sample_ids[i] for i in keep])


def _select_classes(table: readers.Table, classes: list | None, where: str) -> readers.Table:
    if classes is None:
        return table
    wanted = {str(c) for c in classes}
    present = {str(v) for v in table.y}
    absent = sorted(wanted - present)
    if absent:
        raise StagewiseError(f"{where}: classes {absent} (data.*.classes) not found among labels {sorted(present)[:20]}")
    return _subset(table, np.flatnonzero([str(v) in wanted for v in table.y]))


def _select_rows(table: readers.Table, rows: list[int] | None, where: str) -> readers.Table:
    if rows is None:
        return table
    start, stop = rows
    if not start < stop <= len(table.y):
        raise StagewiseError(f"{where}: data.*.rows {rows} is not a range within the file's {len(table.y)} rows")
    return _subset(table, np.arange(start, stop))


def _map_labels(table: readers.Table, label_map: dict | None, where: str) -> readers.Table:
    if label_map is None:
        return table
    unmapped = sorted({str(v) for v in table.y} - set(label_map))
    if unmapped:
        raise StagewiseError(f"{where}: labels {unmapped[:10]} have no entry in data.*.label_map")
    return readers.Table(table.X, np.array([label_map[str(v)] for v in table.y]), table.feature_names, table.sample_ids)


def _load(path: str, spec: dict, where: str) -> readers.Table:
    """Read a file, then keep `rows`, keep `classes`, and rename labels by `label_map`, in that order."""
    table = _select_rows(readers.read(path, spec["label"], spec["features"]), spec["rows"], where)
    table = _map_labels(_select_classes(table, spec["classes"], where), spec["label_map"], where)
    _check(table, where)
    return table


def _check(table: readers.Table, where: str) -> None:
    if len(table.y) == 0:
        raise StagewiseError(f"{where}: no samples")
    bad = ~np.isfinite(table.X.reshape(len(table.y), -1)).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)[:5].tolist()
        raise StagewiseError(f"{where}: {int(bad.sum())} samples have NaN/inf features (first rows {rows})")
    dupes = [n for n, c in Counter(table.feature_names).items() if c > 1]
    if dupes:
        raise StagewiseError(f"{where}: duplicate feature names {dupes[:5]}")


def _split(indices: np.ndarray, labels: np.ndarray, fraction: float, seed: int, what: str, where: str):
    counts = Counter(labels[indices].tolist())
    small = {k: v for k, v in counts.items() if v < 2}
    if small:
        raise StagewiseError(
            f"{where}: class(es) {small} have fewer than 2 samples, too few to stratify the {what} split; "
            "add samples or drop the class with data.*.classes"
        )
    return train_test_split(indices, test_size=fraction, random_state=seed, stratify=labels[indices])


def _per_class(indices: np.ndarray, labels: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    if limit is None:
        return indices
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(indices[labels[indices] == c])[:limit] for c in np.unique(labels[indices])]
    return np.sort(np.concatenate(keep))


def run(inputs: dict, outputs: dict, params: dict) -> None:
    """Read `params['dataset']['train']` (and `test`), split, and write the three splits and summary."""
    spec = params["dataset"]
    name = params["name"]
    where = f"data.{name} ({spec['train']})"
    table = _load(spec["train"], spec, where)
    label_names = sorted({str(v) for v in table.y}, key=_natural)
    code = {n: i for i, n in enumerate(label_names)}
    y = np.array([code[str(v)] for v in table.y], dtype=np.int64)
    everything = np.arange(len(y))
    sources = {"train": _source_hash(spec["train"])}
    if spec["test"]:
        test_table = _load(spec["test"], spec, f"data.{name} ({spec['test']})")
        if test_table.feature_names != table.feature_names:
            raise StagewiseError(f"data.{name}: test file {spec['test']} has different features than {spec['train']}")
        unknown = sorted({str(v) for v in test_table.y} - set(code))
        if unknown:
            raise StagewiseError(f"data.{name}: test labels {unknown[:5]} never occur in {spec['train']}")
        test_y = np.array([code[str(v)] for v in test_table.y], dtype=np.int64)
        test = hdf5.Split(test_table.X, test_y, table.feature_names, label_names, test_table.sample_ids)
        pool = everything
        sources["test"] = _source_hash(spec["test"])
    else:
        pool, test_idx = _split(everything, y, spec["test_fraction"], spec["seed"], "test", where)
        test = _make(table, y, np.sort(test_idx), label_names)
    train_idx, val_idx = _split(pool, y, spec["val_fraction"], spec["seed"], "validation", where)
    train_idx = _per_class(np.sort(train_idx), y, spec["train_per_class"], spec["seed"])
    splits = {"train": _make(table, y, train_idx, label_names), "val": _make(table, y, np.sort(val_idx), label_names), "test": test}
    source_sha = sha256_json(sources)
    for split_name, split in splits.items():
        hdf5.write(outputs[split_name], split, split_name, source_sha)
    write_json(outputs["summary"], {
        "dataset": name,
        "sources": sources,
        "source_sha256": source_sha,
        "n_features": len(table.feature_names),
        "feature_shape": list(table.X.shape[1:]),
        "label_names": label_names,
        "samples": {k: int(len(s.y)) for k, s in splits.items()},
        "class_counts": {k: {label_names[c]: int(n) for c, n in sorted(Counter(s.y.tolist()).items())} for k, s in splits.items()},
        "bytes": int(sum(s.X.nbytes for s in splits.values())),
    })


def _natural(name: str) -> tuple:
    """Numeric labels in numeric order ("2" before "10"), then the rest alphabetically."""
    try:
        return (0, float(name), "")
    except ValueError:
        return (1, 0.0, name)


def _make(table: readers.Table, y: np.ndarray, idx: np.ndarray, label_names: list[str]) -> hdf5.Split:
    return hdf5.Split(table.X[idx], y[idx], table.feature_names, label_names, [table.sample_ids[i] for i in idx])


def _source_hash(path: str) -> str:
    return path if path.startswith("sklearn:") else sha256_file(Path(path))
