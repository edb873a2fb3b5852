"""io.batches: a data-parallel rank's share of every batch, read in one process.

Written for the mutation score of issue 21 (benchmarks/mutation.sh): `Batches.shard` was reached only by the
distributed tests, which start processes.
"""

from __future__ import annotations

import numpy as np
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
