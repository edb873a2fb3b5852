"""Classification metrics, computed with scikit-learn."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm


def classification(y: np.ndarray, proba: np.ndarray, names: list[str], top_k: list[int] = (1, 3)) -> dict:
    """Accuracy, macro precision/recall/F1, macro AUPRC and top-k accuracy of class probabilities."""
    labels = np.arange(proba.shape[1])
    pred = proba.argmax(axis=1)
    out = {
        "accuracy": float(skm.accuracy_score(y, pred)),
        "precision": float(skm.precision_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "recall": float(skm.recall_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "f1": float(skm.f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
    }
    onehot = (y[:, None] == labels[None, :]).astype(int)
    present = onehot.sum(axis=0) > 0
    out["auprc"] = float(np.mean([skm.average_precision_score(onehot[:, c], proba[:, c]) for c in labels[present]]))
    score = proba[:, 1] if proba.shape[1] == 2 else proba  # scikit-learn's binary convention
    for k in top_k:
        if k < proba.shape[1]:
            out[f"top_{k}"] = float(skm.top_k_accuracy_score(y, score, k=k, labels=labels))
    return out
