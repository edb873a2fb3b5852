"""Open any supported input as a `Source` (`io.source`) by its suffix: tables, images and genomes through their
modules; arrays (.npz, .h5), AnnData (.h5ad) and built-in datasets here."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from ..errors import StagewiseError
from . import genome, images, tables
from .source import Source, array_blocks, as_labels, check_numeric, no_table_keys


@contextmanager
def open_source(path: str, spec: dict, scratch: Path) -> Iterator[Source]:
    """Open `path` by its suffix; `scratch` is a folder for temporary files, removed on exit."""
    if path.startswith("sklearn:"):
        yield _sklearn(path, spec)
        return
    if Path(path).is_dir() or (Path(path).is_file() and images.is_image_table(path, spec)):
        with images.open_images(path, spec, scratch) as source:
            yield source
        return
    if not Path(path).is_file():
        raise StagewiseError(f"{path}: data file not found (check data.*.train / data.*.test in the config)")
    if genome.is_fasta(path) or spec.get("genome") is not None:
        with genome.open_genome(path, spec, scratch) as source:
            yield source
        return
    if spec.get("images") is not None:
        raise StagewiseError(
            f"{path}: data.*.images applies to a folder of image class folders or a .csv/.tsv of image paths; remove it"
        )
    suffix = Path(path).suffix.lower()
    openers = {
        ".csv": tables.open_csv,
        ".tsv": tables.open_csv,
        ".parquet": tables.open_parquet,
        ".npz": _npz,
        ".h5": _h5,
        ".hdf5": _h5,
        ".h5ad": _h5ad,
    }
    if suffix not in openers:
        raise StagewiseError(
            f"{path}: unsupported file type {suffix!r}; use one of {sorted(openers)}, a FASTA genome "
            f"({', '.join(genome.FASTA)}, optionally .gz), a folder of image class folders or sklearn:digits"
        )
    if Path(path).stat().st_size == 0:
        raise StagewiseError(f"{path}: the file is empty")
    with openers[suffix](path, spec, scratch) as source:
        if source.n == 0:
            raise StagewiseError(f"{path}: no samples (the file has no data rows)")
        yield source


def _sklearn(path: str, spec: dict) -> Source:
    from sklearn import datasets

    no_table_keys(spec, path)
    if path != "sklearn:digits":
        raise StagewiseError(f"{path}: unknown built-in dataset; available: sklearn:digits")
    bunch = datasets.load_digits()
    X = bunch.data.astype(np.float32) / 16.0
    names = [f"pixel_{i // 8}_{i % 8}" for i in range(X.shape[1])]
    return Source(
        path,
        names,
        X.shape[1:],
        len(X),
        array_blocks(X),
        as_labels(bunch.target),
        sample_ids=np.array([f"digits_{i}" for i in range(len(X))]),
    )


def _arrays(path: str, spec: dict, arrays, keys: list[str]) -> Source:
    """A Source over arrays named in the config (`x_key`, `label`) of an .npz or .h5 file."""
    no_table_keys(spec, path)
    x_key, label = spec.get("x_key") or "X", spec.get("label") or "y"
    for key, what in ((x_key, "data.*.x_key"), (label, "data.*.label")):
        if key not in keys:
            raise StagewiseError(f"{path}: no array {key!r} ({what}); the file holds {sorted(keys)}")
    X, y = arrays[x_key], arrays[label]
    for key, array, what in ((x_key, X, "data.*.x_key"), (label, y, "data.*.label")):
        if isinstance(array, h5py.Group):
            raise StagewiseError(f"{path}: {key!r} is a group, not an array; name the dataset in {what}")
    check_numeric(X.dtype, path, f"array {x_key!r}")
    if len(X.shape) < 2 or y.shape[0] != X.shape[0]:
        raise StagewiseError(
            f"{path}: {x_key!r} has shape {X.shape} and {label!r} has shape {y.shape}; "
            "both need the samples along the first axis"
        )
    names = (
        [_text(n) for n in arrays["feature_names"][()]]
        if "feature_names" in keys
        else [f"f{i}" for i in range(int(np.prod(X.shape[1:])))]
    )
    ids = np.array([_text(s) for s in arrays["sample_ids"][()]]) if "sample_ids" in keys else None
    if len(names) not in (X.shape[1], int(np.prod(X.shape[1:]))):
        raise StagewiseError(f"{path}: 'feature_names' has {len(names)} names but {x_key!r} has shape {X.shape}")
    if ids is not None and len(ids) != X.shape[0]:
        raise StagewiseError(f"{path}: 'sample_ids' has {len(ids)} entries but {x_key!r} has {X.shape[0]} samples")
    if len(y.shape) == 1:
        return Source(path, names, X.shape[1:], X.shape[0], array_blocks(X), as_labels(y[()]), sample_ids=ids)
    check_numeric(y.dtype, path, f"per-position labels {label!r}")
    given = [_text(n) for n in arrays["label_names"][()]] if "label_names" in keys else None
    top = max(int(np.max(y[s : s + 4096])) for s in range(0, y.shape[0], 4096))
    return Source(
        path,
        names,
        X.shape[1:],
        X.shape[0],
        array_blocks(X, y),
        None,
        label_names=given or [str(i) for i in range(top + 1)],
        label_shape=y.shape[1:],
        sample_ids=ids,
    )


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@contextmanager
def _npz(path: str, spec: dict, scratch: Path) -> Iterator[Source]:
    try:
        with np.load(path, allow_pickle=False) as arrays:
            loaded = {k: arrays[k] for k in arrays.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
        raise StagewiseError(f"{path}: cannot read as .npz: {error}") from None
    yield _arrays(path, spec, loaded, list(loaded))


def _open_h5(path: str) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise StagewiseError(f"{path}: cannot read as HDF5: {error}") from None


@contextmanager
def _h5(path: str, spec: dict, scratch: Path) -> Iterator[Source]:
    with _open_h5(path) as h5:
        yield _arrays(path, spec, h5, list(h5.keys()))


@contextmanager
def _h5ad(path: str, spec: dict, scratch: Path) -> Iterator[Source]:
    from anndata.io import read_elem, sparse_dataset

    with _open_h5(path) as h5:
        no_table_keys(spec, path, allowed=("features", "covariates", "layer"))
        if "obs" not in h5 or ("X" not in h5 and not spec.get("layer")):
            raise StagewiseError(f"{path}: not an AnnData file (no obs / X); write it with anndata's write_h5ad")
        obs, var_names = read_elem(h5["obs"]), [str(v) for v in read_elem(h5["var"]).index]
        layer = spec.get("layer")
        if layer and layer not in h5.get("layers", {}):
            raise StagewiseError(
                f"{path}: no layer {layer!r} (data.*.layer); layers are {sorted(h5.get('layers', {}))}"
            )
        element = h5["layers"][layer] if layer else h5["X"]
        X = sparse_dataset(element) if isinstance(element, h5py.Group) else element
        where = f"layer {layer!r}" if layer else "X"
        check_numeric(X.dtype, path, where)
        label, columns = spec.get("label") or "label", list(obs.columns)
        for key in [label, *spec.get("covariates", [])]:
            if key not in columns:
                raise StagewiseError(
                    f"{path}: obs has no column {key!r} (data.*.label / covariates); obs columns are {columns[:20]}"
                )
        names, selected = var_names, None
        if spec.get("features"):
            position = {n: i for i, n in enumerate(var_names)}
            missing = [f for f in spec["features"] if f not in position]
            if missing:
                raise StagewiseError(f"{path}: features {missing[:5]} (data.*.features) are not in var_names")
            names, selected = list(spec["features"]), np.array([position[f] for f in spec["features"]])
        yield Source(
            path,
            names,
            (len(names),),
            X.shape[0],
            array_blocks(X, columns=selected),
            as_labels(obs[label]),
            covariates={c: as_labels(obs[c]) for c in spec.get("covariates", [])},
            sample_ids=np.asarray(obs.index, dtype=str),
            sparse=isinstance(element, h5py.Group),
        )
