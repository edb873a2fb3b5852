"""Single-cell expression: negative-binomial counts of cell types and batches, as an AnnData `.h5ad` file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..files import atomic_path


def expression_counts(
    n: int,
    batches: list[str],
    genes: int = 200,
    cell_types: int = 5,
    seed: int = 0,
    batch_seed: int | None = None,
    markers: int = 12,
    library: float = 1500.0,
) -> dict:
    """Negative-binomial counts of `cell_types` expression programs, each batch with its own gene-wise effect.

    The programs depend on `seed` only, so files generated with the same seed share cell types;
    each batch's effect is its own mix (by its name) of three technical factors shared by all
    batches, so a batch means the same thing in every file and a new batch lies in the same span.
    """
    programs = np.random.default_rng([seed, 0])
    base = programs.normal(0.0, 1.0, genes)
    n_markers, markers = markers, np.zeros((cell_types, genes))
    for t in range(cell_types):
        markers[t, programs.choice(genes, n_markers, replace=False)] = programs.uniform(0.4, 1.0, n_markers)
    theta = programs.lognormal(np.log(5.0), 0.3, genes)
    rng = np.random.default_rng([seed, 1 if batch_seed is None else batch_seed])
    types = rng.integers(0, cell_types, n)
    batch = rng.integers(0, len(batches), n)
    technical = programs.normal(0.0, 1.0, (3, genes))  # batch effects mix three technical factors
    effects = np.stack(
        [np.random.default_rng([seed, 2, *map(ord, b)]).normal(0.0, 0.7, 3) @ technical for b in batches]
    )
    logits = base + markers[types] + effects[batch]
    share = np.exp(logits - logits.max(1, keepdims=True))
    share /= share.sum(1, keepdims=True)
    library = rng.lognormal(np.log(library), 0.3, n)[:, None]
    mean = share * library
    counts = rng.poisson(rng.gamma(theta, mean / theta)).astype(np.float32)
    return {
        "X": counts,
        "cell_type": np.array([f"type_{t}" for t in types]),
        "batch": np.array(batches)[batch],
        "genes": [f"gene_{g:03d}" for g in range(genes)],
    }


def write_counts(
    path: Path, n: int, batches: list[str], seed: int = 0, batch_seed: int | None = None, genes: int = 200, **options
) -> None:
    """An AnnData .h5ad: sparse counts in X, obs columns cell_type and batch, genes as var_names."""
    import anndata
    import pandas as pd
    import scipy.sparse as sp

    data = expression_counts(n, batches, genes=genes, seed=seed, batch_seed=batch_seed, **options)
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical(data["cell_type"]), "batch": pd.Categorical(data["batch"])},
        index=[f"{path.stem}_{i}" for i in range(n)],
    )
    adata = anndata.AnnData(sp.csr_matrix(data["X"]), obs=obs, var=pd.DataFrame(index=data["genes"]))
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)
