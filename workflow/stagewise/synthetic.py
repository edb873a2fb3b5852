"""Deterministic example data for the recipes in config/examples/ (written by `stagewise init`).

Each generator writes ordinary files that the normal readers read: OpenSpliceAI-style HDF5
one-hot sequences, AnnData `.h5ad` counts, a Parquet table, and a checkpoint made elsewhere. The
same name and seed always give the same bytes of data.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from .files import atomic_path

BASES = "ACGT"
SPLICE_CLASSES = ["none", "acceptor", "donor"]
# (motif, offset of the labelled base): SpliceAI-like consensus sites around the invariant GT / AG
SPLICE_MOTIFS = {
    "source": {"donor": ("CAGGTAAGT", 3), "acceptor": ("TTTCTTTTTTCAGG", 12)},
    "target": {"donor": ("CAGGTGAGT", 3), "acceptor": ("TTTCTTTTTTGTCAGG", 14)},  # other consensus, tract shifted by 2
}


def _one_hot(codes: np.ndarray) -> np.ndarray:
    return np.eye(4, dtype=np.uint8)[codes]


def splice_sites(n: int, species: str, core: int = 100, flank: int = 40, seed: int = 0) -> dict[str, np.ndarray]:
    """Sequences (n, core + 2 flank, 4) with one donor and one acceptor site each, labels (n, core)."""
    rng = np.random.default_rng([seed, ["source", "target"].index(species)])
    gc = {"source": 0.40, "target": 0.50}[species]
    codes = rng.choice(4, size=(n, core + 2 * flank), p=[(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2])
    labels = np.zeros((n, core), dtype=np.int64)
    for i in range(n):
        taken = np.zeros(core + 2 * flank, dtype=bool)
        for kind in ("acceptor", "donor"):
            motif, offset = SPLICE_MOTIFS[species][kind]
            while True:
                site = int(rng.integers(0, core))
                start = flank + site - offset
                stop = start + len(motif)
                if start >= 0 and stop <= len(taken) and not taken[start:stop].any():
                    break
            bases = np.array([BASES.index(b) for b in motif])
            noisy = rng.random(len(motif)) < 0.15
            core_pair = np.arange(len(motif)) - offset
            keep = (core_pair >= -1) & (core_pair <= 0) if kind == "acceptor" else (core_pair >= 0) & (core_pair <= 1)
            bases[noisy & ~keep] = rng.integers(0, 4, int((noisy & ~keep).sum()))
            codes[i, start:stop] = bases
            taken[start:stop] = True
            labels[i, site] = SPLICE_CLASSES.index(kind)
    return {"X": _one_hot(codes), "y": labels}


def write_splice(path: Path, n: int, species: str, seed: int = 0) -> None:
    """An OpenSpliceAI-style HDF5 file: X (one-hot), y (per-position labels), label_names."""
    data = splice_sites(n, species, seed=seed)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("X", data=data["X"], compression="gzip")
        h5.create_dataset("y", data=data["y"], compression="gzip")
        h5.create_dataset("label_names", data=SPLICE_CLASSES, dtype=h5py.string_dtype("utf-8"))


def expression_counts(n: int, batches: list[str], genes: int = 200, cell_types: int = 5, seed: int = 0,
                      batch_seed: int | None = None) -> dict:
    """Negative-binomial counts of `cell_types` expression programs, each batch with its own gene-wise effect.

    The programs depend on `seed` only, so files generated with the same seed share cell types;
    each batch's effect depends on its name, so a batch means the same thing in every file.
    """
    programs = np.random.default_rng([seed, 0])
    base = programs.normal(0.0, 1.0, genes)
    markers = np.zeros((cell_types, genes))
    for t in range(cell_types):
        markers[t, programs.choice(genes, 20, replace=False)] = programs.uniform(1.5, 3.0, 20)
    theta = programs.lognormal(np.log(5.0), 0.3, genes)
    rng = np.random.default_rng([seed, 1 if batch_seed is None else batch_seed])
    types = rng.integers(0, cell_types, n)
    batch = rng.integers(0, len(batches), n)
    effects = np.stack([np.random.default_rng([seed, 2, *map(ord, b)]).normal(0.0, 0.6, genes) for b in batches])
    logits = base + markers[types] + effects[batch]
    share = np.exp(logits - logits.max(1, keepdims=True))
    share /= share.sum(1, keepdims=True)
    library = rng.lognormal(np.log(1500.0), 0.3, n)[:, None]
    mean = share * library
    counts = rng.poisson(rng.gamma(theta, mean / theta)).astype(np.float32)
    return {"X": counts, "cell_type": np.array([f"type_{t}" for t in types]), "batch": np.array(batches)[batch],
            "genes": [f"gene_{g:03d}" for g in range(genes)]}


def write_counts(path: Path, n: int, batches: list[str], seed: int = 0, batch_seed: int | None = None) -> None:
    """An AnnData .h5ad: sparse counts in X, obs columns cell_type and batch, genes as var_names."""
    import anndata
    import pandas as pd
    import scipy.sparse as sp

    data = expression_counts(n, batches, seed=seed, batch_seed=batch_seed)
    obs = pd.DataFrame({"cell_type": pd.Categorical(data["cell_type"]), "batch": pd.Categorical(data["batch"])},
                       index=[f"{path.stem}_{i}" for i in range(n)])
    adata = anndata.AnnData(sp.csr_matrix(data["X"]), obs=obs, var=pd.DataFrame(index=data["genes"]))
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)


def _splice_files(folder: Path) -> None:
    write_splice(folder / "species_a.h5", 3000, "source", seed=0)
    write_splice(folder / "species_b_train.h5", 50, "target", seed=1)
    write_splice(folder / "species_b_test.h5", 600, "target", seed=2)


def _preffect_files(folder: Path) -> None:
    write_counts(folder / "reference.h5ad", 2000, ["lab_a", "lab_b"], batch_seed=1)
    write_counts(folder / "new_samples.h5ad", 400, ["lab_a", "lab_b"], batch_seed=2)


def _scarches_files(folder: Path) -> None:
    write_counts(folder / "reference.h5ad", 3000, ["ref_1", "ref_2", "ref_3"], batch_seed=1)
    write_counts(folder / "query.h5ad", 800, ["query_1", "query_2"], batch_seed=2)


EXAMPLE_DATA = {"openspliceai": _splice_files, "preffect": _preffect_files, "scarches": _scarches_files}


def write_example_data(example: str, folder: str | Path) -> list[Path]:
    """Write the files example `example` reads into `folder/data` (none for examples on shipped data)."""
    if example not in EXAMPLE_DATA:
        return []
    target = Path(folder) / "data"
    target.mkdir(parents=True, exist_ok=True)
    EXAMPLE_DATA[example](target)
    return sorted(target.iterdir())
