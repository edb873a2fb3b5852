"""Synthetic DNA with SpliceAI-like splice sites: one-hot windows labelled per position, as OpenSpliceAI writes them."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ..files import atomic_path

BASES = "ACGT"
SPLICE_CLASSES = ["none", "acceptor", "donor"]
# (motif, offset of the labelled base): SpliceAI-like consensus sites around the invariant GT / AG
SPLICE_MOTIFS = {
    "source": {"donor": ("CAGGTAAGT", 3), "acceptor": ("TTTCTTTTTTCAGG", 12)},
    "target": {"donor": ("CAGGTGAGT", 3), "acceptor": ("TTTCTTTTTTGTCAGG", 14)},  # other consensus, tract shifted by 2
}


def base_probabilities(species: str) -> list[float]:
    """The probabilities of A, C, G and T in `species`' background sequence (GC 40 % or 50 %)."""
    gc = {"source": 0.40, "target": 0.50}[species]
    return [(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2]


def noisy_motif(rng: np.random.Generator, motif: str, core: list[int]) -> np.ndarray:
    """A splice motif's codes, 15 % of its bases (all but the invariant `core` ones) replaced at random."""
    bases = np.array([BASES.index(b) for b in motif])
    noisy = rng.random(len(motif)) < 0.15
    noisy[core] = False
    bases[noisy] = rng.integers(0, 4, int(noisy.sum()))
    return bases


def _one_hot(codes: np.ndarray) -> np.ndarray:
    return np.eye(4, dtype=np.uint8)[codes]


def splice_sites(n: int, species: str, core: int = 100, flank: int = 40, seed: int = 0) -> dict[str, np.ndarray]:
    """Sequences (n, core + 2 flank, 4) with one donor and one acceptor site each, labels (n, core)."""
    rng = np.random.default_rng([seed, ["source", "target"].index(species)])
    codes = rng.choice(4, size=(n, core + 2 * flank), p=base_probabilities(species))
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
            # the AG ending an acceptor's intron, the GT starting a donor's, stay as they are
            invariant = [offset - 1, offset] if kind == "acceptor" else [offset, offset + 1]
            codes[i, start:stop] = noisy_motif(rng, motif, invariant)
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
