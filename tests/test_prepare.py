"""prepare_data: splits, summary.json, and every kind of bad input, each on a real file the test writes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import split_files
from conftest import TINY, snakemake, write_config
from stagewise import config
from stagewise.errors import StagewiseError
from stagewise.steps import prepare

SPLITS = ("train", "val", "test")


def table(n: int, seed: int = 0, batch: bool = False) -> pd.DataFrame:
    """A small table: four float features, a 3-class label, and (if `batch`) a batch covariate column."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 4)).astype(np.float32), columns=["g0", "g1", "g2", "g3"])
    frame["label"] = rng.choice(["a", "b", "c"], n)
    if batch:
        frame["batch"] = rng.choice(["p1", "p2", "p10"], n)
    return frame


def prepare_dataset(folder: Path, split: bool = True, **spec) -> tuple[dict[str, split_files.Split], dict]:
    """Run the prepare_data step on `spec` (defaults filled by the schema); return the splits and summary.
    `split` false: `prepare.read` instead (what `stagewise check` reads), its one file as `train`."""
    full = {
        "data": {"target": spec},
        "model": {},
        "pretrained": {"checkpoint": "model.pt"},
        "experiments": {"e": {"stages": [{"name": "s"}]}},
    }
    dataset = config.validate(full, source="test")["data"]["target"]
    if not split:  # what `stagewise check` reads: one file, every selected row
        (folder / "out").mkdir(parents=True, exist_ok=True)
        summary = prepare.read(dataset, "target", "classification", str(folder / "out" / "all.h5"))
        return {"train": split_files.read(folder / "out" / "all.h5")}, summary
    outputs = {k: str(folder / "out" / f"{k}.h5") for k in SPLITS} | {"summary": str(folder / "out" / "summary.json")}
    prepare.run({}, outputs, {"dataset": dataset, "name": "target"})
    return {k: split_files.read(outputs[k]) for k in SPLITS}, json.loads(Path(outputs["summary"]).read_text())


def _csv(folder: Path, frame: pd.DataFrame, name: str = "t.csv") -> str:
    frame.to_csv(folder / name, index=False)
    return str(folder / name)


