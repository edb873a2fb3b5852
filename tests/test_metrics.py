"""Metrics of every task, and the vectorised bootstrap checked against scikit-learn on real resamples."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm
from stagewise import bootstrap, metric_names, metrics, tasks


def _classes(n=120, c=4, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c)) + 1.5 * np.eye(c)[y]
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    proba[10:20] = proba[:10]  # tied scores (with other labels): thresholds must group them
    return y, proba


def _resample(n, seed):
    idx = np.random.default_rng(seed).integers(0, n, n)
    return idx, np.bincount(idx, minlength=n).astype(float)[None, :]


@pytest.mark.parametrize("c", [2, 4])
def test_classification_metrics_are_scikit_learns(c):
    y, proba = _classes(c=c)
    names = [f"c{i}" for i in range(c)]
    got = metrics.classification(y, proba, names, top_k=[1, 2, 3])
    pred = proba.argmax(1)
    assert got["accuracy"] == skm.accuracy_score(y, pred)
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    auroc = skm.roc_auc_score(y, proba[:, 1]) if c == 2 else skm.roc_auc_score(y, proba, multi_class="ovr")
    assert got["auroc"] == pytest.approx(auroc)
    assert ("top_3" in got) == (c > 3) and ("top_2" in got) == (c > 2)
    per = metrics.per_class(y, proba, names)
    assert [per[n]["support"] for n in names] == np.bincount(y, minlength=c).tolist()
    assert np.mean([per[n]["auprc"] for n in names]) == pytest.approx(got["auprc"])
    matrix = np.array(metrics.confusion(y, pred, names)["matrix"])
    assert matrix.sum() == len(y) and np.trace(matrix) == (pred == y).sum()


@pytest.mark.parametrize("c", [2, 4])
def test_bootstrap_replicate_equals_scikit_learn_on_that_resample(c):
    y, proba = _classes(c=c)
    names = [f"c{i}" for i in range(c)]
    for seed in range(5):
        idx, W = _resample(len(y), seed)
        got = bootstrap.classification({"labels": y, "probabilities": proba}, W, top_k=[1, 2])
        want = metrics.classification(y[idx], proba[idx], names, top_k=[1, 2])
        assert set(got) == set(want)
        for name in want:
            assert got[name][0] == pytest.approx(want[name], abs=1e-12), name


def test_regression_metrics_and_their_bootstrap():
    rng = np.random.default_rng(1)
    y = rng.normal(size=200)
    pred = y + rng.normal(scale=0.5, size=200)
    pred[:20] = np.round(pred[:20])  # ties for Spearman's average ranks
    got = metrics.regression(y, pred)
    assert got["rmse"] == pytest.approx(np.sqrt(np.mean((y - pred) ** 2)))
    assert got["spearman"] == pytest.approx(stats.spearmanr(y, pred).statistic)
    for seed in range(3):
        idx, W = _resample(len(y), seed)
        rep = bootstrap.regression({"labels": y, "predictions": pred}, W)
        want = metrics.regression(y[idx], pred[idx])
        for name in want:
            assert rep[name][0] == pytest.approx(want[name], abs=1e-10), name
    two = metrics.regression(np.c_[y, 2 * y], np.c_[pred, 2 * pred])
    assert two["r2"] == pytest.approx(got["r2"]) and two["mae"] == pytest.approx(1.5 * got["mae"])


def test_spliceai_top_k_and_auprc_per_class():
    # 3 sequences x 6 positions; classes none/acceptor/donor
    y = np.array([[0, 1, 0, 0, 2, 0], [0, 0, 1, 0, 0, 0], [2, 0, 0, 0, 0, 1]])
    proba = np.full((*y.shape, 3), 0.05)
    proba[..., 0] = 0.9
    proba[0, 1, 1], proba[1, 2, 1], proba[2, 5, 1] = 0.8, 0.7, 0.2  # third acceptor outranked:
    proba[2, 3, 1] = 0.6  # top-3 holds 2 of 3 sites
    proba[0, 4, 2], proba[2, 0, 2] = 0.9, 0.8
    got = metrics.sequence_labeling(y, proba, ["none", "acceptor", "donor"])
    assert got["top_k_acceptor"] == pytest.approx(2 / 3) and got["top_k_donor"] == 1.0
    assert got["auprc_donor"] == 1.0 and got["top_k"] == pytest.approx(5 / 6)
    rng = np.random.default_rng(2)
    y = rng.choice(3, size=(30, 50), p=[0.9, 0.05, 0.05])
    proba = rng.dirichlet(np.ones(3), size=(30, 50)) + 0.3 * np.eye(3)[y]
    for seed in range(3):
        idx, W = _resample(len(y), seed)
        rep = bootstrap.sequence_labeling({"labels": y, "probabilities": proba}, W, names=["none", "acceptor", "donor"])
        want = metrics.sequence_labeling(y[idx], proba[idx], ["none", "acceptor", "donor"])
        for name in want:
            assert rep[name][0] == pytest.approx(want[name], abs=1e-12), name


def test_counts_metrics_and_knn_label_transfer():
    rng = np.random.default_rng(3)
    centres = np.array([[0, 0], [5, 5], [0, 5]])
    ref_y, query_y = rng.integers(0, 3, 90), rng.integers(0, 3, 30)
    reference = centres[ref_y] + rng.normal(scale=0.5, size=(90, 2))
    query = centres[query_y] + rng.normal(scale=0.5, size=(30, 2))
    hits = metrics.knn_hits(reference, ref_y, query, query_y)
    assert hits.mean() == 1.0  # well-separated clusters transfer perfectly
    assert metrics.knn_hits(reference, ref_y, query, (query_y + 1) % 3).mean() == 0.0
    nll, kl = rng.random(30) * 100, rng.random(30)
    got = metrics.counts(nll, kl, hits)
    assert got == {"nll": pytest.approx(nll.mean()), "elbo": pytest.approx(-(nll + kl).mean()), "knn_accuracy": 1.0}
    idx, W = _resample(30, 0)
    rep = bootstrap.counts({"nll": nll, "kl": kl, "knn_correct": hits}, W)
    assert rep["elbo"][0] == pytest.approx(-(nll[idx] + kl[idx]).mean())


def test_bootstrap_is_seeded_chunk_independent_and_covers_the_estimate(monkeypatch):
    y, proba = _classes(n=300, c=3)
    data = {"labels": y, "probabilities": proba}
    first = tasks.get("classification").replicates(data, 1000, seed=7)
    again = tasks.get("classification").replicates(data, 1000, seed=7)
    monkeypatch.setattr(bootstrap, "CELLS", 300 * 37)  # many small chunks: same draws
    chunked = tasks.get("classification").replicates(data, 1000, seed=7)
    other = tasks.get("classification").replicates(data, 1000, seed=8)
    assert np.array_equal(first["f1"], again["f1"]) and np.array_equal(first["f1"], chunked["f1"])
    assert not np.array_equal(first["f1"], other["f1"])
    lo, hi = bootstrap.interval(first["accuracy"])
    point = metrics.classification(y, proba, ["a", "b", "c"])["accuracy"]
    assert lo < point < hi and 0.02 < hi - lo < 0.2  # ~±1.96·sqrt(p(1-p)/n)


def test_paired_bootstrap_sees_a_real_gain_and_no_gain_against_itself():
    y, good = _classes(n=300, c=3, seed=4)
    rng = np.random.default_rng(5)
    bad = good.copy()
    flip = rng.random(300) < 0.3
    bad[flip] = bad[flip][:, ::-1]  # a worse model on the same test samples
    a = tasks.get("classification").replicates({"labels": y, "probabilities": good}, 1000, 0)
    b = tasks.get("classification").replicates({"labels": y, "probabilities": bad}, 1000, 0)
    gain = bootstrap.paired(a["accuracy"], b["accuracy"], 0.1)
    assert gain["ci"][0] > 0 and gain["p_no_gain"] < 0.01
    same = bootstrap.paired(a["accuracy"], a["accuracy"], 0.0)
    assert same["ci"] == [0.0, 0.0] and same["p_no_gain"] == 1.0
    assert bootstrap.paired(b["accuracy"], a["accuracy"], -0.1, lower_is_better=True)["p_no_gain"] < 0.01


def test_metric_selection_expands_families():
    scores = {"accuracy": 1.0, "f1": 0.5, "top_1": 1.0, "top_3": 1.0}
    assert tasks.get("classification").select(scores, ["f1", "top_k"]) == {"f1": 0.5, "top_1": 1.0, "top_3": 1.0}
    assert tasks.get("classification").select(scores, None) == scores


def _predictions(task: str, n: int = 40) -> dict:
    rng = np.random.default_rng(0)
    return {
        "classification": {"labels": rng.integers(0, 3, n), "probabilities": rng.dirichlet(np.ones(3), n)},
        "regression": {"labels": rng.normal(size=n), "predictions": rng.normal(size=n)},
        "sequence_labeling": {"labels": rng.integers(0, 3, (n, 6)), "probabilities": rng.dirichlet(np.ones(3), (n, 6))},
        "counts": {"nll": rng.random(n), "kl": rng.random(n)},
    }[task]


@pytest.mark.parametrize("name", sorted(tasks.TASKS))
def test_every_task_bootstraps_each_headline_metric_it_scores(name):
    """A task's `score`, `replicate` and metric names agree: one interval per headline metric, the primary one too."""
    task, names = tasks.get(name), ["none", "a", "b"]
    data = _predictions(name)
    scores = task.select(task.score(data, names, [1, 2]), None)
    reps = tasks.get(name).replicates(data, 20, 0, **task.bootstrap_options(names, [1, 2]))
    assert set(reps) == set(scores) and task.primary in scores
    assert {metric_names.family(s) for s in scores} <= set(task.headline)
    assert set(task.validation) <= set(task.headline) and task.default_loss("nb") in task.losses
