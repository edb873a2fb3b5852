"""bootstrap: edge cases of the vectorised replicates (ties, absent classes, one sequence, several resamples at once,
optional kNN accuracy), each against `metrics` on the resampled arrays.

Written for the mutation score of issue 21 (benchmarks/mutation.sh): mutants of these survived every fast test.
"""

from __future__ import annotations

import numpy as np
import pytest
from stagewise import bootstrap, metrics, tasks

NAMES = ["none", "acceptor", "donor"]


def _sequences(n: int, length: int, seed: int, levels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=(n, length), p=[0.8, 0.1, 0.1])
    if levels:  # few distinct scores: many ties
        proba = rng.integers(0, levels, size=(n, length, 3)).astype(float) + 1
        proba /= proba.sum(axis=-1, keepdims=True)
    else:
        proba = rng.dirichlet(np.ones(3), size=(n, length)) + 0.3 * np.eye(3)[y]
    return y, proba


def _check(rep: dict, row: int, y: np.ndarray, proba: np.ndarray) -> None:
    want = metrics.sequence_labeling(y, proba, NAMES)
    assert set(rep) == set(want)
    for name, value in want.items():
        assert rep[name][row] == pytest.approx(value, abs=1e-12, nan_ok=True), name


def test_sequence_top_k_breaks_ties_in_file_order_as_metrics_does():
    y, proba = _sequences(40, 50, 0, levels=3)
    rep = bootstrap.sequence_labeling({"labels": y, "probabilities": proba}, np.ones((1, len(y))), NAMES)
    _check(rep, 0, y, proba)


def test_sequence_replicates_row_by_row_with_a_class_absent_from_a_resample():
    y, proba = _sequences(6, 30, 1)
    y[:3][y[:3] == 2] = 0  # the first three sequences have no donor site
    W = np.array([[2.0, 1, 0, 0, 0, 3], [1.0, 1, 1, 0, 0, 0]])  # the second resample: no donor at all
    rep = bootstrap.sequence_labeling({"labels": y, "probabilities": proba}, W, NAMES)
    for row, idx in enumerate([[0, 0, 1, 5, 5, 5], [0, 1, 2]]):
        _check(rep, row, y[idx], proba[idx])
    assert np.isnan(rep["top_k_donor"][1]) and np.isnan(rep["auprc_donor"][1])


def test_one_sequence_is_resampled_whole():
    y, proba = _sequences(1, 40, 2)
    rep = tasks.get("sequence_labeling").replicates({"labels": y, "probabilities": proba}, 3, 0, names=NAMES)
    for row in range(3):
        _check(rep, row, y, proba)


def test_counts_replicates_knn_accuracy_only_when_given():
    rng = np.random.default_rng(3)
    nll, kl, hits = rng.random(20) * 10, rng.random(20), rng.random(20) < 0.7
    W = np.vstack([np.bincount(rng.integers(0, 20, 20), minlength=20) for _ in range(2)]).astype(float)
    assert set(bootstrap.counts({"nll": nll, "kl": kl}, W)) == {"nll", "elbo"}
    rep = bootstrap.counts({"nll": nll, "kl": kl, "knn_correct": hits}, W)
    assert set(rep) == {"nll", "elbo", "knn_accuracy"}
    for row in range(2):
        idx = np.repeat(np.arange(20), W[row].astype(int))
        assert rep["knn_accuracy"][row] == pytest.approx(hits[idx].mean())
        assert rep["nll"][row] == pytest.approx(nll[idx].mean())


def test_regression_replicates_row_by_row_with_ties():
    rng = np.random.default_rng(4)
    y = np.round(rng.normal(size=(30, 2)), 1)  # ties in the labels
    pred = y + rng.normal(scale=0.5, size=y.shape)
    W = np.vstack([np.bincount(rng.integers(0, 30, 30), minlength=30) for _ in range(3)]).astype(float)
    rep = bootstrap.regression({"labels": y, "predictions": pred}, W)
    for row in range(3):
        idx = np.repeat(np.arange(30), W[row].astype(int))
        want = metrics.regression(y[idx], pred[idx])
        for name, value in want.items():
            assert rep[name][row] == pytest.approx(value, abs=1e-10), name


def test_classification_replicates_row_by_row_with_classes_absent_or_never_predicted():
    rng = np.random.default_rng(5)
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 0, 1, 0, 2])
    proba = rng.dirichlet(np.ones(3), size=len(y))
    proba[:, 2] = 0.0  # class 2 is never predicted: its precision is 0 (scikit-learn's zero_division=0)
    proba /= proba.sum(axis=1, keepdims=True)
    W = np.array(
        [
            np.ones(12),
            [2, 1, 0, 1, 1, 0, 1, 1, 2, 1, 2, 0],  # class 2 absent from this resample
            [3, 1, 1, 0, 0, 0, 2, 0, 2, 0, 3, 0],  # one sample each of classes 1 and 2
        ]
    )
    rep = bootstrap.classification({"labels": y, "probabilities": proba}, W, top_k=[])
    for row in range(3):
        idx = np.repeat(np.arange(12), W[row].astype(int))
        want = metrics.classification(y[idx], proba[idx], ["a", "b", "c"], top_k=[])
        for name, value in want.items():
            assert rep[name][row] == pytest.approx(value, abs=1e-12), (row, name)


def test_interval_and_paired_gain_at_their_edges():
    assert bootstrap.interval(np.arange(101.0)) == pytest.approx([2.5, 97.5])
    assert bootstrap.interval(np.arange(101.0), level=0.9) == pytest.approx([5.0, 95.0])
    assert all(np.isnan(bootstrap.interval(np.full(3, np.nan))))
    half = np.array([0.5, 0.5, 0.5, 0.5])
    assert bootstrap.paired(half, half, 0.0, lower_is_better=True)["p_no_gain"] == 1.0  # ties are no gain
    assert bootstrap.paired(half + 0.5, half, 0.5, lower_is_better=True)["p_no_gain"] == 1.0
    assert bootstrap.paired(np.arange(101.0), np.zeros(101), 50.0, level=0.9)["ci"] == pytest.approx([5.0, 95.0])
