"""Labels and covariates of a dataset as the prepared files store them: names in order, an integer code per row."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import tasks
from .errors import StagewiseError
from .io.source import Source


@dataclass
class Encoded:
    """The prepared files' integer codes for the raw strings: labels per row of each file, covariate categories."""

    label_names: list[str]
    codes: dict[str, np.ndarray | None]  # per file: label code per row (-1 dropped), regression target, or None
    categories: dict[str, list[str]]  # per covariate: its category names
    covariates: dict[str, dict[str, np.ndarray]]  # per file, per covariate: category code per row


def encode(sources: dict, selected: dict, spec: dict, name: str, task: str) -> Encoded:
    """Label names and codes of the selected rows, covariate categories (in natural order) and codes."""
    label_names = _label_names(sources, selected, spec, name, task)
    codes = {
        k: _label_codes(s, selected[k], label_names, tasks.get(task).label_values, f"data.{name} ({spec[k]})")
        for k, s in sources.items()
    }
    categories = {
        c: sorted({str(v) for s in sources.values() for v in s.covariates[c]}, key=natural) for c in spec["covariates"]
    }
    covariates = {k: {c: _codes(v, categories[c]) for c, v in s.covariates.items()} for k, s in sources.items()}
    return Encoded(label_names, codes, categories, covariates)


def _label_names(sources: dict, selected: dict, spec: dict, name: str, task: str) -> list[str]:
    """The label names of the prepared files: the file's own (per-position labels), the regression target's
    name, or the selected training labels in natural order (checked: classes, and no test label unseen)."""
    if sources["train"].labels is None:
        return sources["train"].label_names
    if tasks.get(task).label_values:
        return [spec["label"] or "label"]
    names = sorted(map(str, set(selected["train"][1])), key=natural)
    if tasks.get(task).one_class_per_sample:
        _check_classes(names, len(selected["train"][1]), f"data.{name}: {spec['train']}", spec["label"] or "label")
    if "test" in sources:
        unknown = sorted(set(selected["test"][1]) - set(names))
        if unknown:
            raise StagewiseError(
                f"data.{name}: test labels {unknown[:5]} never occur in {spec['train']}; "
                "drop them with data.*.classes or add training samples"
            )
    return names


def _label_codes(source: Source, selected: tuple, names: list[str], regression: bool, where: str) -> np.ndarray | None:
    """Per row of the file: the label code (-1: dropped), the regression target (NaN: dropped), or None when the
    labels are per position (read with the features)."""
    if source.labels is None:
        return None
    if regression:
        return _full_values(source.n, *selected, where)
    return _full_codes(source.n, *selected, names)


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


def _full_codes(n: int, keep: np.ndarray, labels: np.ndarray, label_names: list[str]) -> np.ndarray:
    """Label codes for every row of the file (-1 where a row is dropped)."""
    codes = np.full(n, -1, np.int64)
    codes[keep] = _codes(labels, label_names)
    return codes


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


def _codes(values: np.ndarray, names: list[str]) -> np.ndarray:
    """Integer codes of string `values` in `names` order."""
    uniques, inverse = np.unique(values, return_inverse=True)
    position = {n: i for i, n in enumerate(names)}
    return np.array([position[u] for u in uniques], dtype=np.int64)[inverse]


def natural(name: str) -> tuple:
    """Numeric labels in numeric order ("2" before "10"), then the rest alphabetically."""
    try:
        return (0, float(name), "")
    except ValueError:
        return (1, 0.0, name)


def _is_number(value: str) -> bool:
    try:
        float(value)
        return True
    except ValueError:
        return False
