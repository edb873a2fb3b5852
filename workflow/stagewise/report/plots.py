"""Matplotlib figures rendered to inline PNG data URIs."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def to_data_uri(fig) -> str:
    """PNG bytes of `fig` as a data: URI (the report makes no request to any other address)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def learning_curves(curves: dict[str, list[tuple[str, pd.DataFrame]]]) -> str:
    """Validation loss and accuracy per epoch, stages laid end to end, boundaries dashed."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, stages in curves.items():
        offset, xs, loss, acc = 0, [], [], []
        for index, (_, history) in enumerate(stages):
            xs += list(history["epoch"] + offset)
            loss += list(history["val_loss"])
            acc += list(history["val_accuracy"])
            offset += len(history)
            if index < len(stages) - 1:
                for ax in axes:
                    ax.axvline(offset + 0.5, color="grey", linestyle="--", linewidth=0.7)
        axes[0].plot(xs, loss, marker=".", label=name)
        axes[1].plot(xs, acc, marker=".", label=name)
    axes[0].set(xlabel="epoch (stages end to end)", ylabel="validation loss")
    axes[1].set(xlabel="epoch (stages end to end)", ylabel="validation accuracy")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return to_data_uri(fig)
