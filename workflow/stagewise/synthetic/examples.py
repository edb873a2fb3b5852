"""The data files each example of config/examples/ reads, written by `stagewise init --example NAME`."""

from __future__ import annotations

from pathlib import Path

from .expression import write_counts
from .genome import write_genome
from .images import write_digit_images
from .molecules import write_foreign_checkpoint, write_molecules


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
