"""Image files as a `Source`: a folder of class folders (ImageFolder) or a table of paths and labels.

Images are decoded in blocks of about `source.BLOCK_BYTES` (memory stays flat in the number of
images) by `io.pixels`; rows are float32 (C, H, W). Statistics computed on the
training split (`normalize: auto`) are applied by `standardize` once every split is written.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import StagewiseError
from . import pixels
from .source import Block, Source, as_labels, block_rows, no_table_keys

EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
DEFAULTS = {
    "column": "path",
    "resize": None,
    "crop": None,
    "channels": "auto",
    "scale": "auto",
    "normalize": "none",
    "resample": "bilinear",
}


def settings(spec: dict) -> dict:
    """`data.*.images` with its defaults filled in."""
    return DEFAULTS | (spec.get("images") or {})


def is_image_table(path: str, spec: dict) -> bool:
    """A .csv/.tsv read as a table of image paths: only when `data.*.images` is given."""
    return spec.get("images") is not None and Path(path).suffix.lower() in (".csv", ".tsv")


def _list_folder(root: Path) -> tuple[list[Path], list[str]]:
    """Image files under each class folder of `root` (sorted classes, then sorted paths) and their labels."""
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise StagewiseError(
            f"{root}: no class folders; an image folder holds one sub-folder per class "
            "(e.g. cats/1.png, dogs/7.jpg), or give a table of image paths and labels"
        )
    files, labels = [], []
    for folder in classes:
        found = sorted(
            p
            for p in folder.rglob("*")
            if p.suffix.lower() in EXTENSIONS
            and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        )
        if not found:
            raise StagewiseError(
                f"{folder}: class folder with no images ({', '.join(EXTENSIONS)}); add images or remove the folder"
            )
        files += found
        labels += [folder.name] * len(found)
    return files, labels


def _read_table(path: str, spec: dict, column: str) -> tuple[list[Path], np.ndarray, dict[str, np.ndarray]]:
    """Image paths (relative to the table's folder), labels and covariates from a .csv/.tsv table."""
    import pandas as pd

    label, covariates = spec.get("label") or "label", list(spec.get("covariates") or [])
    try:
        table = pd.read_csv(path, sep="\t" if path.lower().endswith(".tsv") else ",", dtype=str, keep_default_na=False)
    except (ValueError, OSError, pd.errors.ParserError) as error:
        raise StagewiseError(f"{path}: cannot read as a table: {error}") from None
    for key, what in [
        (column, "data.*.images.column"),
        (label, "data.*.label"),
        *((c, "data.*.covariates") for c in covariates),
    ]:
        if key not in table.columns:
            raise StagewiseError(f"{path}: no column {key!r} ({what}); columns are {list(table.columns)[:20]}")
    base = Path(path).parent
    files = [base / p for p in table[column]]
    for row, (name, file) in enumerate(zip(table[column], files)):
        if not name:
            raise StagewiseError(f"{path}: row {row + 2} has an empty {column!r}")
        if not file.is_file():
            raise StagewiseError(
                f"{path}: row {row + 2}: image {name!r} not found (looked for {file}; "
                "paths are relative to the table's folder)"
            )
    return files, as_labels(table[label].to_numpy()), {c: as_labels(table[c].to_numpy()) for c in covariates}


def _digest(files: list[Path], root: Path, tables: list[str]) -> str:
    """sha256 over the table (if any) and every image's relative path and bytes, in order."""
    digest = hashlib.sha256()
    for table in tables:
        digest.update(Path(table).read_bytes())
    for file in files:
        digest.update(os.path.relpath(file, root).encode() + b"\0")
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def open_images(path: str, spec: dict, scratch: Path) -> Iterator[Source]:
    """A folder of class folders, or a .csv/.tsv of image paths and labels, as a Source of (C, H, W) rows."""
    options = settings(spec)
    if Path(path).is_dir():
        no_table_keys(spec, path)
        files, labels = _list_folder(Path(path))
        labels, covariates, root, tables = as_labels(labels), {}, Path(path), []
    else:
        no_table_keys(spec, path, allowed=("covariates",))
        files, labels, covariates = _read_table(path, spec, options["column"])
        root, tables = Path(path).parent, [path]
        if not files:
            raise StagewiseError(f"{path}: the table lists no images")
    mode, (width, height) = pixels.header(files[0])
    pipeline = pixels.pipeline(mode, options)
    width, height = pipeline.size(width, height)
    shape = (pipeline.channels, height, width)
    names = [f"pixel_{c}_{y}_{x}" for c in range(shape[0]) for y in range(shape[1]) for x in range(shape[2])]
    source = Source(
        path,
        names,
        shape,
        len(files),
        _image_blocks(files, pipeline, shape, bool(options["resize"] or options["crop"])),
        labels,
        covariates=covariates,
        sample_ids=np.array([os.path.relpath(f, root) for f in files]),
    )
    source.sha256 = _digest(files, root, tables)
    source.info = {
        "images": {
            **options,
            "channels": ["grey", "rgb"][shape[0] == 3],
            "shape": list(shape),
            "first_image_mode": mode,
        }
    }
    if options["normalize"] == "auto":
        source.finish = standardize
    yield source


def _image_blocks(
    files: list[Path], pipeline: pixels.Pipeline, shape: tuple[int, int, int], resized: bool
) -> Callable[[], Iterator[Block]]:
    """Blocks of decoded images, in file order; an image whose (C, H, W) is not `shape` (the first one's) is an
    error (`resized`: data.*.images.resize or crop is set)."""
    step, workers = block_rows(shape), max(1, min(4, os.cpu_count() or 1))

    def decode(file: Path) -> np.ndarray:
        values = pipeline.load(file)
        if values.shape != shape:
            raise StagewiseError(
                f"{file}: image is {values.shape[2]}x{values.shape[1]} (width x height) but {files[0]} is "
                f"{shape[2]}x{shape[1]}"
                + ("" if resized else "; images of mixed sizes need data.*.images.resize (and/or crop)")
                + ("" if values.shape[0] == shape[0] else f"; it has {values.shape[0]} channels, not {shape[0]}")
            )
        return values

    def blocks() -> Iterator[Block]:
        with ThreadPoolExecutor(workers) as pool:  # Pillow releases the GIL while decoding
            for start in range(0, len(files), step):
                yield Block(start, np.stack(list(pool.map(decode, files[start : start + step]))))

    return blocks


def standardize(writers: dict) -> dict:
    """Per-channel mean and std of the written training split; every split is normalised with them in place."""
    train = writers["train"].h5["X"]
    channels = train.shape[1]
    total, squares, count = np.zeros(channels), np.zeros(channels), 0
    step = block_rows(train.shape[1:])
    for start in range(0, train.shape[0], step):
        part = train[start : start + step].astype(np.float64)
        total += part.sum(axis=(0, 2, 3))
        squares += np.square(part).sum(axis=(0, 2, 3))
        count += part.shape[0] * part.shape[2] * part.shape[3]
    if count == 0:
        raise StagewiseError("data.*.images.normalize: auto needs training images")
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    std = np.where(std > 0, std, 1.0)
    m, s = mean.astype(np.float32)[:, None, None], std.astype(np.float32)[:, None, None]
    for writer in writers.values():
        X = writer.h5["X"]
        for start in range(0, X.shape[0], step):
            X[start : start + step] = (X[start : start + step] - m) / s
    return {"mean": mean.round(6).tolist(), "std": std.round(6).tolist()}
