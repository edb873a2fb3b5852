"""Every input format through prepare_data: real files written by the tests, values checked after the round trip."""

from __future__ import annotations

import anndata
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import split_files
from test_prepare import prepare_dataset, table


def _rows_by_id(split: split_files.Split) -> dict[str, np.ndarray]:
    return dict(zip(split.sample_ids, split.X))


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
def test_tables_keep_values_labels_and_covariates(tmp_path, suffix):
    frame = table(120, batch=True)
    path = tmp_path / f"cells{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
    splits, summary = prepare_dataset(tmp_path, train=str(path), covariates=["batch"])
    assert sum(summary["samples"].values()) == 120
    for split in splits.values():
        assert split.feature_names == ["g0", "g1", "g2", "g3"]
        assert split.categories == {"batch": ["p1", "p10", "p2"]}  # sorted; numbers alone sort numerically
        rows = [int(i.rsplit("_", 1)[1]) for i in split.sample_ids]
        np.testing.assert_allclose(split.X, frame.loc[rows, ["g0", "g1", "g2", "g3"]].to_numpy(), rtol=1e-6)
        assert [split.label_names[c] for c in split.y] == frame.loc[rows, "label"].tolist()
        assert [split.categories["batch"][c] for c in split.covariates["batch"]] == frame.loc[rows, "batch"].tolist()


def test_table_feature_list_selects_and_orders_columns(tmp_path):
    table(60).to_csv(tmp_path / "t.csv", index=False)
    splits, _ = prepare_dataset(tmp_path, train=str(tmp_path / "t.csv"), features=["g3", "g1"])
    assert splits["train"].feature_names == ["g3", "g1"]


def test_csv_larger_than_one_block_streams_in_order(tmp_path, monkeypatch):
    monkeypatch.setattr("stagewise.io.source.BLOCK_BYTES", 64)  # 4 rows per block
    frame = table(200)
    frame.to_csv(tmp_path / "t.csv", index=False)
    splits, _ = prepare_dataset(tmp_path, train=str(tmp_path / "t.csv"))
    for split in splits.values():
        rows = [int(i.rsplit("_", 1)[1]) for i in split.sample_ids]
        assert rows == sorted(rows)
        np.testing.assert_allclose(split.X, frame.loc[rows, ["g0", "g1", "g2", "g3"]].to_numpy(), rtol=1e-6)


def _anndata(n: int = 90) -> anndata.AnnData:
    rng = np.random.default_rng(1)
    X = sp.random(n, 12, density=0.3, format="csr", dtype=np.float32, random_state=1)
    obs = pd.DataFrame(
        {"cell_type": rng.choice(["B", "T", "NK"], n), "batch": rng.choice(["s1", "s2"], n)},
        index=[f"cell{i}" for i in range(n)],
    )
    adata = anndata.AnnData(X=X, obs=obs, var=pd.DataFrame(index=[f"gene{i}" for i in range(12)]))
    adata.layers["counts"] = (X * 7).astype(np.float32)
    return adata


@pytest.mark.parametrize("sparse", [True, False])
def test_h5ad_sparse_stays_sparse_dense_stays_dense(tmp_path, sparse):
    adata = _anndata()
    if not sparse:
        adata.X = adata.X.toarray()
    adata.write_h5ad(tmp_path / "cells.h5ad")
    splits, summary = prepare_dataset(
        tmp_path, train=str(tmp_path / "cells.h5ad"), label="cell_type", covariates=["batch"]
    )
    assert summary["sparse"] is sparse
    with h5py.File(tmp_path / "out" / "train.h5") as h5:
        assert isinstance(h5["X"], h5py.Group) is sparse
        if sparse:
            assert sorted(h5["X"]) == ["data", "indices", "indptr"] and tuple(h5["X"].attrs["shape"]) == (
                len(h5["y"]),
                12,
            )
    dense = adata.X.toarray() if sparse else adata.X
    for split in splits.values():
        assert split.feature_names == [f"gene{i}" for i in range(12)]
        index = [int(i[4:]) for i in split.sample_ids]
        np.testing.assert_array_equal(split.X, dense[index])
        assert [split.label_names[c] for c in split.y] == adata.obs["cell_type"].iloc[index].tolist()
        assert split.categories == {"batch": ["s1", "s2"]}


def test_h5ad_layer(tmp_path):
    adata = _anndata()
    adata.write_h5ad(tmp_path / "cells.h5ad")
    splits, _ = prepare_dataset(tmp_path, train=str(tmp_path / "cells.h5ad"), label="cell_type", layer="counts")
    index = [int(i[4:]) for i in splits["train"].sample_ids]
    np.testing.assert_allclose(splits["train"].X, adata.layers["counts"].toarray()[index])


def test_npz_named_arrays_any_rank(tmp_path):
    rng = np.random.default_rng(2)
    images, classes = rng.normal(size=(80, 1, 6, 6)).astype(np.float32), rng.integers(0, 2, 80)
    np.savez(tmp_path / "images.npz", images=images, target=classes)
    splits, summary = prepare_dataset(tmp_path, train=str(tmp_path / "images.npz"), x_key="images", label="target")
    assert summary["feature_shape"] == [1, 6, 6]
    rows = [int(i.rsplit("_", 1)[1]) for i in splits["test"].sample_ids]
    np.testing.assert_array_equal(splits["test"].X, images[rows])
    np.testing.assert_array_equal(splits["test"].y, classes[rows])


def test_h5_sequences_with_per_position_labels(tmp_path):
    """OpenSpliceAI's layout: one-hot sequences (N, L, 4) and a class per position (N, L)."""
    rng = np.random.default_rng(3)
    seqs = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (50, 40))]
    labels = rng.choice(3, (50, 40), p=[0.9, 0.05, 0.05])
    with h5py.File(tmp_path / "splice.h5", "w") as h5:
        h5["X"], h5["Y"] = seqs, labels
        h5["label_names"] = ["none", "acceptor", "donor"]
    splits, summary = prepare_dataset(tmp_path, train=str(tmp_path / "splice.h5"), label="Y")
    assert summary["label_names"] == ["none", "acceptor", "donor"]
    assert sum(summary["samples"].values()) == 50
    assert sum(sum(c.values()) for c in summary["class_counts"].values()) == 50 * 40  # positions counted
    train = splits["train"]
    assert train.X.shape[1:] == (40, 4) and train.y.shape[1:] == (40,)
    rows = [int(i.rsplit("_", 1)[1]) for i in train.sample_ids]
    np.testing.assert_array_equal(train.y, labels[rows])
    np.testing.assert_array_equal(train.X, seqs[rows])


def test_sklearn_digits_example_keys_unchanged(tmp_path):
    label_map = {d: ("even" if d % 2 == 0 else "odd") for d in range(10)}
    splits, summary = prepare_dataset(
        tmp_path,
        train="sklearn:digits",
        rows=[1000, 1797],
        label_map=label_map,
        test_fraction=0.5,
        val_fraction=0.2,
        train_per_class=10,
    )
    assert summary["class_counts"]["train"] == {"even": 10, "odd": 10}
    assert summary["samples"] == {"train": 20, "val": 80, "test": 399}
    ids = {int(i.split("_")[1]) for s in splits.values() for i in s.sample_ids}
    assert min(ids) >= 1000 and max(ids) < 1797
