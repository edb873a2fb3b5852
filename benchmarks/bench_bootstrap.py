"""Bootstrap of the classification headline metrics: vectorised (stagewise.bootstrap) vs a loop of scikit-learn calls.

Both compute the same 1000 resamples (same indices) on the same predictions, side by side in one process;
the loop is the obvious implementation (metrics.classification on each resampled array).

    python benchmarks/bench_bootstrap.py
"""

from __future__ import annotations

import time

import numpy as np
from stagewise import metrics, tasks

RESAMPLES = 1000


def predictions(n: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes)) + 2 * np.eye(classes)[y]
    return y, np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


def loop(y: np.ndarray, proba: np.ndarray, names: list[str]) -> dict:
    rng = np.random.default_rng(0)
    runs = [
        metrics.classification(y[idx], proba[idx], names, [1, 3])
        for idx in rng.integers(0, len(y), size=(RESAMPLES, len(y)))
    ]
    return {k: np.array([r[k] for r in runs]) for k in runs[0]}


def main() -> None:
    print("| test set | vectorised s | scikit-learn loop s | speed-up | largest difference |")
    print("|---|---|---|---|---|")
    for n, classes in [(400, 2), (2000, 10)]:
        y, proba = predictions(n, classes)
        names = [str(c) for c in range(classes)]
        start = time.perf_counter()
        fast = tasks.get("classification").replicates({"labels": y, "probabilities": proba}, RESAMPLES, 0, top_k=[1, 3])
        fast_s = time.perf_counter() - start
        start = time.perf_counter()
        slow = loop(y, proba, names)
        slow_s = time.perf_counter() - start
        diff = max(np.nanmax(np.abs(fast[k] - slow[k])) for k in slow)
        print(f"| n={n}, {classes} classes | {fast_s:.2f} | {slow_s:.2f} | {slow_s / fast_s:.0f}× | {diff:.1e} |")


if __name__ == "__main__":
    main()
