"""Deterministic example data for the recipes in config/examples/ (written by `stagewise init`).

Each generator writes ordinary files that the normal readers read: a genome FASTA with its GFF3
annotation, PNG images in class folders, OpenSpliceAI-style HDF5 one-hot sequences, AnnData `.h5ad` counts, a Parquet
table, and a checkpoint made elsewhere. The
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


def _motif(rng: np.random.Generator, motif: str, core: list[int]) -> np.ndarray:
    """A splice motif's codes, 15 % of its bases (all but the invariant `core` ones) replaced at random."""
    bases = np.array([BASES.index(b) for b in motif])
    noisy = rng.random(len(motif)) < 0.15
    noisy[core] = False
    bases[noisy] = rng.integers(0, 4, int(noisy.sum()))
    return bases


def genome(species: str, genes_per_contig: dict[str, int], seed: int = 0) -> tuple[dict[str, str], list[str]]:
    """Contig sequences and GFF3 lines of protein-coding genes on both strands, with `species`' splice motifs.

    Genes have 3 to 6 exons; every fourth gene has a second, shorter transcript that skips an exon; every
    contig also carries one lncRNA gene (excluded by `genome.biotype: protein_coding`). Donor motifs
    start their GT at the intron's first base, acceptor motifs end their AG at its last base."""
    rng = np.random.default_rng([seed, ["source", "target"].index(species), 7])
    gc = {"source": 0.40, "target": 0.50}[species]
    p = [(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2]
    (donor, d_at), (acceptor, a_at) = SPLICE_MOTIFS[species]["donor"], SPLICE_MOTIFS[species]["acceptor"]
    sequences, gff = {}, ["##gff-version 3"]
    number = 0
    for contig, count in genes_per_contig.items():
        codes: list[np.ndarray] = [rng.choice(4, int(rng.integers(30, 400)), p=p)]
        position = len(codes[0])
        for g in range(count + 1):
            coding = g < count
            number += 1
            exons = [int(rng.integers(60, 160)) for _ in range(int(rng.integers(3, 7)) if coding else 2)]
            introns = [int(rng.integers(60, 250)) for _ in exons[1:]]
            parts = [rng.choice(4, exons[0], p=p)]
            for intron, exon in zip(introns, exons[1:]):
                body = rng.choice(4, intron, p=p)
                body[: len(donor) - d_at] = _motif(rng, donor, [d_at, d_at + 1])[d_at:]  # GT... starts the intron
                body[-(a_at + 1) :] = _motif(rng, acceptor, [a_at - 1, a_at])[: a_at + 1]  # ...AG ends it
                parts[-1][-d_at:] = _motif(rng, donor, [d_at, d_at + 1])[:d_at]  # the exon end before GT
                parts += [body, rng.choice(4, exon, p=p)]
            gene = np.concatenate(parts)
            strand = "+" if rng.random() < 0.5 else "-"
            if strand == "-":
                gene = 3 - gene[::-1]
            length, start = len(gene), position + 1
            gene_id, kind = f"{contig}_g{number}", "protein_coding" if coding else "lncRNA"
            gff.append(
                f"{contig}\tstagewise\tgene\t{start}\t{start + length - 1}\t.\t{strand}\t.\t"
                f"ID={gene_id};gene_biotype={kind}"
            )
            bounds, offset = [], 0  # exon (start, end) along the transcript, then on the contig
            for exon, intron in zip(exons, [*introns, 0]):
                bounds.append((offset, offset + exon))
                offset += exon + intron
            if strand == "-":
                bounds = [(length - e, length - s) for s, e in bounds]
            isoforms = [bounds] + ([bounds[:1] + bounds[2:]] if coding and number % 4 == 0 else [])
            for t, exon_bounds in enumerate(isoforms, 1):
                tid = f"{gene_id}.t{t}"
                lo, hi = min(s for s, _ in exon_bounds), max(e for _, e in exon_bounds)
                gff.append(
                    f"{contig}\tstagewise\t{'mRNA' if coding else 'lnc_RNA'}\t{start + lo}\t{start + hi - 1}\t.\t"
                    f"{strand}\t.\tID={tid};Parent={gene_id}"
                )
                gff += [
                    f"{contig}\tstagewise\texon\t{start + s}\t{start + e - 1}\t.\t{strand}\t.\tParent={tid}"
                    for s, e in sorted(exon_bounds)
                ]
            spacer = rng.choice(4, int(rng.integers(200, 600)), p=p)
            codes += [gene, spacer]
            position += length + len(spacer)
        sequences[contig] = "".join(BASES[c] for c in np.concatenate(codes))
    return sequences, gff


def write_genome(fasta: Path, gff3: Path, species: str, genes_per_contig: dict[str, int], seed: int = 0) -> None:
    """A FASTA (60 bases a line) and its GFF3 annotation, from `genome`."""
    sequences, gff = genome(species, genes_per_contig, seed)
    with atomic_path(fasta) as tmp:
        Path(tmp).write_text(
            "".join(
                f">{name}\n" + "\n".join(seq[i : i + 60] for i in range(0, len(seq), 60)) + "\n"
                for name, seq in sequences.items()
            )
        )
    with atomic_path(gff3) as tmp:
        Path(tmp).write_text("\n".join(gff) + "\n")


def write_digit_images(folder: Path, rows: range, label_of, size: int = 32) -> None:
    """scikit-learn's 8x8 digits as `size` x `size` 8-bit grey PNGs (bicubic upscaling), one folder per label."""
    from PIL import Image
    from sklearn import datasets

    bunch = datasets.load_digits()
    for i in rows:
        target = folder / str(label_of(int(bunch.target[i])))
        target.mkdir(parents=True, exist_ok=True)
        pixels = Image.fromarray(np.round(bunch.images[i] * 255 / 16).astype(np.uint8), mode="L")
        pixels.resize((size, size), Image.Resampling.BICUBIC).save(target / f"digit_{i:04d}.png", optimize=False)


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

    from .models.mlp import MLP

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


def _physicsml_files(folder: Path) -> None:
    write_foreign_checkpoint(folder / "dft_model.ckpt", folder / "descriptors.txt")
    write_molecules(folder / "molecules_ccsd.parquet", 300)


def _splice_files(folder: Path) -> None:
    write_genome(folder / "species_a.fa", folder / "species_a.gff3", "source", {f"chr{i}": 100 for i in range(1, 5)})
    write_genome(
        folder / "species_b.fa", folder / "species_b.gff3", "target", {"chr1": 6, "chr2": 20, "chr3": 20}, seed=1
    )


SHAPES = {
    0: "loops",
    6: "loops",
    8: "loops",
    9: "loops",
    1: "straight",
    4: "straight",
    7: "straight",
    2: "curves",
    3: "curves",
    5: "curves",
}


def _dnnbrain_files(folder: Path) -> None:
    write_digit_images(folder / "digits", range(1000), lambda digit: digit)
    write_digit_images(folder / "shapes", range(1000, 1797), SHAPES.__getitem__)


def _preffect_files(folder: Path) -> None:
    write_counts(folder / "reference.h5ad", 2000, ["lab_a", "lab_b"], batch_seed=1)
    write_counts(folder / "new_samples.h5ad", 400, ["lab_a", "lab_b"], batch_seed=2)


def _scarches_files(folder: Path, reference: int = 3000, query: int = 800, genes: int = 200) -> None:
    """The scarches example's atlas and query (benchmarks/bench_scarches.py --large: 20,000, 5,000 and 2,000 genes;
    marker genes and library size grow with the genes, so a cell type stands out as much as in the 200)."""
    scale = dict(markers=12 * genes // 200, library=1500.0 * genes / 200)
    write_counts(folder / "reference.h5ad", reference, ["ref_1", "ref_2", "ref_3"], batch_seed=1, genes=genes, **scale)
    write_counts(folder / "query.h5ad", query, ["query_1", "query_2"], batch_seed=2, genes=genes, **scale)


EXAMPLE_DATA = {
    "openspliceai": _splice_files,
    "dnnbrain": _dnnbrain_files,
    "preffect": _preffect_files,
    "scarches": _scarches_files,
    "physicsml": _physicsml_files,
}


def write_example_data(example: str, folder: str | Path) -> list[Path]:
    """Write the files example `example` reads into `folder/data` (none for examples on shipped data)."""
    if example not in EXAMPLE_DATA:
        return []
    target = Path(folder) / "data"
    target.mkdir(parents=True, exist_ok=True)
    EXAMPLE_DATA[example](target)
    return sorted(target.iterdir())
