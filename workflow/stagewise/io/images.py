"""Image files as a `Source`: a folder of class folders (ImageFolder) or a table of paths and labels.

Images are decoded with Pillow in blocks of about `source.BLOCK_BYTES` (memory stays flat in the
number of images), converted to the configured channels, resized and/or centre-cropped, scaled
and, with given statistics, normalised; rows are float32 (C, H, W). Statistics computed on the
training split (`normalize: auto`) are applied by `standardize` once every split is written.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import StagewiseError
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
_WIDE = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}  # more than 8 bits per pixel: converted to float
_GREY = _WIDE | {"1", "L", "LA", "La"}


def settings(spec: dict) -> dict:
    """`data.*.images` with its defaults filled in."""
    return DEFAULTS | (spec.get("images") or {})


def is_image_table(path: str, spec: dict) -> bool:
    """A .csv/.tsv read as a table of image paths: only when `data.*.images` is given."""
    return spec.get("images") is not None and Path(path).suffix.lower() in (".csv", ".tsv")


def _pair(value, key: str) -> tuple[int, int] | int | None:
    if value is None or isinstance(value, int):
        return value
    if len(value) != 2:
        raise StagewiseError(f"data.*.images.{key} must be an integer or [height, width], not {value}")
    return int(value[0]), int(value[1])


@dataclass
class _Pipeline:
    """Decode one image file into a float32 (C, H, W) array, as configured."""

    channels: int  # 1 grey, 3 RGB
    resize: tuple[int, int] | int | None
    crop: tuple[int, int] | None
    scale: float | None  # None: by the image's mode
    resample: int
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    auto_channels: bool = False

    def resized(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after resize: [H, W] exactly, or the shorter side to an integer (torchvision's
        Resize(int))."""
        if isinstance(self.resize, int):
            short = min(width, height)
            return round(width * self.resize / short), round(height * self.resize / short)
        if self.resize is not None:
            return self.resize[1], self.resize[0]
        return width, height

    def size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after resize and crop."""
        return (self.crop[1], self.crop[0]) if self.crop is not None else self.resized(width, height)

    def load(self, path: Path) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                image.load()
                return self._convert(image, path)
        except (OSError, ValueError, SyntaxError, UnidentifiedImageError, Image.DecompressionBombError) as error:
            raise StagewiseError(f"{path}: cannot read the image ({error}); replace or remove the file") from None

    def _convert(self, image, path: Path) -> np.ndarray:
        grey = image.mode in _GREY
        if self.auto_channels and self.channels == 1 and not grey:
            raise StagewiseError(
                f"{path}: a colour image ({image.mode}) among grey ones; "
                "set data.*.images.channels to rgb (or grey) to convert them all"
            )
        scale = self.scale or _mode_scale(image.mode)
        if grey or self.channels == 1:  # one channel, at the file's precision (8 bits, 16 bits or float)
            image = image.convert("F" if image.mode in _WIDE else "L")
        else:
            image = image.convert("RGB")
        size = self.resized(*image.size)
        if size != image.size:
            image = image.resize(size, self.resample)
        if self.crop is not None:
            height, width = self.crop
            if width > image.size[0] or height > image.size[1]:
                raise StagewiseError(
                    f"{path}: {image.size[0]}x{image.size[1]} (width x height, after resize) is "
                    f"smaller than data.*.images.crop {list(self.crop)}"
                )
            left, top = (image.size[0] - width) // 2, (image.size[1] - height) // 2
            image = image.crop((left, top, left + width, top + height))
        pixels = np.asarray(image, dtype=np.float32)
        pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
        if pixels.shape[0] != self.channels:  # a grey image where RGB is asked for
            pixels = np.repeat(pixels, self.channels, axis=0)
        pixels = pixels / scale
        if self.mean is not None:
            pixels = (pixels - self.mean[:, None, None]) / self.std[:, None, None]
        return pixels


def _mode_scale(mode: str) -> float:
    """The value that maps the mode's full range to 1: 255 (8-bit), 65535 (16-bit), 1 (float)."""
    if mode in _WIDE:
        return 1.0 if mode == "F" else 65535.0
    return 255.0


def _pipeline(first_mode: str, options: dict) -> _Pipeline:
    """The decoding pipeline of `data.*.images`; `channels: auto` takes the first image's (its mode)."""
    from PIL import Image

    resamplers = {
        "nearest": Image.Resampling.NEAREST,
        "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC,
        "lanczos": Image.Resampling.LANCZOS,
    }
    crop = _pair(options["crop"], "crop")
    channels, auto = {"grey": 1, "rgb": 3}.get(options["channels"]), options["channels"] == "auto"
    if auto:
        channels = 1 if first_mode in _GREY else 3
    scale = None if options["scale"] == "auto" else float(options["scale"])
    mean = std = None
    normalize = options["normalize"]
    if isinstance(normalize, dict):
        mean, std = (np.asarray(normalize[k], np.float32) for k in ("mean", "std"))
        if len(mean) != channels or len(std) != channels:
            raise StagewiseError(
                f"data.*.images.normalize: mean and std need {channels} values (one per channel), "
                f"got {len(mean)} and {len(std)}"
            )
        if (std <= 0).any():
            raise StagewiseError("data.*.images.normalize.std must be positive")
    return _Pipeline(
        channels,
        _pair(options["resize"], "resize"),
        None if crop is None else (crop, crop) if isinstance(crop, int) else crop,
        scale,
        resamplers[options["resample"]],
        mean,
        std,
        auto,
    )


def _header(path: Path) -> tuple[str, tuple[int, int]]:
    """(mode, (width, height)) from the file's header, without decoding the pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.mode, image.size
    except (OSError, ValueError, SyntaxError, UnidentifiedImageError) as error:
        raise StagewiseError(f"{path}: cannot read the image ({error}); replace or remove the file") from None


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
    mode, (width, height) = _header(files[0])
    pipeline = _pipeline(mode, options)
    width, height = pipeline.size(width, height)
    shape = (pipeline.channels, height, width)
    names = [f"pixel_{c}_{y}_{x}" for c in range(shape[0]) for y in range(shape[1]) for x in range(shape[2])]
    step = block_rows(shape)
    workers = max(1, min(4, os.cpu_count() or 1))

    def decode(file: Path) -> np.ndarray:
        pixels = pipeline.load(file)
        if pixels.shape != shape:
            raise StagewiseError(
                f"{file}: image is {pixels.shape[2]}x{pixels.shape[1]} (width x height) but {files[0]} is "
                f"{width}x{height}"
                + (
                    ""
                    if options["resize"] or options["crop"]
                    else "; images of mixed sizes need data.*.images.resize (and/or crop)"
                )
                + ("" if pixels.shape[0] == shape[0] else f"; it has {pixels.shape[0]} channels, not {shape[0]}")
            )
        return pixels

    def blocks() -> Iterator[Block]:
        with ThreadPoolExecutor(workers) as pool:  # Pillow releases the GIL while decoding
            for start in range(0, len(files), step):
                yield Block(start, np.stack(list(pool.map(decode, files[start : start + step]))))

    source = Source(
        path,
        names,
        shape,
        len(files),
        blocks,
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
