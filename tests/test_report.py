"""The report of a finished tiny run: headless Chromium, metrics.tsv, test_metrics.json, snakemake --report."""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import snakemake
from evaluated import write_evaluated
from matplotlib import image
from stagewise import paths
from stagewise.errors import StagewiseError
from stagewise.report import html
from stagewise.steps import evaluate, report

HAVE_CHROMIUM = Path("/usr/bin/chromium").exists() or shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    not HAVE_CHROMIUM and not os.environ.get("CI"),
    reason="chromium not installed (bash .ci/system-deps.sh); required in CI",
)

SHOWN = """Array.from(document.querySelectorAll('#metrics-table tbody tr')).map(tr => ({
  experiment: tr.dataset.experiment, stage: tr.dataset.stage,
  values: Object.fromEntries(Array.from(tr.querySelectorAll('td[data-metric]'))
                             .map(td => [td.dataset.metric, td.querySelector('.v').textContent]))}))
  .concat([{images: Array.from(document.images).map(i => i.naturalWidth)}])"""


@pytest.mark.e2e
@needs_chromium
def test_report_renders_offline_without_errors_and_shows_metrics_tsv(tiny_run, tmp_path):
    from headless import render

    page = render(tiny_run / "results/report.html", SHOWN)
    (tmp_path / "report.png").write_bytes(page.screenshot)
    offsite = [url for url in page.requests if not url.startswith(("file:", "data:"))]
    assert offsite == [] and page.errors == []
    pixels = image.imread(io.BytesIO(page.screenshot))[..., :3]
    assert pixels.shape[0] > 1500 and pixels.shape[1] == 1280  # the whole page, not one viewport
    assert (pixels.min(axis=2) < 0.9).mean() > 0.03 and pixels.std() > 0.1  # not blank
    *rows, images = page.values
    assert len(images["images"]) == 3 and min(images["images"]) > 200  # every inline figure decoded
    table = pd.read_csv(tiny_run / "results/metrics.tsv", sep="\t")
    assert [(r["experiment"], r["stage"]) for r in rows] == list(zip(table.experiment, table.stage))
    for row, (_, expected) in zip(rows, table.iterrows()):
        assert row["values"], row
        for metric, shown in row["values"].items():
            assert shown == f"{expected[metric]:.4f}", (row["experiment"], row["stage"], metric)
    assert page.pdf.startswith(b"%PDF") and len(page.pdf) > 50_000  # printable


@pytest.mark.e2e
def test_metrics_tsv_carries_intervals_and_paired_gains(tiny_run):
    table = pd.read_csv(tiny_run / "results/metrics.tsv", sep="\t").set_index(["experiment", "stage"])
    scratch = table.loc[("scratch", "scratch")]
    for (experiment, _stage), row in table.iterrows():
        for metric in ["accuracy", "balanced_accuracy", "f1", "auprc", "auroc"]:
            assert row[f"{metric}_ci_low"] <= row[metric] <= row[f"{metric}_ci_high"], (experiment, metric)
            if experiment != "scratch":
                assert row[f"{metric}_gain"] == pytest.approx(row[metric] - scratch[metric], abs=1e-5)
                assert row[f"{metric}_gain_ci_low"] <= row[f"{metric}_gain_ci_high"]
                assert 0 <= row[f"{metric}_p_no_gain"] <= 1
    assert np.isnan(scratch.get("accuracy_gain", np.nan))


