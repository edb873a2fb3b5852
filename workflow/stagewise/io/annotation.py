"""Gene annotations (GFF3 or GTF, optionally gzip/bgzip): transcripts with their exons, splice sites and biotypes.

The file is read line by line (`read_annotation`) so that a malformed line is reported with its file and line
number; `select` keeps the transcripts a genome's labels are made from.
"""

from __future__ import annotations

import gzip
import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from urllib.parse import unquote

from ..errors import StagewiseError

_NOT_TRANSCRIPTS = {
    "exon",
    "CDS",
    "five_prime_UTR",
    "three_prime_UTR",
    "UTR",
    "start_codon",
    "stop_codon",
    "intron",
    "gene",
    "Selenocysteine",
}
_BIOTYPE_KEYS = ("gene_biotype", "gene_type", "biotype", "transcript_biotype", "transcript_type")


@dataclass
class Transcript:
    """One annotated transcript: 0-based half-open exons on one contig and strand."""

    id: str
    gene: str
    seqid: str
    strand: str
    line: int  # the first line that names it
    exons: list[tuple[int, int]] = field(default_factory=list)
    span: tuple[int, int] | None = None  # the transcript feature's own extent, if the file has one
    kind: str | None = None  # the GFF3 feature type (mRNA, transcript, ...)
    biotype: str | None = None

    def extent(self) -> tuple[int, int]:
        if self.span is not None:
            return self.span
        return min(s for s, _ in self.exons), max(e for _, e in self.exons)

    def sites(self, where: str) -> list[tuple[int, int]]:
        """(position, class) of every acceptor and donor, from the exon ends that border an intron."""
        exons = sorted(self.exons)
        for (_, left_end), (right_start, _) in itertools.pairwise(exons):
            if right_start < left_end:
                raise StagewiseError(
                    f"{where}: transcript {self.id!r} has overlapping exons "
                    f"(ending at {left_end} and starting at {right_start + 1})"
                )
        found = []
        for (_, left_end), (right_start, _) in itertools.pairwise(exons):
            left, right = left_end - 1, right_start  # the last base of the left exon, the first of the right one
            if self.strand == "+":
                found += [(left, 2), (right, 1)]
            else:  # the transcript runs from right to left: its donor is the right exon's first base
                found += [(right, 2), (left, 1)]
        return found


def _open_text(path: str):
    if path.lower().endswith((".gz", ".bgz")):
        return gzip.open(path, "rt")
    return open(path, encoding="utf-8", errors="replace")


def _attributes(text: str, gtf: bool, where: str) -> dict[str, str]:
    values = {}
    for part in text.strip().split(";"):
        part = part.strip()
        if not part:
            continue
        if gtf:
            key, _, value = part.partition(" ")
            value = value.strip().strip('"')
        else:
            key, sep, value = part.partition("=")
            value = unquote(value)
            if not sep:
                raise StagewiseError(f"{where}: attribute {part!r} is not key=value (GFF3 column 9)")
        if not key:
            raise StagewiseError(f"{where}: malformed attribute {part!r} in column 9")
        values.setdefault(key, value)
    return values


def read_annotation(path: str) -> dict[str, Transcript]:
    """Every transcript with exons in a GFF3 or GTF file (GTF by a .gtf suffix), by transcript id."""
    name = path.lower().removesuffix(".gz").removesuffix(".bgz")
    gtf = name.endswith(".gtf")
    transcripts: dict[str, Transcript] = {}
    features: dict[str, tuple] = {}  # GFF3 ID -> (type, parent, start, end, attributes)
    try:
        handle = _open_text(path)
        with handle:
            for number, line in enumerate(handle, 1):
                if line.startswith("##FASTA"):
                    break
                if not line.strip() or line.startswith("#"):
                    continue
                where = f"{path}:{number}"
                columns = line.rstrip("\r\n").split("\t")
                if len(columns) != 9:
                    raise StagewiseError(f"{where}: expected 9 tab-separated columns (GFF3/GTF), found {len(columns)}")
                seqid, _, kind, start, end, _, strand, _, text = columns
                try:
                    start, end = int(start), int(end)
                except ValueError:
                    raise StagewiseError(
                        f"{where}: start and end (columns 4, 5) must be integers, not {columns[3]!r}, {columns[4]!r}"
                    ) from None
                if start < 1 or end < start:
                    raise StagewiseError(f"{where}: start {start} and end {end} are not a 1-based range")
                if strand not in ("+", "-", ".", "?"):
                    raise StagewiseError(f"{where}: strand (column 7) must be +, -, . or ?, not {strand!r}")
                attributes = _attributes(text, gtf, where)
                if gtf:
                    _gtf_line(kind, seqid, strand, start, end, attributes, transcripts, where, number)
                else:
                    _gff3_line(kind, seqid, strand, start, end, attributes, transcripts, features, where, number)
    except (OSError, UnicodeDecodeError, EOFError) as error:
        raise StagewiseError(f"{path}: cannot read the annotation: {error}") from None
    if not gtf:
        _gff3_parents(transcripts, features)
    if not transcripts:
        raise StagewiseError(
            f"{path}: no exons found; the annotation needs exon lines "
            "(GFF3: Parent=<transcript>; GTF: transcript_id and gene_id)"
        )
    return transcripts


