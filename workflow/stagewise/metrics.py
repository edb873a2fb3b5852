"""Test-set metrics of every task: scikit-learn (and scipy's correlations), never by hand."""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn import metrics as skm
from sklearn.neighbors import KNeighborsClassifier


def _onehot(y: np.ndarray, n: int) -> np.ndarray:
    return (y[:, None] == np.arange(n)[None, :]).astype(int)


def top_k_hits(y: np.ndarray, proba: np.ndarray, k: int) -> np.ndarray:
    """Per sample: is the true class among the k most probable (scikit-learn's tie and binary rules)."""
    if proba.shape[1] == 2:
        return (proba[:, 1] > 0.5).astype(int) == y if k == 1 else np.ones(len(y), bool)
    ranked = np.argsort(proba, axis=1, kind="mergesort")[:, ::-1][:, :k]
    return (ranked == y[:, None]).any(axis=1)


def classification(y: np.ndarray, proba: np.ndarray, names: list[str], top_k: list[int] = (1, 3)) -> dict:
    """Accuracy, balanced accuracy, macro precision/recall/F1/AUPRC/AUROC and top-k accuracy."""
    labels = np.arange(proba.shape[1])
    pred = proba.argmax(axis=1)
    precision, recall, f1, _ = skm.precision_recall_fscore_support(
        y, pred, labels=labels, average="macro", zero_division=0
    )
    out = {
        "accuracy": float(skm.accuracy_score(y, pred)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y, pred)) if len(y) else float("nan"),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
    }
    curves = _per_class_curves(y, proba)
    out["auprc"] = float(np.mean([c["auprc"] for c in curves.values()])) if curves else float("nan")
    both = [c["auroc"] for c in curves.values() if "auroc" in c]
    out["auroc"] = float(np.mean(both)) if both else float("nan")
    score = proba[:, 1] if proba.shape[1] == 2 else proba  # scikit-learn's binary convention
    for k in top_k:
        if k < proba.shape[1]:
            out[f"top_{k}"] = float(skm.top_k_accuracy_score(y, score, k=k, labels=labels))
    return out


def _per_class_curves(y: np.ndarray, proba: np.ndarray) -> dict[int, dict]:
    """AUPRC (classes with positives) and one-vs-rest AUROC (classes with positives and negatives)."""
    onehot = _onehot(y, proba.shape[1])
    out = {}
    for c in range(proba.shape[1]):
        positives = onehot[:, c].sum()
        if positives:
            out[c] = {"auprc": float(skm.average_precision_score(onehot[:, c], proba[:, c]))}
            if positives < len(y):
                out[c]["auroc"] = float(skm.roc_auc_score(onehot[:, c], proba[:, c]))
    return out


def per_class(y: np.ndarray, proba: np.ndarray, names: list[str]) -> dict[str, dict]:
    """Precision, recall, F1, support, AUPRC and AUROC of each class."""
    labels = np.arange(proba.shape[1])
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y, proba.argmax(axis=1), labels=labels, zero_division=0
    )
    curves = _per_class_curves(y, proba)
    return {
        name: {
            "precision": float(precision[c]),
            "recall": float(recall[c]),
            "f1": float(f1[c]),
            "support": int(support[c]),
            **curves.get(c, {}),
        }
        for c, name in enumerate(names)
    }


def confusion(y: np.ndarray, pred: np.ndarray, names: list[str]) -> dict:
    """The confusion matrix (rows: true class, columns: predicted class)."""
    matrix = skm.confusion_matrix(y, pred, labels=np.arange(len(names)))
    return {"labels": list(names), "matrix": matrix.tolist()}


def regression(y: np.ndarray, pred: np.ndarray) -> dict:
    """MAE, RMSE, R², Pearson and Spearman correlation (multi-output: averaged over targets)."""
    y2, p2 = y.reshape(len(y), -1), pred.reshape(len(pred), -1)
    return {
        "mae": float(skm.mean_absolute_error(y2, p2)),
        "rmse": float(skm.root_mean_squared_error(y2, p2)),
        "r2": float(skm.r2_score(y2, p2)),
        "pearson": float(np.mean([stats.pearsonr(y2[:, t], p2[:, t]).statistic for t in range(y2.shape[1])])),
        "spearman": float(np.mean([stats.spearmanr(y2[:, t], p2[:, t]).statistic for t in range(y2.shape[1])])),
    }


def spliceai_top_k(positive: np.ndarray, score: np.ndarray) -> float:
    """SpliceAI's top-k accuracy: of the k highest-scoring positions (k = true sites), the share that are sites."""
    k = int(positive.sum())
    if k == 0:
        return float("nan")
    top = np.argsort(-score, kind="stable")[:k]
    return float(positive[top].sum() / k)


def sequence_labeling(y: np.ndarray, proba: np.ndarray, names: list[str]) -> dict:
    """Per site class (every class but the first, SpliceAI's 'none'): top-k accuracy and AUPRC, and their means."""
    flat_y, flat_p = y.reshape(-1), proba.reshape(-1, proba.shape[-1])
    out = {}
    for c in range(1, flat_p.shape[1]):
        positive = flat_y == c
        out[f"top_k_{names[c]}"] = spliceai_top_k(positive, flat_p[:, c])
        out[f"auprc_{names[c]}"] = (
            float(skm.average_precision_score(positive, flat_p[:, c])) if positive.any() else float("nan")
        )
    out["top_k"] = float(np.nanmean([out[f"top_k_{n}"] for n in names[1:]]))
    out["auprc"] = float(np.nanmean([out[f"auprc_{n}"] for n in names[1:]]))
    return out


def knn_hits(
    reference: np.ndarray, reference_labels: np.ndarray, query: np.ndarray, query_labels: np.ndarray, k: int = 15
) -> np.ndarray:
    """Per query sample: does a kNN classifier fitted on the reference latent space predict its label."""
    knn = KNeighborsClassifier(n_neighbors=min(k, len(reference))).fit(reference, reference_labels)
    return knn.predict(query) == query_labels


def counts(nll: np.ndarray, kl: np.ndarray, knn_correct: np.ndarray | None = None) -> dict:
    """Mean test negative log-likelihood, ELBO (−NLL − KL) and kNN label-transfer accuracy."""
    out = {"nll": float(np.mean(nll)), "elbo": float(-np.mean(nll + kl))}
    if knn_correct is not None:
        out["knn_accuracy"] = float(np.mean(knn_correct))
    return out