def test_splits_are_stratified_seeded_and_recorded(tmp_path):
    path = _csv(tmp_path, table(400))
    splits, summary = prepare_dataset(tmp_path, train=path, val_fraction=0.25, test_fraction=0.2, seed=3)
    counts = summary["class_counts"]
    assert summary["samples"] == {"train": 240, "val": 80, "test": 80}
    total = pd.read_csv(path)["label"].value_counts()
    for split, n in summary["samples"].items():
        for label, count in counts[split].items():
            assert abs(count - total[label] * n / 400) <= 1  # stratified
    assert summary["sources"]["train"] == hashlib.sha256(Path(path).read_bytes()).hexdigest()
    ids = [set(s.sample_ids) for s in splits.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    again, _ = prepare_dataset(tmp_path / "again", train=path, val_fraction=0.25, test_fraction=0.2, seed=3)
    assert again["val"].sample_ids == splits["val"].sample_ids
    other, _ = prepare_dataset(tmp_path / "other", train=path, val_fraction=0.25, test_fraction=0.2, seed=4)
    assert other["val"].sample_ids != splits["val"].sample_ids
    with h5py.File(tmp_path / "out" / "train.h5") as h5:
        assert h5.attrs["split"] == "train" and h5.attrs["source_sha256"] == summary["source_sha256"]


def test_without_split_every_selected_row_is_train(tmp_path):
    """What `stagewise check` reads: the same names, labels and categories as the split workflow file, all rows in
    train."""
    path = _csv(tmp_path, table(90, batch=True))
    splits, summary = prepare_dataset(tmp_path, split=False, train=path, covariates=["batch"], classes=["a", "b"])
    split_workflow, workflow_summary = prepare_dataset(
        tmp_path / "w", train=path, covariates=["batch"], classes=["a", "b"]
    )
    kept = pd.read_csv(path)["label"].isin(["a", "b"])
    assert summary["samples"] == {"train": int(kept.sum())}
    assert sorted(splits["train"].sample_ids) == sorted(i for s in split_workflow.values() for i in s.sample_ids)
    for key in ("label_names", "categories", "n_features", "source_sha256"):
        assert summary[key] == workflow_summary[key]


def test_separate_test_file(tmp_path):
    train, test = _csv(tmp_path, table(200)), _csv(tmp_path, table(50, seed=1), "test.csv")
    splits, summary = prepare_dataset(tmp_path, train=train, test=test)
    assert summary["samples"] == {"train": 180, "val": 20, "test": 50}
    assert set(summary["sources"]) == {"train", "test"}
    assert all(i.startswith("test_") for i in splits["test"].sample_ids)


def test_missing_zero_replaces_nan(tmp_path):
    frame = table(60)
    frame.loc[[3, 7], "g1"] = np.nan
    splits, _ = prepare_dataset(tmp_path, train=_csv(tmp_path, frame), missing="zero")
    assert all(np.isfinite(s.X).all() for s in splits.values())


def _error(tmp_path, **spec) -> str:
    with pytest.raises(StagewiseError) as caught:
        prepare_dataset(tmp_path, **spec)
    assert not list((tmp_path / "out").glob("*"))  # nothing half-written, no staging file left
    return str(caught.value)


def test_missing_file(tmp_path):
    message = _error(tmp_path, train=str(tmp_path / "nope.csv"))
    assert "nope.csv" in message and "not found" in message


@pytest.mark.parametrize(
    "name,content",
    [
        ("bad.parquet", b"not parquet at all"),
        ("bad.h5", b"\x89HDF garbage"),
        ("bad.npz", b"PK broken zip"),
        ("bad.h5ad", b"junk"),
    ],
)
def test_corrupt_file(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    message = _error(tmp_path, train=str(tmp_path / name))
    assert name in message and "cannot read" in message


@pytest.mark.parametrize("content", ["", "g0,g1,label\n"])
def test_empty_file(tmp_path, content):
    (tmp_path / "e.csv").write_text(content)
    message = _error(tmp_path, train=str(tmp_path / "e.csv"))
    assert "e.csv" in message and ("empty" in message or "no samples" in message)


def test_label_column_absent_lists_columns(tmp_path):
    message = _error(tmp_path, train=_csv(tmp_path, table(30)), label="cell_type")
    assert "'cell_type'" in message and "'g0'" in message and "'label'" in message


def test_non_numeric_feature_column(tmp_path):
    frame = table(50).astype({"g2": str})
    frame.loc[41, "g2"] = "high"
    message = _error(tmp_path, train=_csv(tmp_path, frame))
    assert "t.csv" in message and "'g2'" in message and "numeric" in message
    frame.to_parquet(tmp_path / "t.parquet")
    message = _error(tmp_path, train=str(tmp_path / "t.parquet"))
    assert "'g2'" in message and "numeric" in message


def test_nan_and_inf_are_counted_with_first_rows(tmp_path):
    frame = table(60)
    frame.loc[[5, 9], "g0"] = np.nan
    frame.loc[12, "g3"] = np.inf
    message = _error(tmp_path, train=_csv(tmp_path, frame))
    assert "3 samples" in message and "[5, 9, 12]" in message and "missing: zero" in message


def test_duplicate_feature_names(tmp_path):
    (tmp_path / "d.csv").write_text("g0,g1,g0,label\n1,2,3,a\n4,5,6,b\n")
    message = _error(tmp_path, train=str(tmp_path / "d.csv"))
    assert "duplicate" in message and "'g0'" in message
    np.savez(tmp_path / "d.npz", X=np.zeros((4, 2)), y=np.arange(4), feature_names=np.array(["a", "a"]))
    assert "duplicate" in _error(tmp_path, train=str(tmp_path / "d.npz"))


def test_class_too_small_to_stratify(tmp_path):
    frame = table(60)
    frame.loc[0, "label"] = "rare"
    message = _error(tmp_path, train=_csv(tmp_path, frame))
    assert "'rare': 1" in message and "data.*.classes" in message


def test_label_absent_from_training_split(tmp_path):
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "s.h5", "w") as h5:
        h5["X"], h5["y"] = rng.normal(size=(20, 8, 4)), rng.integers(0, 2, (20, 8))  # never class 2
        h5["label_names"] = ["none", "acceptor", "donor"]
    message = _error(tmp_path, train=str(tmp_path / "s.h5"))
    assert "'donor'" in message and "training split" in message


def test_test_labels_unknown_to_training(tmp_path):
    test = table(30, seed=1)
    test.loc[0, "label"] = "z"
    message = _error(tmp_path, train=_csv(tmp_path, table(90)), test=_csv(tmp_path, test, "test.csv"))
    assert "'z'" in message and "test" in message


def test_mismatched_features_between_train_and_test(tmp_path):
    test = table(30, seed=1).rename(columns={"g3": "g9"})
    message = _error(tmp_path, train=_csv(tmp_path, table(90)), test=_csv(tmp_path, test, "test.csv"))
    assert "'g9'" in message and "'g3'" in message


def test_npz_missing_array_names_keys(tmp_path):
    np.savez(tmp_path / "a.npz", data=np.zeros((4, 2)), y=np.arange(4))
    message = _error(tmp_path, train=str(tmp_path / "a.npz"))
    assert "'X'" in message and "x_key" in message and "'data'" in message


def test_h5ad_label_absent_lists_obs_columns(tmp_path):
    import anndata

    adata = anndata.AnnData(
        X=np.ones((6, 3), np.float32), obs=pd.DataFrame({"cell_type": list("aabbcc")}, index=list("uvwxyz"))
    )
    adata.write_h5ad(tmp_path / "c.h5ad")
    message = _error(tmp_path, train=str(tmp_path / "c.h5ad"), label="celltype")
    assert "'celltype'" in message and "'cell_type'" in message


def test_workflow_stops_at_prepare_data_with_the_message(tmp_path):
    """Through snakemake: the rule fails with the file and column named, and leaves no outputs."""
    frame = table(40)
    frame.loc[3, "g1"] = np.nan
    (tmp_path / "never-read.pt").write_bytes(b"")  # exists (the config's files are checked first); never read
    cfg = {
        **TINY,
        "data": {"target": {"train": _csv(tmp_path, frame)}},
        "pretrained": {"checkpoint": str(tmp_path / "never-read.pt")},
    }
    write_config(tmp_path, cfg)
    done = snakemake(tmp_path, "results/data/target/summary.json", check=False)
    assert done.returncode != 0
    assert "t.csv" in done.stderr and "NaN" in done.stderr
    assert not list((tmp_path / "results" / "data" / "target").glob("*.h5"))


def test_empty_labels_are_an_error_naming_rows(tmp_path):
    frame = table(60).astype({"label": object})
    frame.loc[[7, 12], "label"] = None
    message = _error(tmp_path, train=_csv(tmp_path, frame))
    assert "2 samples have no label" in message and "[7, 12]" in message


def test_inconsistent_npz_arrays_are_an_error(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "a.npz", X=rng.normal(size=(30, 5)), y=rng.integers(0, 2, 30), feature_names=np.array(["a", "b"])
    )
    assert "'feature_names' has 2 names" in _error(tmp_path, train=str(tmp_path / "a.npz"))


def test_one_class_is_not_a_classification_target(tmp_path):
    frame = table(40).assign(label="a")
    message = _error(tmp_path, train=_csv(tmp_path, frame))
    assert "t.csv" in message and "has 1 class (a)" in message and "at least two" in message


def test_continuous_labels_ask_whether_the_task_is_regression(tmp_path):
    frame = table(60).assign(label=np.round(np.random.default_rng(0).normal(size=60), 3))
    message = _error(tmp_path, train=_csv(tmp_path, frame))
    assert "did you mean model.task: regression?" in message and "60 distinct numbers in 60 samples" in message
    assert len(message) < 500  # not every value
