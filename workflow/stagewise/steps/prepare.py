"""prepare_data: a user's file -> validated train/val/test HDF5 splits and summary.json, block by block."""

from __future__ import annotations

import json
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from ..errors import StagewiseError
from ..files import sha256_file, sha256_json, write_json
from ..io import hdf5, readers
from ..io.readers import Source

SPLITS = ("train", "val", "test")


def _natural(name: str) -> tuple:
    """Numeric labels in numeric order ("2" before "10"), then the rest alphabetically."""
    try:
        return (0, float(name), "")
    except ValueError:
        return (1, 0.0, name)


def _select(source: Source, spec: dict, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Kept row indices (`rows`, then `classes`) and their labels after `label_map`."""
    keep = np.arange(source.n)
    if spec["rows"] is not None:
        start, stop = spec["rows"]
        if not start < stop <= source.n:
            raise StagewiseError(
                f"{where}: data.*.rows {spec['rows']} is not a range within the file's {source.n} rows"
            )
        keep = keep[start:stop]
    if source.labels is None:
        if spec["classes"] is not None or spec["label_map"] is not None:
            raise StagewiseError(
                f"{where}: data.*.classes and label_map need one label per sample; this file has per-position labels"
            )
        return keep, None
    labels = source.labels[keep]
    empty = np.flatnonzero(np.isin(labels, ["", "nan", "None", "<NA>"]))
    if len(empty):
        raise StagewiseError(
            f"{where}: {len(empty)} samples have no label (first rows {keep[empty[:5]].tolist()}); "
            "fill them in or drop those rows"
        )
    if spec["classes"] is not None:
        wanted = {str(c) for c in spec["classes"]}
        absent = sorted(wanted - set(labels))
        if absent:
            raise StagewiseError(
                f"{where}: classes {absent} (data.*.classes) not found among labels {sorted(set(labels))[:20]}"
            )
        mask = np.isin(labels, sorted(wanted))
        keep, labels = keep[mask], labels[mask]
    if spec["label_map"] is not None:
        mapping = {str(k): str(v) for k, v in spec["label_map"].items()}
        unmapped = sorted(set(labels) - set(mapping))
        if unmapped:
            raise StagewiseError(f"{where}: labels {unmapped[:10]} have no entry in data.*.label_map")
        labels = np.array([mapping[v] for v in labels])
    if len(keep) == 0:
        raise StagewiseError(f"{where}: no samples left after data.*.rows / classes")
    return keep, labels


def _stratified(
    pool: np.ndarray, codes: np.ndarray | None, fraction: float, seed: int, what: str, names: list[str], where: str
) -> tuple[np.ndarray, np.ndarray]:
    """Split `pool` into (rest, held out), stratified by label codes when there are any."""
    from sklearn.model_selection import train_test_split  # kept off the `stagewise check` path, which does not split

    if codes is not None:
        counts = np.bincount(codes[pool], minlength=len(names))
        small = {names[c]: int(n) for c, n in enumerate(counts) if 0 < n < 2}
        if small:
            raise StagewiseError(
                f"{where}: class(es) {small} (name: samples) have fewer than 2 samples, too few to stratify the {what} "
                "split; add samples, merge the class into another with data.*.label_map, or drop it with data.*.classes"
            )
    try:
        rest, held = train_test_split(
            pool, test_size=fraction, random_state=seed, stratify=None if codes is None else codes[pool]
        )
    except ValueError as error:
        raise StagewiseError(
            f"{where}: cannot make the {what} split: {error}; "
            "raise the fraction (data.*.val_fraction / test_fraction) or add samples"
        ) from None
    return np.sort(rest), np.sort(held)


def _per_class(indices: np.ndarray, codes: np.ndarray | None, limit: int | None, seed: int) -> np.ndarray:
    if limit is None or codes is None:
        return indices
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(indices[codes[indices] == c])[:limit] for c in np.unique(codes[indices])]
    return np.sort(np.concatenate(keep))


class _Rows:
    """Feature checks while streaming: NaN/inf count and first rows, or replacement by zero."""

    def __init__(self, missing: str, where: str) -> None:
        self.missing, self.where, self.count, self.first = missing, where, 0, []

    def clean(self, block: readers.Block):
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
        for k, split in enumerate(writers):
            mask = np.flatnonzero(part == k)
            if len(mask):
                ids = source.ids(block.start, stop)
                writers[split].append(
                    X[mask],
                    y[mask],
                    [ids[i] for i in mask],
                    {c: v[block.start : stop][mask] for c, v in covariates.items()},
                )
                if counts is not None:
                    counts[split] += np.bincount(y[mask].ravel(), minlength=len(counts[split]))


def _codes(values: np.ndarray, names: list[str]) -> np.ndarray:
    """Integer codes of string `values` in `names` order."""
    uniques, inverse = np.unique(values, return_inverse=True)
    position = {n: i for i, n in enumerate(names)}
    return np.array([position[u] for u in uniques], dtype=np.int64)[inverse]


def run(inputs: dict, outputs: dict, params: dict) -> None:
    """Read `params['dataset']['train']` (and `test`), split, and write the three splits and summary.

    With `params['split']` false every selected row of the train file goes to train (what `stagewise
    check` needs: names, labels, categories and clean values, without scikit-learn's import).
    """
    spec, name = params["dataset"], params["name"]
    files = {"train": spec["train"]} | ({"test": spec["test"]} if spec["test"] else {})
    wheres = {k: f"data.{name} ({path})" for k, path in files.items()}
    with ExitStack() as stack:
        scratch = Path(outputs["summary"]).parent
        sources = {k: stack.enter_context(readers.open_source(path, spec, scratch)) for k, path in files.items()}
        selected = {
            k: _select(s, spec if k == "train" else {**spec, "rows": None}, wheres[k]) for k, s in sources.items()
        }
        train = sources["train"]
        for k, source in sources.items():
            dupes = [n for n, count in Counter(source.feature_names).items() if count > 1]
            if dupes:
                raise StagewiseError(
                    f"{wheres[k]}: duplicate feature names {dupes[:5]}; each feature needs its own name"
                )
        if "test" in sources and sources["test"].feature_names != train.feature_names:
            extra, lacking = (
                sorted(set(a) - set(b))[:5]
                for a, b in (
                    (sources["test"].feature_names, train.feature_names),
                    (train.feature_names, sources["test"].feature_names),
                )
            )
            raise StagewiseError(
                f"data.{name}: test file {spec['test']} has different features than {spec['train']} "
                f"(only in test: {extra}, only in train: {lacking}, or another order); use the same columns"
            )
        regression = params.get("task") == "regression"  # labels are target values, not classes
        if train.labels is None:
            label_names = train.label_names
        elif regression:
            label_names = [spec["label"] or "label"]
        else:
            label_names = sorted(map(str, set(selected["train"][1])), key=_natural)
            if params.get("task", "classification") == "classification":
                _check_classes(
                    label_names, len(selected["train"][1]), f"data.{name}: {spec['train']}", spec["label"] or "label"
                )
            if "test" in sources:
                unknown = sorted(set(selected["test"][1]) - set(label_names))
                if unknown:
                    raise StagewiseError(
                        f"data.{name}: test labels {unknown[:5]} never occur in {spec['train']}; "
                        "drop them with data.*.classes or add training samples"
                    )
        codes = {
            k: None
            if s.labels is None
            else _full_values(s.n, *selected[k], wheres[k])
            if regression
            else _full_codes(s.n, *selected[k], label_names)
            for k, s in sources.items()
        }
        categories = {
            c: sorted({str(v) for s in sources.values() for v in s.covariates[c]}, key=_natural)
            for c in spec["covariates"]
        }
        covariates = {k: {c: _codes(v, categories[c]) for c, v in s.covariates.items()} for k, s in sources.items()}
        assign = _assign(
            sources,
            selected,
            dict.fromkeys(codes) if regression else codes,
            spec,
            label_names,
            wheres["train"],
            params.get("split", True),
        )
        layout = hdf5.Layout(
            train.feature_names,
            label_names,
            tuple(train.feature_shape),
            train.label_shape,
            train.sparse,
            categories,
            "float32" if regression else "int64",
        )
        if "test" in sources and train.split is not None:
            raise StagewiseError(
                f"data.{name}: a genome's test split is its data.*.genome.test_chromosomes; remove data.*.test"
            )
        hashes = {
            k: sources[k].sha256 or (path if path.startswith("sklearn:") else sha256_file(path))
            for k, path in files.items()
        }
        attrs = {"source_sha256": sha256_json(hashes), "in_memory": str(spec["in_memory"]).lower()}
        expected = [sum(int((a == i).sum()) for a in assign.values()) for i in range(len(SPLITS))]
        writers = {
            k: stack.enter_context(hdf5.Writer(outputs[k], layout, attrs | {"split": k}, expected[i]))
            for i, k in enumerate(SPLITS)
        }
        counts = None if regression else {k: np.zeros(len(label_names), np.int64) for k in SPLITS}
        for k, source in sources.items():
            rows = _Rows(spec["missing"], wheres[k])
            _write(source, assign[k], codes[k], covariates[k], writers, counts, rows)
            rows.check()
        preprocessing = dict(train.info)
        if train.finish is not None:  # e.g. image statistics of the training split, applied to every split
            preprocessing = _merge(preprocessing, train.finish(writers))
        for writer in writers.values():
            writer.h5.attrs["preprocessing"] = json.dumps(preprocessing, sort_keys=True, default=str)
        empty = [] if regression else [label_names[c] for c in np.flatnonzero(counts["train"] == 0)]
        if empty:
            raise StagewiseError(
                f"{wheres['train']}: labels {empty[:5]} have no samples in the training split; "
                "lower data.*.val_fraction / test_fraction or add samples"
            )
        samples = {k: writers[k].n for k in SPLITS}
    write_json(
        outputs["summary"],
        {
            "dataset": name,
            "sources": hashes,
            "source_sha256": attrs["source_sha256"],
            "n_features": len(train.feature_names),
            "feature_shape": list(train.feature_shape),
            "sparse": train.sparse,
            "label_names": label_names,
            "categories": categories,
            "samples": samples,
            "class_counts": {}
            if regression
            else {k: {label_names[c]: int(n) for c, n in enumerate(counts[k]) if n} for k in SPLITS},
            "bytes": int(sum(samples.values()) * 4 * np.prod(train.feature_shape)),
            "preprocessing": preprocessing,
        },
    )


def _check_classes(names: list[str], n: int, where: str, column: str) -> None:
    """A classification target needs two classes or more, and classes rather than measurements."""
    if len(names) < 2:
        raise StagewiseError(
            f"{where}: the label {column!r} has {len(names)} class ({', '.join(names)}): classification needs at "
            "least two; check data.*.label, classes and label_map"
        )
    numbers = [float(v) for v in names if _is_number(v)]
    fractional = any(not v.is_integer() for v in numbers)
    if len(numbers) == len(names) and ((fractional and len(names) > 10) or len(names) > max(50, n // 2)):
        raise StagewiseError(
            f"{where}: the label {column!r} holds {len(names)} distinct numbers in {n} samples (e.g. "
            f"{', '.join(names[:3])}, ..., {names[-1]}): values to predict, not classes; did you mean "
            "model.task: regression?"
        )


def _merge(info: dict, found: dict) -> dict:
    """`info` with what `Source.finish` computed added under each of its sections (one section: images)."""
    return {key: {**value, **found} for key, value in info.items()} if info else found


def _full_values(n: int, keep: np.ndarray, labels: np.ndarray, where: str) -> np.ndarray:
    """Regression targets for every row of the file (NaN where a row is dropped)."""
    try:
        values = labels.astype(np.float32)
    except ValueError:
        bad = [str(v) for v in labels[:1000] if not _is_number(v)][:5]
        raise StagewiseError(f"{where}: model.task regression needs numeric labels; found {bad}") from None
    if not np.isfinite(values).all():
        raise StagewiseError(f"{where}: {int((~np.isfinite(values)).sum())} regression labels are NaN/inf")
    full = np.full(n, np.nan, np.float32)
    full[keep] = values
    return full


def _is_number(value: str) -> bool:
    try:
        float(value)
        return True
    except ValueError:
        return False


def _full_codes(n: int, keep: np.ndarray, labels: np.ndarray, label_names: list[str]) -> np.ndarray:
    """Label codes for every row of the file (-1 where a row is dropped)."""
    codes = np.full(n, -1, np.int64)
    codes[keep] = _codes(labels, label_names)
    return codes


def _assign(
    sources: dict, selected: dict, codes: dict, spec: dict, names: list[str], where: str, split: bool
) -> dict[str, np.ndarray]:
    """For every row of each file, the split it goes to (0 train, 1 val, 2 test, -1 dropped)."""
    pool, fixed = selected["train"][0], sources["train"].split
    assign = {k: np.full(s.n, -1, np.int8) for k, s in sources.items()}
    held_out = "test" in sources
    if held_out:
        assign["test"][selected["test"][0]] = 2
    if fixed is not None:  # a genome: its test chromosomes are the test split, the others the training pool
        held, pool = pool[fixed[pool] == 2], pool[fixed[pool] == 0]
        if split and len(held):
            assign["train"][held], held_out = 2, True
    if not split:
        assign["train"][pool] = 0
        return assign
    if not held_out:
        pool, test = _stratified(pool, codes["train"], spec["test_fraction"], spec["seed"], "test", names, where)
        assign["train"][test] = 2
    train, val = _stratified(pool, codes["train"], spec["val_fraction"], spec["seed"], "validation", names, where)
    assign["train"][val] = 1
    assign["train"][_per_class(train, codes["train"], spec["train_per_class"], spec["seed"])] = 0
    return assign
