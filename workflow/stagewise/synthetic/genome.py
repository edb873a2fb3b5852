"""A synthetic genome: contigs of protein-coding genes with SpliceAI-like splice sites, as FASTA and GFF3 files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..files import atomic_path
from .sequences import BASES, SPLICE_MOTIFS, base_probabilities, noisy_motif


def _gene(rng: np.random.Generator, species: str, coding: bool) -> tuple[np.ndarray, list[tuple[int, int]], str]:
    """One gene's codes as they read on the contig, its exons' (start, end) along them, and its strand."""
    p = base_probabilities(species)
    (donor, d_at), (acceptor, a_at) = SPLICE_MOTIFS[species]["donor"], SPLICE_MOTIFS[species]["acceptor"]
    exons = [int(rng.integers(60, 160)) for _ in range(int(rng.integers(3, 7)) if coding else 2)]
    introns = [int(rng.integers(60, 250)) for _ in exons[1:]]
    parts = [rng.choice(4, exons[0], p=p)]
    for intron, exon in zip(introns, exons[1:]):
        body = rng.choice(4, intron, p=p)
        body[: len(donor) - d_at] = noisy_motif(rng, donor, [d_at, d_at + 1])[d_at:]  # GT... starts the intron
        body[-(a_at + 1) :] = noisy_motif(rng, acceptor, [a_at - 1, a_at])[: a_at + 1]  # ...AG ends it
        parts[-1][-d_at:] = noisy_motif(rng, donor, [d_at, d_at + 1])[:d_at]  # the exon end before GT
        parts += [body, rng.choice(4, exon, p=p)]
    gene = np.concatenate(parts)
    strand = "+" if rng.random() < 0.5 else "-"
    if strand == "-":
        gene = 3 - gene[::-1]
    bounds, offset = [], 0  # exon (start, end) along the transcript, then on the contig
    for exon, intron in zip(exons, [*introns, 0]):
        bounds.append((offset, offset + exon))
        offset += exon + intron
    if strand == "-":
        bounds = [(len(gene) - e, len(gene) - s) for s, e in bounds]
    return gene, bounds, strand


def _gene_gff(
    contig: str,
    gene_id: str,
    start: int,
    length: int,
    strand: str,
    transcripts: list[list[tuple[int, int]]],
    coding: bool,
) -> list[str]:
    """The GFF3 lines of a protein-coding (else lncRNA) gene at `start` (1-based) and of its transcripts, each given
    by its exons' (start, end) along the gene."""
    lines = [
        f"{contig}\tstagewise\tgene\t{start}\t{start + length - 1}\t.\t{strand}\t.\t"
        f"ID={gene_id};gene_biotype={'protein_coding' if coding else 'lncRNA'}"
    ]
    for t, exon_bounds in enumerate(transcripts, 1):
        tid = f"{gene_id}.t{t}"
        lo, hi = min(s for s, _ in exon_bounds), max(e for _, e in exon_bounds)
        lines.append(
            f"{contig}\tstagewise\t{'mRNA' if coding else 'lnc_RNA'}\t{start + lo}\t{start + hi - 1}\t.\t"
            f"{strand}\t.\tID={tid};Parent={gene_id}"
        )
        lines += [
            f"{contig}\tstagewise\texon\t{start + s}\t{start + e - 1}\t.\t{strand}\t.\tParent={tid}"
            for s, e in sorted(exon_bounds)
        ]
    return lines


def genome(species: str, genes_per_contig: dict[str, int], seed: int = 0) -> tuple[dict[str, str], list[str]]:
    """Contig sequences and GFF3 lines of protein-coding genes on both strands, with `species`' splice motifs.

    Genes have 3 to 6 exons; every fourth gene has a second, shorter transcript that skips an exon; every
    contig also carries one lncRNA gene (excluded by `genome.biotype: protein_coding`). Donor motifs
    start their GT at the intron's first base, acceptor motifs end their AG at its last base."""
    rng = np.random.default_rng([seed, ["source", "target"].index(species), 7])
    p = base_probabilities(species)
    sequences, gff = {}, ["##gff-version 3"]
    number = 0
    for contig, count in genes_per_contig.items():
        codes: list[np.ndarray] = [rng.choice(4, int(rng.integers(30, 400)), p=p)]
        position = len(codes[0])
        for g in range(count + 1):
            coding = g < count
            number += 1
            gene, bounds, strand = _gene(rng, species, coding)
            transcripts = [bounds] + ([bounds[:1] + bounds[2:]] if coding and number % 4 == 0 else [])
            gff += _gene_gff(contig, f"{contig}_g{number}", position + 1, len(gene), strand, transcripts, coding)
            spacer = rng.choice(4, int(rng.integers(200, 600)), p=p)
            codes += [gene, spacer]
            position += len(gene) + len(spacer)
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
