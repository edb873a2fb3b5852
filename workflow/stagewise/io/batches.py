"""Mini-batches of a prepared split as whole tensors, streamed in HDF5-chunk blocks or served from RAM.

Shuffling is by block: each epoch visits the blocks (HDF5 chunks along the sample axis) in a seeded
random order, reads `window` of them at a time and shuffles the rows within that window. Memory is
one window, whatever the size of the file. With the split in RAM the same blocks, windows and
permutations are used, so both modes give the same batches.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import numpy as np
import torch

from ..errors import StagewiseError
from . import hdf5

AUTO_BYTES = 1 << 30  # in_memory: auto loads a split whose dense features take at most this much
WINDOW = 16  # blocks read and shuffled together
JOIN_SECONDS = 60  # the read-ahead thread finishes the read under way, then stops


def one_hot(
    codes: dict[str, np.ndarray], own: dict[str, list[str]], categories: dict[str, list[str]], where: str
) -> np.ndarray:
    """Concatenated one-hot covariates in the model's `categories` order, from the file's codes and names."""
    parts = []
    for covariate, known in categories.items():
        if covariate not in codes:
            raise StagewiseError(
                f"{where}: the model takes covariate {covariate!r} but the data has {sorted(codes)}; add it to "
                f"data.*.covariates"
            )
        position = {c: i for i, c in enumerate(known)}
        lookup = np.array([position.get(c, -1) for c in own[covariate]], dtype=np.int64)[codes[covariate]]
        if (lookup < 0).any():
            unknown = sorted({own[covariate][c] for c in codes[covariate][lookup < 0]})
            raise StagewiseError(
                f"{where}: covariate {covariate!r} has categories {unknown} unknown to the model {known}; "
                "add them with pretrained.new_categories"
            )
        parts.append(np.eye(len(known), dtype=np.float32)[lookup])
    return np.concatenate(parts, axis=1)


def batch_bounds(n: int, batch_size: int, training: bool) -> list[tuple[int, int]]:
    """(start, stop) of each batch over `n` rows; in training, a last batch of a single sample joins the batch before
    it (BatchNorm cannot train on one sample)."""
    bounds = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    if training and len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def _join(first: tuple, second: tuple) -> tuple:
    """Two runs of rows `(X, y, covariates)` as one."""
    return (
        np.concatenate([first[0], second[0]]),
        np.concatenate([first[1], second[1]]),
        {k: np.concatenate([first[2][k], v]) for k, v in second[2].items()},
    )


class Batches:
    """Batches `(x, one-hot covariates or None, y)` of one prepared split file; `trainer.fit` takes it as `train`."""

    def __init__(
        self,
        path: str,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        feature_names: list[str] | None = None,
        categories: dict[str, list[str]] | None = None,
        fill: list[str] | tuple = (),
        in_memory: str | None = None,
        window: int = WINDOW,
    ) -> None:
        self.path, self.batch_size, self.shuffle, self.seed, self.window = str(path), batch_size, shuffle, seed, window
        self._h5 = hdf5.open_split(path)
        self.layout, self.n = hdf5.layout(self._h5), hdf5.n_samples(self._h5)
        X = self._h5["X"]
        self.block = X.chunks[0] if hasattr(X, "chunks") and X.chunks else hdf5.chunk_rows(self.layout.feature_shape)
        self.categories = categories or {}
        self.columns = self._columns(feature_names, set(fill))
        mode = str(in_memory or self._h5.attrs.get("in_memory", "auto"))
        self.in_memory = mode == "true" or (mode == "auto" and self.nbytes <= AUTO_BYTES)
        self._ram = hdf5.read_rows(self._h5, 0, self.n) if self.in_memory else None
        self.y = self._h5["y"][()]  # labels: small next to the features; loss weights and metrics need them all
        self.label_names = self.layout.label_names
        self.rank, self.world = 0, 1

    def shard(self, rank: int, world: int) -> Batches:
        """Serve rank `rank`'s part of every batch of a data-parallel stage of `world` processes: each global
        batch (the same batches, in the same block-shuffled order, as one process gets) is cut into `world`
        contiguous parts, sizes differing by at most one, lower ranks first; a part may be empty."""
        self.rank, self.world = rank, world
        return self

    @property
    def nbytes(self) -> int:
        """Size of the split's features as dense float32."""
        return self.n * 4 * int(np.prod(self.layout.feature_shape))

    def _columns(self, feature_names: list[str] | None, fill: set[str]) -> np.ndarray | None:
        """Column of each model feature in the file; -1 for a feature zero-filled (`pretrained.features: pad`)."""
        if feature_names is None or feature_names == self.layout.feature_names:
            return None
        position = {name: i for i, name in enumerate(self.layout.feature_names)}
        missing = [f for f in feature_names if f not in position and f not in fill]
        if missing or len(self.layout.feature_shape) != 1:
            raise StagewiseError(
                f"{self.path}: cannot order its features as the model's; missing {missing[:5]}; "
                "set pretrained.features: pad to zero-fill them, and rerun check_compatibility"
            )
        return np.array([position.get(f, -1) for f in feature_names])

    def __len__(self) -> int:
        return len(batch_bounds(self.n, self.batch_size, self.shuffle))

    def _rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        if self._ram is None:
            return hdf5.read_rows(self._h5, start, stop)
        X, y, covariates = self._ram
        return X[start:stop], y[start:stop], {k: v[start:stop] for k, v in covariates.items()}

    def _windows(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
        """Windows of rows: blocks in seeded random order, rows shuffled within each window."""
        rng = np.random.default_rng([self.seed, epoch])
        starts = np.arange(0, self.n, self.block)
        if self.shuffle:
            starts = rng.permutation(starts)
        for w in range(0, len(starts), self.window):
            parts = [self._rows(s, min(s + self.block, self.n)) for s in np.sort(starts[w : w + self.window])]
            X, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
            covariates = {k: np.concatenate([p[2][k] for p in parts]) for k in parts[0][2]}
            if self.shuffle:
                order = rng.permutation(len(y))
                X, y, covariates = X[order], y[order], {k: v[order] for k, v in covariates.items()}
            yield X, y, covariates

    def epoch(
        self, epoch: int, device: torch.device | str = "cpu"
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]]:
        """The batches of one epoch (its shuffle seeded by `seed` and `epoch`), moved to `device`. Training (`shuffle`):
        a last batch of a single sample joins the batch before it, as BatchNorm needs two samples to train.

        Streamed from the file or bound for a GPU, the next batch is read (and pinned) by a background thread while
        the current one computes; the batches and their order are the same either way."""
        device = torch.device(device)
        host = (self._host(batch, device) for batch in self._joined(epoch))
        prefetch = device.type == "cuda" or not self.in_memory
        for X, c, y in _prefetched(host, device) if prefetch else host:
            yield (
                X.to(device, non_blocking=True),
                None if c is None else c.to(device, non_blocking=True),
                y.to(device, non_blocking=True),
            )

    def _joined(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
        held = None
        for batch in self._global_batches(epoch):
            if held is not None and self.shuffle and len(batch[1]) == 1 < self.batch_size:  # only the last can be short
                batch = _join(held, batch)
            elif held is not None:
                yield held
            held = batch
        if held is not None:
            yield held

    def _host(self, batch: tuple, device: torch.device) -> tuple:
        """This process's part of a global batch as CPU tensors, in pinned memory when bound for a GPU."""
        X, y, covariates = batch
        part = self._part(len(y))
        X, y, covariates = X[part], y[part], {k: v[part] for k, v in covariates.items()}
        if self.columns is not None:
            X = np.where(self.columns >= 0, X[:, np.maximum(self.columns, 0)], np.float32(0)).astype(X.dtype)
        c = (
            torch.from_numpy(one_hot(covariates, self.layout.categories, self.categories, self.path))
            if self.categories
            else None
        )
        tensors = (torch.from_numpy(np.ascontiguousarray(X)), c, torch.from_numpy(np.ascontiguousarray(y)))
        if device.type == "cuda":
            return tuple(None if t is None else t.pin_memory() for t in tensors)
        return tensors

    def _global_batches(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
        """Every process's rows of each batch of the epoch, in order."""
        carry = None
        for X, y, covariates in self._windows(epoch):
            if carry is not None:
                X, y, covariates = _join(carry, (X, y, covariates))
            full = len(y) - len(y) % self.batch_size
            for start in range(0, full, self.batch_size):
                rows = slice(start, start + self.batch_size)
                yield X[rows], y[rows], {k: v[rows] for k, v in covariates.items()}
            carry = X[full:], y[full:], {k: v[full:] for k, v in covariates.items()}
        if carry is not None and len(carry[1]):
            yield carry

    def _part(self, n: int) -> slice:
        """This rank's rows of a global batch of `n` rows (all of them outside a data-parallel stage)."""
        if self.world == 1:
            return slice(0, n)
        from ..distributed import shard

        return shard(n, self.rank, self.world)

    @property
    def sample_ids(self) -> list[str]:
        """The split's sample ids, in file order (the order of an unshuffled epoch)."""
        return hdf5.sample_ids(self._h5)

    def close(self) -> None:
        """Close the file."""
        self._h5.close()


def _prefetched(batches: Iterator[tuple], device: torch.device, depth: int = 2) -> Iterator[tuple]:
    """`batches`, produced up to `depth` ahead by a background thread (reading the file, one-hot, pinning). The
    thread stops when the consumer does (an epoch left early, an error), and its errors reach the consumer."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    done, stop = object(), threading.Event()
    gpu = (device.index if device.index is not None else torch.cuda.current_device()) if device.type == "cuda" else None

    def offer(item: object) -> bool:
        """Queue `item` unless the consumer has stopped."""
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        if gpu is not None:
            torch.cuda.set_device(gpu)  # memory is pinned for the consumer's GPU (a new thread starts on GPU 0)
        try:
            for batch in batches:
                if not offer(batch):
                    return
            offer(done)
        except BaseException as error:  # raised again in the consumer, with the file's own message
            offer(error)

    thread = threading.Thread(target=produce, daemon=True, name="stagewise-prefetch")
    thread.start()
    try:
        while (item := ready.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=JOIN_SECONDS)