@pytest.mark.e2e
def test_evaluate_outputs_are_complete_and_deterministic(tiny_run, tmp_path):
    folder = tiny_run / "results/gradual/stages/2_all"
    result = json.loads((folder / "test_metrics.json").read_text())
    assert set(result["ci"]) == set(result["metrics"]) and result["bootstrap"]["resamples"] == 1000
    assert set(result["per_class"]) == {"even", "odd"}
    assert np.sum(result["confusion"]["matrix"]) == result["n_test"]
    assert result["provenance"]["label"] == "gradual/2_all" and result["effective_config"]["policy"]["unfreeze_all"]
    with h5py.File(folder / "test_predictions.h5") as h5:
        assert h5["probabilities"].shape == (result["n_test"], 2) and len(h5["sample_ids"]) == result["n_test"]
        assert np.array_equal(h5["predictions"][()], h5["probabilities"][()].argmax(1))
    params = {"evaluation": {"metrics": None, "top_k": [1, 3], "bootstrap": 1000, "seed": 0}}
    inputs = {"model": str(folder / "model_best.pt"), "test": str(tiny_run / "results/data/target/test.h5")}
    outputs = {"metrics": str(tmp_path / "m.json"), "predictions": str(tmp_path / "p.h5")}
    evaluate.run(inputs, outputs, params)
    again = json.loads((tmp_path / "m.json").read_text())
    assert again["metrics"] == result["metrics"] and again["ci"] == result["ci"]


@pytest.mark.e2e
def test_snakemake_report_bundles_the_marked_figures_and_tables(tiny_run, tmp_path):
    out = tmp_path / "report.zip"
    snakemake(tiny_run, "--report", str(out))
    names = zipfile.ZipFile(out).namelist()
    for expected in [
        "learning_curves.png",
        "comparison.png",
        "confusion_matrix.png",
        "metrics.tsv",
        "report.html",
        "test_metrics.json",
    ]:
        assert any(name.endswith(expected) for name in names), expected


def test_benchmark_paths_and_stage_labels_read_back_as_the_rules_build_them(tmp_path):
    """The rules name benchmark files and stage labels with `stagewise.paths`; the report and the stages read them
    back with it."""
    label = paths.stage_label("gradual", "2_top")
    assert label == paths.STAGE_LABEL.format(experiment="gradual", index=2, stage="top")
    assert paths.config_path(label) == "experiments.gradual.stages[1] (top)"
    assert paths.config_path(paths.SCRATCH_LABEL) == "baselines/scratch"
    assert paths.config_path(paths.PRETRAIN_LABEL) == "pretrained.training"
    assert paths.benchmark("finetune") == "benchmarks/finetune/{experiment}/{index}_{stage}.tsv"
    assert paths.log("evaluate") == "logs/evaluate/{model}.log"
    jobs = [("finetune", label), ("evaluate", "gradual/stages/2_top"), ("check_compatibility", None)]
    files = []
    for rule, job in jobs:
        files.append(tmp_path / paths.benchmark(rule, job))
        files[-1].parent.mkdir(parents=True, exist_ok=True)
        files[-1].write_text("s\tmax_rss\n1.5\t-\n")
    assert [paths.benchmark_job(str(f.relative_to(tmp_path))) for f in files] == [
        ("finetune", "gradual/2_top"),
        ("evaluate", "gradual/stages/2_top"),
        ("check_compatibility", "check_compatibility"),
    ]
    table = report.benchmarks([str(f) for f in files])  # absolute paths read back the same
    assert table[["rule", "job"]].values.tolist() == [[r, j or paths.JOBS[r]] for r, j in jobs]
    assert table.seconds.tolist() == [1.5] * 3 and table.max_rss_mb.isna().all()


def test_paired_bootstrap_refuses_predictions_of_other_test_samples(tmp_path):
    models = []
    for name, ids in [("scratch", ["a", "b", "c"]), ("x", ["a", "b", "d"])]:
        folder = tmp_path / name
        folder.mkdir()
        with h5py.File(folder / "test_predictions.h5", "w") as h5:
            h5["labels"], h5["probabilities"] = [0, 1, 0], [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]
            h5["predictions"] = [0, 1, 0]
            h5.create_dataset("sample_ids", data=ids, dtype=h5py.string_dtype())
        result = {"task": "classification", "label_names": ["n", "p"], "metrics": {"accuracy": 1.0}}
        models.append({"experiment": name, "stage": name, "dir": str(folder), "result": result})
    with pytest.raises(StagewiseError, match="x/test_predictions.h5: test samples differ"):
        report._paired(models, {"bootstrap": 10, "seed": 0, "top_k": [1]})


