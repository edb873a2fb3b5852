"""io.batches: a data-parallel rank's share of every batch read in one process, covariate columns; surgery.rename.

Written for the mutation score of issue 21 (benchmarks/mutation.sh): `Batches.shard` was reached only by the
distributed tests, which start processes; covariate errors and dtypes were asserted loosely.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from stagewise import surgery
from stagewise.errors import StagewiseError
from stagewise.io import hdf5
from stagewise.io.batches import Batches


def _write(path: str, n: int) -> str:
    X = np.zeros((n, 3), dtype=np.float32)
    X[:, 0] = np.arange(n)  # the row number
    with hdf5.Writer(path, hdf5.Layout(["a", "b", "c"], ["x", "y"], (3,)), {"split": "t", "source_sha256": "0"}) as out:
        out.append(X, np.arange(n) % 2, [f"s{i}" for i in range(n)], {})
    return path


def _rows(batches: Batches, epoch: int = 0) -> list[list[int]]:
    return [x[:, 0].int().tolist() for x, _, _ in batches.epoch(epoch)]


def test_each_rank_gets_its_contiguous_part_of_every_global_batch(tmp_path):
    path = _write(str(tmp_path / "t.h5"), 20)
    whole = _rows(Batches(path, 8))
    assert whole == [list(range(8)), list(range(8, 16)), list(range(16, 20))]
    parts = [_rows(Batches(path, 8).shard(rank, 3)) for rank in range(3)]
    assert parts[0] == [[0, 1, 2], [8, 9, 10], [16, 17]]
    assert parts[1] == [[3, 4, 5], [11, 12, 13], [18]]
    assert parts[2] == [[6, 7], [14, 15], [19]]
    shuffled = [_rows(Batches(path, 8, shuffle=True, seed=3).shard(rank, 2), 1) for rank in range(2)]
    together = _rows(Batches(path, 8, shuffle=True, seed=3), 1)
    assert [a + b for a, b in zip(*shuffled)] == together  # the same global batches, split
    sharded = Batches(path, 8).shard(1, 3)
    assert (sharded.rank, sharded.world) == (1, 3) and len(sharded) == 3


def _write_covariates(path: str, categories: dict[str, list[str]], n: int = 4) -> str:
    layout = hdf5.Layout(["a", "b", "c"], ["x", "y"], (3,), categories=categories)
    codes = {name: np.arange(n) % len(names) for name, names in categories.items()}
    with hdf5.Writer(path, layout, {"split": "t", "source_sha256": "0"}) as out:
        out.append(np.zeros((n, 3), dtype=np.float32), np.arange(n) % 2, [f"s{i}" for i in range(n)], codes)
    return path


def test_covariates_are_float32_one_hot_blocks_side_by_side(tmp_path):
    path = _write_covariates(str(tmp_path / "t.h5"), {"batch": ["p1", "p2"], "donor": ["d1", "d2", "d3"]})
    model = {"donor": ["d3", "d1", "d2"], "batch": ["p1", "p2"]}  # the model's order of covariates and categories
    (_, c, _), *_ = Batches(path, 4, categories=model).epoch(0)
    assert c.dtype == torch.float32
    # rows: batch p1 p2 p1 p2, donor d1 d2 d3 d1 -> donor columns (d3, d1, d2) first, then batch (p1, p2)
    assert c.tolist() == [[0, 1, 0, 1, 0], [0, 0, 1, 0, 1], [1, 0, 0, 1, 0], [0, 1, 0, 0, 1]]


def test_covariates_the_model_does_not_know_are_refused_naming_them(tmp_path):
    path = _write_covariates(str(tmp_path / "t.h5"), {"batch": ["p1", "p3"]})
    with pytest.raises(StagewiseError) as error:
        next(Batches(path, 4, categories={"batch": ["p1", "p2"]}).epoch(0))
    assert str(error.value) == (
        f"{path}: covariate 'batch' has categories ['p3'] unknown to the model ['p1', 'p2']; add them with "
        "pretrained.new_categories"
    )
    with pytest.raises(StagewiseError) as error:
        next(Batches(path, 4, categories={"donor": ["d1"]}).epoch(0))
    assert str(error.value) == (
        f"{path}: the model takes covariate 'donor' but the data has ['batch']; add it to data.*.covariates"
    )


def test_rename_takes_the_longest_matching_prefix():
    state = {"enc.0.w": 1, "enc.1.w": 2, "head.b": 3}
    assert surgery.rename(state, {"enc": "a", "enc.0": "b"}) == {"b.w": 1, "a.1.w": 2, "head.b": 3}


def _prefetching() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "stagewise-prefetch"]


def test_streamed_batches_reach_a_slow_consumer_all_and_an_abandoned_epoch_stops_its_thread(tmp_path):
    path = _write(str(tmp_path / "t.h5"), 24)
    streamed = Batches(path, 4, in_memory="false")  # read ahead by a background thread
    rows = []
    for x, _, _ in streamed.epoch(0):
        time.sleep(0.15)  # slower than the reader: its queue stays full
        rows += x[:, 0].int().tolist()
    assert rows == list(range(24))
    epoch = streamed.epoch(0)
    next(epoch)
    epoch.close()  # e.g. an error mid-epoch: the reader must not wait forever on its full queue
    assert not _prefetching()


def test_batch_bounds_merge_only_a_last_training_batch_of_one():
    from stagewise.io.batches import batch_bounds

    assert batch_bounds(1, 16, True) == [(0, 1)]
    assert batch_bounds(17, 16, True) == [(0, 17)]
    assert batch_bounds(33, 16, True) == [(0, 16), (16, 33)]
    assert batch_bounds(49, 16, True) == [(0, 16), (16, 32), (32, 49)]
    assert batch_bounds(34, 16, True) == [(0, 16), (16, 32), (32, 34)]
    assert batch_bounds(33, 16, False) == [(0, 16), (16, 32), (32, 33)]