def _add_exon(
    transcripts: dict, tid: str, gene: str, seqid: str, strand: str, start: int, end: int, where: str, number: int
) -> Transcript:
    transcript = transcripts.get(tid)
    if transcript is None:
        transcript = transcripts[tid] = Transcript(tid, gene, seqid, strand, number)
    elif (transcript.seqid, transcript.strand) != (seqid, strand):
        raise StagewiseError(
            f"{where}: exon of transcript {tid!r} on {seqid} {strand}, but its other exons are on "
            f"{transcript.seqid} {transcript.strand}"
        )
    if strand not in ("+", "-"):
        raise StagewiseError(
            f"{where}: exon of transcript {tid!r} has no strand ({strand!r}); splice sites need + or -"
        )
    transcript.exons.append((start - 1, end))
    return transcript


def _gtf_line(kind, seqid, strand, start, end, attributes, transcripts, where, number) -> None:
    if kind != "exon":
        return
    missing = [k for k in ("transcript_id", "gene_id") if k not in attributes]
    if missing:
        raise StagewiseError(f"{where}: GTF exon without {' and '.join(missing)}")
    transcript = _add_exon(
        transcripts, attributes["transcript_id"], attributes["gene_id"], seqid, strand, start, end, where, number
    )
    transcript.biotype = transcript.biotype or next((attributes[k] for k in _BIOTYPE_KEYS if k in attributes), None)


def _gff3_line(kind, seqid, strand, start, end, attributes, transcripts, features, where, number) -> None:
    if kind == "exon":
        if "Parent" not in attributes:
            raise StagewiseError(f"{where}: GFF3 exon without a Parent attribute")
        for parent in attributes["Parent"].split(","):
            _add_exon(transcripts, parent, parent, seqid, strand, start, end, where, number)
    elif "ID" in attributes:
        features[attributes["ID"]] = (kind, attributes.get("Parent"), start - 1, end, attributes)


def _gff3_parents(transcripts: dict[str, Transcript], features: dict[str, tuple]) -> None:
    """Each transcript's gene (its Parent; a transcript without one is its own gene) and biotype."""
    for transcript in transcripts.values():
        kind, parent, start, end, attributes = features.get(transcript.id, (None, None, None, None, {}))
        if kind in _NOT_TRANSCRIPTS - {"gene"}:
            continue
        transcript.kind = kind
        if start is not None:
            transcript.span = (start, end)
        gene = parent.split(",")[0] if parent else transcript.id
        transcript.gene = gene
        gene_attributes = features.get(gene, (None, None, None, None, {}))[4]
        transcript.biotype = next((a[k] for a in (gene_attributes, attributes) for k in _BIOTYPE_KEYS if k in a), None)
        if transcript.biotype is None and kind == "mRNA":
            transcript.biotype = "protein_coding"


def select(transcripts: dict[str, Transcript], options: dict, where: str) -> dict[str, list[Transcript]]:
    """The transcripts used for labels, by gene: protein-coding (or all) ones, then all or the longest per gene."""
    genes: dict[str, list[Transcript]] = defaultdict(list)
    for transcript in transcripts.values():
        if options["biotype"] == "protein_coding":
            if transcript.biotype is None:
                raise StagewiseError(
                    f"{where}:{transcript.line}: transcript {transcript.id!r} (gene {transcript.gene!r}) has no "
                    f"biotype "
                    "(gene_biotype, gene_type or biotype attribute, or an mRNA feature); set "
                    "data.*.genome.biotype: all "
                    "to use every transcript"
                )
            if transcript.biotype != "protein_coding":
                continue
        genes[transcript.gene].append(transcript)
    if options["transcripts"] == "longest":  # OpenSpliceAI's `canonical`: the longest genomic span, first on ties
        genes = {g: [max(ts, key=lambda t: t.extent()[1] - t.extent()[0])] for g, ts in genes.items()}
    return dict(genes)
