"""The report's figures, as PNG bytes (inlined as data URIs, and files for `snakemake --report`)."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False})


def png(fig) -> bytes:
    """The figure as PNG bytes (no timestamp: the same data gives the same file)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def data_uri(image: bytes) -> str:
    """PNG bytes as a data: URI (the report makes no request to any other address)."""
    return "data:image/png;base64," + base64.b64encode(image).decode()


def learning_curves(curves: dict[str, list[tuple[str, pd.DataFrame]]], metric: str) -> bytes:
    """Per experiment (columns): losses, validation `metric` and learning rate per epoch, stages end to end."""
    fig, axes = plt.subplots(
        3, len(curves), figsize=(3.6 * len(curves) + 0.6, 6.6), sharex="col", sharey="row", squeeze=False
    )
    for column, (name, stages) in enumerate(curves.items()):
        loss_ax, metric_ax, lr_ax = axes[:, column]
        offset = 0
        for index, (stage, history) in enumerate(stages):
            x = history["epoch"].to_numpy() + offset
            first = index == 0
            loss_ax.plot(x, history["train_loss"], color="C0", label="train" if first else None)
            loss_ax.plot(x, history["val_loss"], color="C1", label="validation" if first else None)
            if metric in history:
                metric_ax.plot(x, history[metric], color="C2", marker=".", markersize=3)
            lr_ax.plot(x, history["lr"], color="C4", drawstyle="steps-mid")
            if index:
                for ax in (loss_ax, metric_ax, lr_ax):
                    ax.axvline(offset + 0.5, color="grey", linestyle="--", linewidth=0.8)
            loss_ax.annotate(
                stage, (offset + 1, 1.0), xycoords=("data", "axes fraction"), fontsize=7, va="bottom", color="dimgrey"
            )
            offset += len(history)
        loss_ax.set_title(name, pad=14)
        lr_ax.set_yscale("log")
        lr_ax.set_xlabel("epoch (stages end to end)")
    axes[0, 0].set_ylabel("loss")
    axes[1, 0].set_ylabel(metric.replace("_", " "))
    axes[2, 0].set_ylabel("learning rate")
    axes[0, 0].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return png(fig)


def comparison(table: pd.DataFrame, metric: str, baseline: float | None) -> bytes:
    """`metric` of every model with its 95 % bootstrap interval; the scratch baseline as a line."""
    rows = table.iloc[::-1]
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(rows) + 1.0))
    y = np.arange(len(rows))
    colors = [f"C{i % 10}" for i in pd.factorize(rows["experiment"])[0]]
    lo, hi = rows.get(f"{metric}_ci_low"), rows.get(f"{metric}_ci_high")
    if lo is not None:
        err = np.vstack([rows[metric] - lo, hi - rows[metric]])
        ax.errorbar(rows[metric], y, xerr=err, fmt="none", ecolor="dimgrey", capsize=3)
    ax.scatter(rows[metric], y, c=colors, zorder=3)
    if baseline is not None:
        ax.axvline(baseline, color="grey", linestyle=":", linewidth=1, label="scratch")
        ax.legend(fontsize=7, frameon=False, loc="lower right")
    ax.set_yticks(y, [f"{e} / {s}" if e != s else e for e, s in zip(rows["experiment"], rows["stage"])])
    ax.set_xlabel(f"test {metric.replace('_', ' ')} (95 % bootstrap CI)")
    fig.tight_layout()
    return png(fig)


def confusion(matrix: list[list[int]], labels: list[str], title: str) -> bytes:
    """The confusion matrix as a heatmap with counts (rows: true class)."""
    values = np.asarray(matrix)
    size = 1.2 + 0.45 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(values, cmap="Blues")
    for (i, j), count in np.ndenumerate(values):
        ax.text(
            j,
            i,
            str(count),
            ha="center",
            va="center",
            fontsize=8,
            color="white" if count > values.max() / 2 else "black",
        )
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels, rotation=45 if len(labels) > 4 else 0, ha="right" if len(labels) > 4 else "center")
    ax.set_yticks(ticks, labels)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return png(fig)
