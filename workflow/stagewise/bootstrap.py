"""Seeded bootstrap of the headline metrics, vectorised over resamples.

A resample is a row of sample multiplicities: every metric is a weighted statistic of the test
predictions, so one (resamples × samples) matrix product replaces a Python loop over resamples.
Each function equals scikit-learn/scipy on the resampled arrays (tests/test_metrics.py checks it).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .metrics import top_k_hits

CELLS = 4_000_000  # weight-matrix cells held in memory at once


def weights(n: int, resamples: int, seed: int, width: int = 1) -> Iterator[np.ndarray]:
    """Multiplicities (rows: resamples, columns: samples); the same draws for the same n and seed."""
    rng = np.random.default_rng(seed)
    rows = max(1, CELLS // max(1, n * width))
    for start in range(0, resamples, rows):
        b = min(rows, resamples - start)
        idx = rng.integers(0, n, size=(b, n)) + n * np.arange(b)[:, None]
        yield np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(float)


def _div(a: np.ndarray, b: np.ndarray, fill: float = 0.0) -> np.ndarray:
    return np.divide(a, b, out=np.full(np.broadcast(a, b).shape, fill), where=b != 0)


def _mean(W: np.ndarray, values: np.ndarray) -> np.ndarray:
    return W @ values / W.sum(axis=1)


def curves(positive: np.ndarray, score: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted average precision and ROC AUC of one binary problem per resample (nan if undefined)."""
    order = np.argsort(-score, kind="mergesort")
    ends = np.r_[np.nonzero(np.diff(score[order]))[0], len(score) - 1]  # last index of each tied score
    ordered, hit = W[:, order], positive[order]
    tp = np.cumsum(ordered * hit, axis=1)[:, ends]
    fp = np.cumsum(ordered * ~hit, axis=1)[:, ends]
    pos, neg = tp[:, -1:], fp[:, -1:]
    tp0 = np.c_[np.zeros(len(W)), tp]
    fp0 = np.c_[np.zeros(len(W)), fp]
    ap = (np.diff(tp0, axis=1) * _div(tp, tp + fp)).sum(axis=1) / np.where(pos[:, 0] > 0, pos[:, 0], np.nan)
    area = (np.diff(fp0, axis=1) * (tp0[:, 1:] + tp0[:, :-1]) / 2).sum(axis=1)
    auc = area / np.where((pos * neg)[:, 0] > 0, (pos * neg)[:, 0], np.nan)
    return ap, auc


def classification(data: dict, W: np.ndarray, top_k: list[int] = ()) -> dict:
    """`metrics.classification` on each resample (rows of `W`)."""
    y, proba = data["labels"], data["probabilities"]
    n_classes = proba.shape[1]
    pred = proba.argmax(axis=1)
    cells = (y * n_classes + pred)[:, None] == np.arange(n_classes**2)[None, :]
    cm = (W @ cells).reshape(len(W), n_classes, n_classes)
    tp, true, predicted = np.diagonal(cm, axis1=1, axis2=2), cm.sum(axis=2), cm.sum(axis=1)
    out = {
        "accuracy": _mean(W, pred == y),
        "balanced_accuracy": np.nanmean(_div(tp, true, np.nan), axis=1),
        "precision": _div(tp, predicted).mean(axis=1),
        "recall": _div(tp, true).mean(axis=1),
        "f1": _div(2 * tp, true + predicted).mean(axis=1),
    }
    ap, auc = zip(*(curves(y == c, proba[:, c], W) for c in range(n_classes)))
    out["auprc"], out["auroc"] = np.nanmean(ap, axis=0), np.nanmean(auc, axis=0)
    for k in top_k:
        if k < n_classes:
            out[f"top_{k}"] = _mean(W, top_k_hits(y, proba, k))
    return out


def _corr(a: np.ndarray, b: np.ndarray, W: np.ndarray) -> np.ndarray:
    total = W.sum(axis=1, keepdims=True)
    ac = a - (W * a).sum(axis=1, keepdims=True) / total
    bc = b - (W * b).sum(axis=1, keepdims=True) / total
    return (W * ac * bc).sum(axis=1) / np.sqrt((W * ac**2).sum(axis=1) * (W * bc**2).sum(axis=1))


