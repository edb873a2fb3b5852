"""steps.report: which experiment is best and which curve the report draws, asserted exactly.

Written for the mutation score of issue 21 (benchmarks/mutation.sh): mutants of these survived every fast test.
"""

from __future__ import annotations

import pandas as pd
from stagewise.steps import report


def _model(experiment: str, stage: str, value: float, kind: str | None = "stage") -> dict:
    model = {"experiment": experiment, "stage": stage, "result": {"metrics": {"accuracy": value, "rmse": value}}}
    return model | ({"kind": kind} if kind else {})


def test_the_best_model_is_the_last_stage_of_the_best_experiment_baselines_excluded():
    models = [
        _model("a", "1_head", 0.9),
        _model("a", "2_all", 0.5),  # a's final stage: a scores 0.5
        _model("b", "1_head", 0.7, kind=None),  # no kind: a stage
        _model("scratch", "scratch", 0.99, kind="baseline"),
    ]
    assert report.best_model(models, "accuracy")["experiment"] == "b"  # higher is better
    assert report.best_model(models, "rmse")["stage"] == "2_all"  # lower is better: a's 0.5
    assert report.best_model([_model("scratch", "scratch", 1.0, kind="baseline")], "accuracy") is None
    assert report.best_model([_model("a", "1", 2.0), _model("b", "1", -3.0)], "rmse")["experiment"] == "b"


def test_the_curves_show_the_primary_metric_else_the_first_recorded_else_the_loss():
    def curves(*columns: str) -> dict:
        return {"a": [("1_head", pd.DataFrame(columns=["epoch", "train_loss", *columns]))]}

    assert report._curve_metric(curves("val_loss", "val_f1", "val_accuracy"), "accuracy") == "val_accuracy"
    assert report._curve_metric(curves("val_loss", "val_f1", "val_accuracy"), "auroc") == "val_f1"
    assert report._curve_metric(curves("val_loss"), "accuracy") == "val_loss"


def test_the_metrics_table_keeps_the_headline_order_and_nan_intervals_without_a_bootstrap():
    from stagewise import tasks

    headline = list(tasks.get("classification").headline)
    metrics = dict.fromkeys(reversed(headline), 0.5)  # in another order than the headline's
    model = {
        "experiment": "a",
        "stage": "1_head",
        "result": {"task": "classification", "n_test": 4, "metrics": metrics},
    }
    table = report.metrics_table([model], {})
    assert [c for c in table.columns if c in headline] == headline
    assert table[f"{headline[0]}_ci_low"].isna().all() and table[f"{headline[0]}_ci_high"].isna().all()
