"""Molecular descriptors with a plentiful and a costly property: a Parquet table and a checkpoint trained elsewhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..files import atomic_path


def molecules(n: int, seed: int = 0, batch_seed: int = 1) -> dict[str, np.ndarray]:
    """32 descriptors per molecule; two properties read out of one hidden 16-dimensional representation:
    `energy_dft` (the plentiful one) and `energy_ccsd` = the same plus a smaller correction, with noise."""
    programs = np.random.default_rng([seed, 10])
    w = programs.normal(0.0, 2.0 / np.sqrt(32), (32, 16))
    dft, ccsd = programs.normal(0.0, 1.0, 16), programs.normal(0.0, 1.0, 16)
    rng = np.random.default_rng([seed, 11, batch_seed])
    x = rng.normal(0.0, 1.0, (n, 32)).astype(np.float32)
    h = np.tanh(x @ w)
    noise = rng.normal(0.0, 0.05, (2, n))
    return {
        "X": x,
        "energy_dft": (h @ dft + noise[0]).astype(np.float32),
        "energy_ccsd": (h @ dft + 0.3 * h @ ccsd + noise[1]).astype(np.float32),
        "names": [f"descriptor_{i:02d}" for i in range(32)],
    }


def write_molecules(path: Path, n: int, seed: int = 0, batch_seed: int = 1) -> None:
    """A Parquet table: descriptor columns and the costly property `energy_ccsd`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = molecules(n, seed, batch_seed)
    columns = {name: data["X"][:, i] for i, name in enumerate(data["names"])}
    with atomic_path(path) as tmp:
        pq.write_table(pa.table(columns | {"energy_ccsd": data["energy_ccsd"]}), tmp)


def write_foreign_checkpoint(path: Path, names_path: Path, n: int = 4000, epochs: int = 30, seed: int = 0) -> None:
    """A model trained elsewhere on `energy_dft`, saved as a Lightning checkpoint (keys `model.backbone.*`,
    `model.head.*`, as physicsml's modules are named) with its descriptor names in a text file."""
    import torch

    from ..models.mlp import MLP

    data = molecules(n, seed, batch_seed=0)
    torch.manual_seed(seed)
    model = MLP(32, 1, hidden=[64, 64], dropout=0.0, batch_norm=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.from_numpy(data["X"]), torch.from_numpy(data["energy_dft"])[:, None]
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=generator).split(64):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(x[idx]), y[idx]).backward()
            optimizer.step()
    state = {"model." + key.replace("encoder.", "backbone.", 1): value for key, value in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save(
            {
                "state_dict": state,
                "hyper_parameters": {"hidden": [64, 64], "target": "energy_dft"},
                "pytorch-lightning_version": "2.4.0",
                "epoch": epochs,
            },
            tmp,
        )
    with atomic_path(names_path) as tmp:
        Path(tmp).write_text("\n".join(data["names"]) + "\n")