def _ranks(x: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Average ranks of every sample within each resample (scipy's rankdata on the resampled array)."""
    order = np.argsort(x, kind="mergesort")
    starts = np.r_[0, np.nonzero(np.diff(x[order]))[0] + 1]
    group = np.add.reduceat(W[:, order], starts, axis=1)
    rank = np.cumsum(group, axis=1) - group + (group + 1) / 2
    out = np.empty_like(W)
    out[:, order] = rank[:, np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(x)]))]
    return out


def regression(data: dict, W: np.ndarray) -> dict:
    """`metrics.regression` on each resample (rows of `W`)."""
    y = data["labels"].reshape(len(data["labels"]), -1)
    p = data["predictions"].reshape(len(y), -1)
    per_target = []
    for t in range(y.shape[1]):
        e = p[:, t] - y[:, t]
        centred = y[:, t] - (W @ y[:, t] / W.sum(axis=1))[:, None]
        per_target.append(
            {
                "mae": _mean(W, np.abs(e)),
                "rmse": np.sqrt(_mean(W, e**2)),
                "r2": 1 - (W @ e**2) / (W * centred**2).sum(axis=1),
                "pearson": _corr(y[:, t], p[:, t], W),
                "spearman": _corr(_ranks(y[:, t], W), _ranks(p[:, t], W), W),
            }
        )
    return {k: np.mean([m[k] for m in per_target], axis=0) for k in per_target[0]}


def sequence_labeling(data: dict, W: np.ndarray, names: list[str]) -> dict:
    """`metrics.sequence_labeling` on each resample of the sequences (rows of `W`)."""
    y, proba = data["labels"], data["probabilities"]
    Wp = np.repeat(W, y[0].size, axis=1)  # a resampled sequence brings all its positions
    flat_y, flat_p = y.reshape(-1), proba.reshape(-1, proba.shape[-1])
    out = {}
    for c in range(1, flat_p.shape[1]):
        positive = flat_y == c
        order = np.argsort(-flat_p[:, c], kind="stable")
        ordered = Wp[:, order]
        k = Wp @ positive
        take = np.clip(k[:, None] - (np.cumsum(ordered, axis=1) - ordered), 0, ordered)
        out[f"top_k_{names[c]}"] = _div((take * positive[order]).sum(axis=1), k, np.nan)
        out[f"auprc_{names[c]}"] = curves(positive, flat_p[:, c], Wp)[0]
    out["top_k"] = np.nanmean([out[f"top_k_{n}"] for n in names[1:]], axis=0)
    out["auprc"] = np.nanmean([out[f"auprc_{n}"] for n in names[1:]], axis=0)
    return out


def counts(data: dict, W: np.ndarray) -> dict:
    """`metrics.counts` on each resample (rows of `W`)."""
    out = {"nll": _mean(W, data["nll"]), "elbo": -_mean(W, data["nll"] + data["kl"])}
    if "knn_correct" in data:
        out["knn_accuracy"] = _mean(W, data["knn_correct"])
    return out


def interval(values: np.ndarray, level: float = 0.95) -> list[float]:
    """Percentile interval of bootstrap replicates (nan-resamples ignored)."""
    tail = (1 - level) / 2 * 100
    if np.isnan(values).all():
        return [float("nan"), float("nan")]
    return [float(v) for v in np.nanpercentile(values, [tail, 100 - tail])]


def paired(a: np.ndarray, b: np.ndarray, point: float, lower_is_better: bool = False, level: float = 0.95) -> dict:
    """Gain of a over b on the same resamples: point gain, its interval, and the share of resamples without gain."""
    diff = a - b
    worse = diff >= 0 if lower_is_better else diff <= 0
    return {"gain": point, "ci": interval(diff, level), "p_no_gain": float(np.mean(worse[~np.isnan(diff)]))}
