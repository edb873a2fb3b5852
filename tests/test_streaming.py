"""io.batches: streamed batches equal in-memory batches, cover every sample once, and keep memory flat."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
import split_files
from stagewise.errors import StagewiseError
from stagewise.io import hdf5
from stagewise.io.batches import Batches


def _split(n: int, features: int = 16, seed: int = 0) -> split_files.Split:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, features)).astype(np.float32)
    X[:, 0] = np.arange(n)  # the row number, to follow samples through the shuffle
    return split_files.Split(
        X,
        rng.integers(0, 3, n),
        [f"f{i}" for i in range(features)],
        ["a", "b", "c"],
        [f"s{i}" for i in range(n)],
        {"batch": rng.integers(0, 2, n)},
        {"batch": ["p1", "p2"]},
    )


def _write(tmp_path, n: int, **kw) -> str:
    path = str(tmp_path / f"split{n}.h5")
    split_files.write(path, _split(n, **kw), "train", "test")
    return path


def _rows(batches: Batches, epoch: int) -> np.ndarray:
    return np.concatenate([x[:, 0].numpy() for x, _, _ in batches.epoch(epoch)]).astype(int)


def test_streaming_equals_in_memory_and_covers_every_sample(tmp_path, monkeypatch):
    monkeypatch.setattr(hdf5, "CHUNK_BYTES", 16 * 4 * 50)  # 50-row blocks: many blocks, several windows
    path = _write(tmp_path, 2000)
    streamed = Batches(path, 32, shuffle=True, seed=7, in_memory="false", window=4)
    loaded = Batches(path, 32, shuffle=True, seed=7, in_memory="true", window=4)
    assert streamed.block == 50 and not streamed.in_memory and loaded.in_memory
    for epoch in (1, 2):
        a, b = list(streamed.epoch(epoch)), list(loaded.epoch(epoch))
        assert len(a) == len(streamed) == 63
        assert all(len(y) == 32 for _, _, y in a[:-1]) and len(a[-1][2]) == 2000 - 62 * 32
        for (xa, _, ya), (xb, _, yb) in zip(a, b):
            assert (xa == xb).all() and (ya == yb).all()
        order = _rows(streamed, epoch)
        assert sorted(order) == list(range(2000))
        assert (order != np.arange(2000)).mean() > 0.9  # shuffled across blocks, not only within
    assert (_rows(streamed, 1) != _rows(streamed, 2)).any()
    assert (_rows(Batches(path, 32, shuffle=True, seed=7, window=4), 1) == _rows(streamed, 1)).all()  # seeded


def test_unshuffled_batches_keep_file_order_and_labels(tmp_path):
    path = _write(tmp_path, 300)
    split = split_files.read(path)
    batches = list(Batches(path, 64, in_memory="false").epoch(1))
    np.testing.assert_array_equal(np.concatenate([y.numpy() for _, _, y in batches]), split.y)
    np.testing.assert_array_equal(np.concatenate([x.numpy() for x, _, _ in batches]), split.X)


def test_sparse_split_is_densified_per_batch(tmp_path):
    X = sp.random(120, 30, density=0.2, format="csr", dtype=np.float32, random_state=0)
    layout = hdf5.Layout([f"g{i}" for i in range(30)], ["a", "b"], (30,), sparse=True)
    path = tmp_path / "sparse.h5"
    with hdf5.Writer(path, layout, {"split": "train", "source_sha256": "x"}) as out:
        for start in range(0, 120, 50):
            out.append(
                X[start : start + 50],
                np.arange(start, min(start + 50, 120)) % 2,
                [str(i) for i in range(start, min(start + 50, 120))],
            )
    dense = np.concatenate([x.numpy() for x, _, _ in Batches(str(path), 16, in_memory="false").epoch(1)])
    np.testing.assert_array_equal(dense, X.toarray())
    np.testing.assert_array_equal(split_files.read(path).X, X.toarray())


def test_feature_order_and_covariates_follow_the_model(tmp_path):
    path = _write(tmp_path, 100, features=3)
    split = split_files.read(path)
    batches = Batches(path, 100, feature_names=["f2", "f0", "f1"], categories={"batch": ["p2", "p0", "p1"]})
    x, c, _ = next(batches.epoch(1))
    np.testing.assert_array_equal(x.numpy(), split.X[:, [2, 0, 1]])
    expected = np.where(split.covariates["batch"] == 0, 2, 0)  # p1 -> column 2, p2 -> column 0
    np.testing.assert_array_equal(c.numpy().argmax(1), expected)
    with pytest.raises(StagewiseError, match="'p1'"):
        next(Batches(path, 100, categories={"batch": ["p2"]}).epoch(1))


def test_auto_reads_the_prepared_choice_and_size(tmp_path, monkeypatch):
    path = _write(tmp_path, 100)
    assert Batches(path, 10).in_memory  # auto, small
    monkeypatch.setattr("stagewise.io.batches.AUTO_BYTES", 10)
    assert not Batches(path, 10).in_memory


def _peak_bytes(path: str) -> int:
    batches = Batches(path, 64, shuffle=True, in_memory="false", window=2)
    tracemalloc.start()
    for _ in batches.epoch(1):
        pass
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_streaming_memory_stays_flat_as_data_grows(tmp_path, monkeypatch):
    monkeypatch.setattr(hdf5, "CHUNK_BYTES", 64 * 4 * 256)  # 256-row blocks of 64 features
    small, large = _write(tmp_path, 4000, features=64), _write(tmp_path, 32000, features=64)
    assert _peak_bytes(large) < 1.3 * _peak_bytes(small)  # 8x the data, flat memory
    assert _peak_bytes(large) < 32000 * 64 * 4 / 4  # far below the file's features


def test_training_from_a_streamed_file_learns_and_matches_in_memory(tmp_path, monkeypatch):
    """trainer.fit takes Batches as `train`: streamed and RAM give the same history, and the model learns."""
    from stagewise import freezing, trainer
    from stagewise.models import build
    from test_freezing import settings

    monkeypatch.setattr(hdf5, "CHUNK_BYTES", 16 * 4 * 64)
    split = _split(600)
    split.X[:, 0] = 0.0
    split.y = (split.X[:, 1] > 0).astype(np.int64)
    path = str(tmp_path / "train.h5")
    split_files.write(path, split, "train", "test")
    histories = []
    for mode in ("false", "true"):
        trainer.seed_everything(0)
        model = build("mlp", {"in_features": 16, "out_features": 3, "hidden": [16]})
        cfg = settings(epochs=2, batch_size=32, optimizer={"lr": 0.02})
        result = trainer.fit(
            model,
            Batches(path, 32, shuffle=True, seed=0, in_memory=mode),
            Batches(path, 32, in_memory=mode),
            cfg,
            freezing.Selection(names={n for n, _ in model.named_parameters()}),
            "stage",
        )
        histories.append([(r["train_loss"], r["val_loss"]) for r in result.history])
    assert histories[0] == histories[1]
    assert result.history[-1]["val_accuracy"] > 0.9


def test_evaluate_and_finetune_streamed_repeat_the_workflows_numbers(tiny_run, tmp_path, monkeypatch):
    """The workflow read its small files into RAM; the same steps streaming them (block by block, read ahead)
    give the same test metrics and the same training history."""
    import json

    from stagewise.io import batches
    from stagewise.steps import evaluate, finetune

    monkeypatch.setattr(batches, "AUTO_BYTES", 0)  # in_memory: auto now streams every file
    streamed = []
    monkeypatch.setattr(
        batches, "_prefetched", lambda it, device, real=batches._prefetched: streamed.append(1) or real(it, device)
    )
    results = tiny_run / "results"
    model = results / "gradual/stages/1_head/model_best.pt"
    outputs = {"metrics": str(tmp_path / "m.json"), "predictions": str(tmp_path / "p.h5")}
    params = {"evaluation": {"metrics": None, "top_k": [1], "bootstrap": 0, "seed": 0}}
    evaluate.run({"model": str(model), "test": str(results / "data/target/test.h5")}, outputs, params)
    expected = json.loads((model.parent / "test_metrics.json").read_text())["metrics"]
    assert json.loads((tmp_path / "m.json").read_text())["metrics"]["accuracy"] == expected["accuracy"]
    stage = json.loads((model.parent / "stage.json").read_text())["effective_config"]
    files = {k: str(tmp_path / f"{k}.out") for k in ("best", "last", "history", "stage")}
    inputs = {
        "model": str(results / "start/model.pt"),
        "train": str(results / "data/target/train.h5"),
        "val": str(results / "data/target/val.h5"),
    }
    finetune.run(inputs, files, {"stage": stage, "init": "parent", "label": "gradual/1_head"})
    assert (tmp_path / "history.out").read_text().splitlines()[1].split("\t")[:5] == (
        model.parent / "history.tsv"
    ).read_text().splitlines()[1].split("\t")[:5]
    assert streamed  # the files were streamed, not loaded


def test_a_last_training_batch_of_one_sample_joins_the_batch_before(tmp_path):
    """33 samples, batch 16: training gets 16 + 17 (BatchNorm cannot train on one sample); evaluation keeps 16 + 16 +
    1."""
    path = _write(tmp_path, 33)
    train, evaluation = Batches(path, 16, shuffle=True, seed=1), Batches(path, 16)
    assert [len(y) for _, _, y in train.epoch(0)] == [16, 17] and len(train) == 2
    assert sorted(_rows(train, 0)) == list(range(33))
    assert [len(y) for _, _, y in evaluation.epoch(0)] == [16, 16, 1] and len(evaluation) == 3
    assert [len(y) for _, _, y in Batches(_write(tmp_path, 34), 16, shuffle=True).epoch(0)] == [16, 16, 2]


def test_streamed_batches_are_read_ahead_and_the_reader_stops_with_the_epoch(tmp_path, monkeypatch):
    """Streaming, the next batch is read by a background thread: an error while reading reaches the caller, and an
    epoch left early (a failed step) leaves no thread behind."""
    import threading

    from stagewise.io import batches as module

    path = _write(tmp_path, 300)
    streamed = Batches(path, 16, shuffle=True, seed=1, in_memory="false")
    seen = []
    monkeypatch.setattr(
        module, "_prefetched", lambda it, device, real=module._prefetched: seen.append(1) or real(it, device)
    )
    epoch = streamed.epoch(1)
    next(epoch)
    assert seen and any(t.name == "stagewise-prefetch" for t in threading.enumerate())
    epoch.close()
    assert not any(t.name == "stagewise-prefetch" for t in threading.enumerate())

    def broken(*_args):
        raise StagewiseError("split300.h5: HDF5 read failed")

    monkeypatch.setattr(hdf5, "read_rows", broken)
    with pytest.raises(StagewiseError, match="HDF5 read failed"):
        list(Batches(path, 16, in_memory="false").epoch(0))


@pytest.mark.parametrize("source", ["two batches", "an error after two"])
def test_an_epoch_left_early_stops_its_reader_even_with_the_queue_full(source):
    """The consumer stops after one batch while the reader has filled the queue (and finished, or failed): closing
    returns at once and no thread is left behind."""
    import threading
    import time

    import torch
    from stagewise.io.batches import _prefetched

    def failing():
        yield (1,)
        yield (2,)
        raise StagewiseError("split.h5: HDF5 read failed")

    items = iter([(1,), (2,)]) if source == "two batches" else failing()
    reader = _prefetched(items, torch.device("cpu"), depth=1)
    assert next(reader) == (1,)
    time.sleep(0.3)  # the reader fills the queue and blocks on the next item
    closing = threading.Thread(target=reader.close, daemon=True)  # a hang fails the test instead of the suite
    closing.start()
    closing.join(timeout=5)
    assert not closing.is_alive(), "closing the epoch waits on its reader"
    assert not any(t.name == "stagewise-prefetch" and t.is_alive() for t in threading.enumerate())
