"""Which rows of a dataset are kept, and the train/validation/test split each goes to: stratified and seeded."""

from __future__ import annotations

import numpy as np

from .errors import StagewiseError

NAMES = ("train", "val", "test")
TRAIN, VAL, TEST, DROPPED = 0, 1, 2, -1  # an assignment's values: a split's position in NAMES, or none


def select(n: int, labels: np.ndarray | None, spec: dict, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Kept row indices of a file of `n` rows (`data.*.rows`, then `classes`) and their labels after `label_map`.

    `labels`: one string label per row of the file, or None where labels are per position (kept as they are).
    """
    keep = np.arange(n)
    if spec["rows"] is not None:
        start, stop = spec["rows"]
        if not start < stop <= n:
            raise StagewiseError(f"{where}: data.*.rows {spec['rows']} is not a range within the file's {n} rows")
        keep = keep[start:stop]
    if labels is None:
        if spec["classes"] is not None or spec["label_map"] is not None:
            raise StagewiseError(
                f"{where}: data.*.classes and label_map need one label per sample; this file has per-position labels"
            )
        return keep, None
    labels = labels[keep]
    empty = np.flatnonzero(np.isin(labels, ["", "nan", "None", "<NA>"]))
    if len(empty):
        raise StagewiseError(
            f"{where}: {len(empty)} samples have no label (first rows {keep[empty[:5]].tolist()}); "
            "fill them in or drop those rows"
        )
    if spec["classes"] is not None:
        keep, labels = _classes(keep, labels, spec["classes"], where)
    if spec["label_map"] is not None:
        mapping = {str(k): str(v) for k, v in spec["label_map"].items()}
        unmapped = sorted(set(labels) - set(mapping))
        if unmapped:
            raise StagewiseError(f"{where}: labels {unmapped[:10]} have no entry in data.*.label_map")
        labels = np.array([mapping[v] for v in labels])
    if len(keep) == 0:
        raise StagewiseError(f"{where}: no samples left after data.*.rows / classes")
    return keep, labels


def _classes(keep: np.ndarray, labels: np.ndarray, classes: list, where: str) -> tuple[np.ndarray, np.ndarray]:
    """The rows (and their labels) whose label is one of `classes` (`data.*.classes`)."""
    wanted = {str(c) for c in classes}
    absent = sorted(wanted - set(labels))
    if absent:
        raise StagewiseError(
            f"{where}: classes {absent} (data.*.classes) not found among labels {sorted(set(labels))[:20]}"
        )
    mask = np.isin(labels, sorted(wanted))
    return keep[mask], labels[mask]


def stratified(
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


def per_class(indices: np.ndarray, codes: np.ndarray | None, limit: int | None, seed: int) -> np.ndarray:
    """At most `limit` of `indices` per class (`data.*.train_per_class`), picked with `seed`; all without a limit."""
    if limit is None or codes is None:
        return indices
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(indices[codes[indices] == c])[:limit] for c in np.unique(codes[indices])]
    return np.sort(np.concatenate(keep))


def assign(
    sizes: dict[str, int],
    kept: dict[str, np.ndarray],
    fixed: np.ndarray | None,
    codes: np.ndarray | None,
    spec: dict,
    names: list[str],
    where: str,
) -> dict[str, np.ndarray]:
    """For every row of each file (`train`, optional `test`), the split it goes to (TRAIN, VAL, TEST or DROPPED).

    `kept`: each file's selected rows; `fixed`: a genome's per-row split of the train file (its test chromosomes
    TEST), else None; `codes`: the train file's label codes to stratify by (None: regression or per-position labels).
    A test file, or a genome's test chromosomes, is the test split; else `data.*.test_fraction` of the train file is.
    """
    pool, out = kept["train"], _dropped(sizes)
    held_out = "test" in kept
    if held_out:
        out["test"][kept["test"]] = TEST
    if fixed is not None:
        held, pool = pool[fixed[pool] == TEST], pool[fixed[pool] == TRAIN]
        if len(held):
            out["train"][held], held_out = TEST, True
    if not held_out:
        pool, test = stratified(pool, codes, spec["test_fraction"], spec["seed"], "test", names, where)
        out["train"][test] = TEST
    train, val = stratified(pool, codes, spec["val_fraction"], spec["seed"], "validation", names, where)
    out["train"][val] = VAL
    out["train"][per_class(train, codes, spec["train_per_class"], spec["seed"])] = TRAIN
    return out


def unsplit(sizes: dict[str, int], kept: dict[str, np.ndarray], fixed: np.ndarray | None) -> dict[str, np.ndarray]:
    """Every kept row of the train file to TRAIN (a genome's test chromosomes aside); a test file's rows DROPPED."""
    pool, out = kept["train"], _dropped(sizes)
    if fixed is not None:
        pool = pool[fixed[pool] == TRAIN]
    out["train"][pool] = TRAIN
    return out


def _dropped(sizes: dict[str, int]) -> dict[str, np.ndarray]:
    return {k: np.full(n, DROPPED, np.int8) for k, n in sizes.items()}
