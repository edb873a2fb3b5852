"""report: every model's test metrics, predictions, history and benchmark -> metrics.tsv, report.html, figures/."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from .. import bootstrap, metric_names, tasks
from .. import paths as sw_paths
from ..errors import StagewiseError
from ..files import atomic_path, write_text
from ..report import html, plots

SCRATCH = "scratch"


def _predictions(folder: Path) -> tuple[dict, list[str]]:
    """The numeric arrays of test_predictions.h5 and its sample ids."""
    with h5py.File(folder / "test_predictions.h5", "r") as h5:
        ids = [s.decode() for s in h5["sample_ids"][()]]
        return {k: h5[k][()] for k in h5 if k not in ("sample_ids", "label_names", "latent")}, ids


def _load(model: dict) -> dict:
    folder = Path(model["dir"])
    result = json.loads((folder / "test_metrics.json").read_text())
    history = folder / "history.tsv"
    return {**model, "result": result, "history": pd.read_csv(history, sep="\t") if history.exists() else None}


def _paired(models: list[dict], evaluation: dict) -> dict[str, dict]:
    """Per model (label `experiment/stage`): the paired bootstrap of each headline metric against scratch."""
    scratch = next((m for m in models if m["experiment"] == SCRATCH), None)
    if scratch is None or not evaluation["bootstrap"]:
        return {}
    task, names = scratch["result"]["task"], scratch["result"]["label_names"]
    options = tasks.get(task).bootstrap_options(names, evaluation["top_k"])
    draw = {"resamples": evaluation["bootstrap"], "seed": evaluation["seed"], **options}
    base_data, base_ids = _predictions(Path(scratch["dir"]))
    base = tasks.get(task).replicates(base_data, **draw)
    out = {}
    for model in models:
        if model is scratch:
            continue
        data, ids = _predictions(Path(model["dir"]))
        if ids != base_ids:
            raise StagewiseError(
                f"{model['dir']}/test_predictions.h5: test samples differ from the scratch "
                "baseline's; rerun evaluate for both"
            )
        reps = tasks.get(task).replicates(data, **draw)
        scores, base_scores = model["result"]["metrics"], scratch["result"]["metrics"]
        out[f"{model['experiment']}/{model['stage']}"] = {
            name: bootstrap.paired(
                reps[name], base[name], value - base_scores[name], not metric_names.higher_is_better(name)
            )
            for name, value in scores.items()
            if name in reps and name in base_scores
        }
    return out


def metrics_table(models: list[dict], paired: dict) -> pd.DataFrame:
    """One row per model: each headline metric, its 95 % interval and the paired gain over scratch."""
    rows = []
    for model in models:
        result = model["result"]
        row = {"experiment": model["experiment"], "stage": model["stage"], "n_test": result["n_test"]}
        order = tasks.get(result["task"]).headline
        for name in sorted(result["metrics"], key=lambda n: order.index(metric_names.family(n))):
            value = result["metrics"][name]
            row[name] = value
            row[f"{name}_ci_low"], row[f"{name}_ci_high"] = result.get("ci", {}).get(name, [np.nan, np.nan])
        for name, gain in paired.get(f"{model['experiment']}/{model['stage']}", {}).items():
            row[f"{name}_gain"], (row[f"{name}_gain_ci_low"], row[f"{name}_gain_ci_high"]) = gain["gain"], gain["ci"]
            row[f"{name}_p_no_gain"] = gain["p_no_gain"]
        rows.append(row)
    return pd.DataFrame(rows)


def benchmarks(paths: list[str]) -> pd.DataFrame:
    """Snakemake's benchmark files: one row per job (rule, job, seconds, peak resident memory in MB)."""
    rows = []
    for path in paths:
        rule, job = sw_paths.benchmark_job(path)
        bench = pd.read_csv(path, sep="\t").iloc[0]
        rows.append(
            {
                "rule": rule,
                "job": job,
                "seconds": float(bench["s"]),
                "max_rss_mb": float(bench["max_rss"]) if bench["max_rss"] != "-" else np.nan,
            }
        )
    return pd.DataFrame(rows, columns=["rule", "job", "seconds", "max_rss_mb"])


def best_model(models: list[dict], primary: str) -> dict | None:
    """The final stage of the experiment with the best primary metric (baselines excluded)."""
    finals = {}
    for model in models:
        if model.get("kind", "stage") == "stage":
            finals[model["experiment"]] = model  # stages are listed in order: the last one wins
    sign = 1 if metric_names.higher_is_better(primary) else -1
    return max(finals.values(), key=lambda m: sign * m["result"]["metrics"][primary], default=None)


def _curve_metric(curves: dict, primary: str) -> str:
    """The validation column the learning curves show: the primary metric's, else the first one recorded."""
    columns = [c for stages in curves.values() for _, history in stages for c in history.columns]
    recorded = [c for c in columns if c.startswith("val_") and c != "val_loss"]
    return f"val_{primary}" if f"val_{primary}" in recorded else (recorded or ["val_loss"])[0]


def run(inputs: dict, outputs: dict, params: dict) -> None:
    """Collect every evaluated model into metrics.tsv, the figures, and the self-contained report.html."""
    models = [_load(model) for model in params["models"]]
    evaluation = params["evaluation"]
    task = models[0]["result"]["task"]
    scores = models[0]["result"]["metrics"]
    primary = tasks.get(task).primary if tasks.get(task).primary in scores else next(iter(scores))
    paired = _paired(models, evaluation)
    table = metrics_table(models, paired)
    write_text(outputs["metrics"], table.to_csv(sep="\t", index=False, float_format="%.6g"))
    best = best_model(models, primary)
    scratch = table[table.experiment == SCRATCH]
    curves = {}
    for model in models:
        if model["history"] is not None:
            curves.setdefault(model["experiment"], []).append((model["stage"], model["history"]))
    figures = {
        "learning_curves": plots.learning_curves(curves, _curve_metric(curves, primary)),
        "comparison": plots.comparison(table, primary, scratch[primary].iloc[0] if len(scratch) else None),
    }
    if best is not None and "confusion" in best["result"]:
        figures["confusion_matrix"] = plots.confusion(
            best["result"]["confusion"]["matrix"],
            best["result"]["confusion"]["labels"],
            f"{best['experiment']} / {best['stage']}",
        )
    figures_dir = Path(outputs["figures"])
    figures_dir.mkdir(parents=True, exist_ok=True)
    for name, image in figures.items():
        with atomic_path(figures_dir / f"{name}.png") as tmp:
            tmp.write_bytes(image)
    page = html.render(
        title=params["title"],
        task=task,
        primary=primary,
        table=table,
        models=models,
        best=best,
        paired=paired,
        figures=figures,
        evaluation=evaluation,
        compatibility=json.loads(Path(inputs["compatibility"]).read_text()),
        benchmarks=benchmarks(inputs["benchmarks"]),
        version=params["version"],
    )
    write_text(outputs["html"], page)