def test_compatibility_section_shows_keys_it_does_not_know():
    page = html.compatibility_checks(
        {
            "checkpoint": "ckpt.pt",
            "status": "warning",
            "surgery": {"batch": ["new_lab"]},
            "checks": [
                {
                    "check": "features",
                    "status": "warning",
                    "message": "reordered 3",
                    "reordered": ["g1", "g2"],
                    "future_key": {"nested": 1},
                }
            ],
        }
    )
    for text in ["ckpt.pt", "reordered 3", "g1, g2", "future key", "nested", "surgery", "new_lab"]:
        assert text in page, text
    assert "<script" not in page and html.escape("<x>") == "&lt;x&gt;"


def test_metrics_table_without_bootstrap_shows_values_only():
    table = pd.DataFrame(
        [
            {
                "experiment": "a",
                "stage": "1_x",
                "n_test": 10,
                "accuracy": 0.5,
                "accuracy_ci_low": np.nan,
                "accuracy_ci_high": np.nan,
            }
        ]
    )
    page = html.metrics_section(table, "accuracy")
    assert (
        '<span class="v">0.5000</span></td>' in page
        and 'class="ci"' not in page.split("<tbody>")[1].split("</tbody>")[0]
    )


def _regression_model(folder: Path, y: np.ndarray, pred: np.ndarray, with_history: bool) -> None:
    from stagewise import bootstrap, metrics, tasks

    scores = metrics.regression(y, pred)
    reps = tasks.get("regression").replicates({"labels": y, "predictions": pred}, 200, 0)
    result = {
        "task": "regression",
        "n_test": len(y),
        "label_names": [],
        "metrics": scores,
        "ci": {k: bootstrap.interval(v) for k, v in reps.items()},
        "model_sha256": "ab" * 32,
    }
    history = {
        "epoch": [1, 2],
        "lr": [1e-3, 1e-3],
        "train_loss": [1.0, 0.5],
        "val_loss": [1.1, 0.6],
        "val_mae": [0.9, 0.5],
    }
    write_evaluated(folder, result, {"labels": y, "predictions": pred}, history if with_history else None)


def test_report_of_a_regression_run_compares_errors_the_right_way_round(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.normal(size=150)
    good, bad = tmp_path / "transfer", tmp_path / "scratch"
    _regression_model(good, y, y + rng.normal(scale=0.2, size=150), True)
    _regression_model(bad, y, y + rng.normal(scale=0.8, size=150), True)
    (tmp_path / "compatibility.json").write_text(json.dumps({"checkpoint": "c.pt", "status": "ok", "checks": []}))
    models = [
        {"experiment": "transfer", "stage": "1_all", "dir": str(good), "kind": "stage"},
        {"experiment": "scratch", "stage": "scratch", "dir": str(bad), "kind": "baseline"},
    ]
    outputs = {
        "html": str(tmp_path / "report.html"),
        "metrics": str(tmp_path / "metrics.tsv"),
        "figures": str(tmp_path / "figures"),
    }
    report.run(
        {"compatibility": str(tmp_path / "compatibility.json"), "benchmarks": []},
        outputs,
        {
            "models": models,
            "title": "regression",
            "version": "0",
            "evaluation": {"bootstrap": 200, "seed": 0, "top_k": [1]},
        },
    )
    table = pd.read_csv(outputs["metrics"], sep="\t").set_index("experiment")
    assert list(table.columns[2:5]) == ["mae", "mae_ci_low", "mae_ci_high"]  # the task's metric order
    assert (
        table.loc["transfer", "mae_gain"] < 0 and table.loc["transfer", "mae_p_no_gain"] < 0.01
    )  # lower error: a gain
    assert table.loc["transfer", "r2_gain"] > 0 and table.loc["transfer", "r2_p_no_gain"] < 0.01
    page = Path(outputs["html"]).read_text()
    assert "transfer helped" in page and "Per-class metrics apply to classification" in page
    assert sorted(p.name for p in Path(outputs["figures"]).iterdir()) == ["comparison.png", "learning_curves.png"]
