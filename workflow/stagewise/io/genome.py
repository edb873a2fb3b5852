"""A genome (FASTA + GFF3/GTF annotation) as a `Source` of splice-site windows, as SpliceAI/OpenSpliceAI cut them.

Each selected gene is tiled, in its transcript's orientation, into windows of `window` labelled
positions with `context / 2` bases of genomic sequence on each side (SpliceAI's 80/400/2000/10000
nt of context); reverse-strand windows are reverse-complemented and their labels reversed. Labels
per position: 0 none, 1 acceptor (the first base of an exon after an intron), 2 donor (the last
base of an exon before an intron), from every selected transcript on the window's strand. Bases
outside the chromosome, and N or any other letter, are all-zero rows of the one-hot (N, L, 4).

The FASTA is read with pyfaidx (random access through its `.fai` index, built in the scratch
folder when the file has none; bgzip through Biopython's BGZF reader), one window at a time, so
memory stays flat in the genome's size. The annotation is read by `io.annotation`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import StagewiseError
from ..files import sha256_file, sha256_json
from .annotation import Transcript, read_annotation, select
from .source import Block, Source, block_rows, no_table_keys

FASTA = (".fa", ".fasta", ".fna", ".fas")
SITES = ["none", "acceptor", "donor"]
DEFAULTS = {
    "annotation": None,
    "transcripts": "longest",
    "biotype": "protein_coding",
    "window": 5000,
    "context": 80,
    "test_chromosomes": [],
    "train_chromosomes": None,
}
_CODES = np.full(256, 4, np.int64)
for _i, _b in enumerate("ACGT"):
    _CODES[ord(_b)] = _CODES[ord(_b.lower())] = _i
_ONE_HOT = np.eye(5, 4, dtype=np.float32)  # row 4 (N and anything else): zeros


def is_fasta(path: str) -> bool:
    """A FASTA by its suffix, optionally compressed (.gz, .bgz)."""
    name = path.lower()
    for packed in (".gz", ".bgz"):
        name = name.removesuffix(packed)
    return Path(name).suffix in FASTA


def settings(spec: dict) -> dict:
    """`data.*.genome` with its defaults filled in."""
    return DEFAULTS | (spec.get("genome") or {})


@dataclass
class _Windows:
    """Every window: contig index, strand (+1/-1), first labelled base (0-based), gene index."""

    contig: np.ndarray
    strand: np.ndarray
    start: np.ndarray
    gene: np.ndarray


def _windows(genes: dict[str, list[Transcript]], contigs: list[str], window: int) -> _Windows:
    """SpliceAI's tiling: each gene's span from its 5' end, in steps of `window` (the last window runs past the
    gene)."""
    position = {c: i for i, c in enumerate(contigs)}
    parts = []
    for index, (_gene, chosen) in enumerate(genes.items()):
        lo, hi = min(t.extent()[0] for t in chosen), max(t.extent()[1] for t in chosen)
        count = -(-(hi - lo) // window)
        offsets = np.arange(count, dtype=np.int64) * window
        starts = lo + offsets if chosen[0].strand == "+" else hi - window - offsets
        parts.append(
            (
                np.full(count, position[chosen[0].seqid]),
                np.full(count, 1 if chosen[0].strand == "+" else -1),
                starts,
                np.full(count, index),
            )
        )
    if not parts:
        return _Windows(*(np.zeros(0, np.int64) for _ in range(4)))
    return _Windows(*(np.concatenate([p[k] for p in parts]) for k in range(4)))


def _open_fasta(path: str, scratch: Path):
    import pyfaidx

    stem = Path(scratch) / f".{Path(path).name}"
    fai = path + ".fai" if Path(path + ".fai").is_file() else str(stem) + ".fai"
    gzi = path + ".gzi" if Path(path + ".gzi").is_file() else str(stem) + ".gzi"
    Path(scratch).mkdir(parents=True, exist_ok=True)
    try:
        return pyfaidx.Fasta(
            path, indexname=fai, gzi_indexname=gzi, as_raw=True, sequence_always_upper=True, read_ahead=1 << 16
        )
    except (pyfaidx.FastaIndexingError, pyfaidx.UnsupportedCompressionFormat) as error:
        hint = " (a compressed FASTA must be bgzip-compressed: bgzip -d, then bgzip)" if "gz" in path.lower() else ""
        raise StagewiseError(f"{path}: cannot index the FASTA: {error}{hint}") from None
    except (ValueError, OSError, ImportError) as error:
        raise StagewiseError(f"{path}: cannot read the FASTA: {error}") from None


@contextmanager
def open_genome(path: str, spec: dict, scratch: Path) -> Iterator[Source]:
    """A FASTA in `data.*.train` with `data.*.genome.annotation`: windows, one-hot (N, window + context, 4), labels
    (N, window)."""
    options = settings(spec)
    no_table_keys(spec, path)
    window, context = _check_options(path, options)
    annotation = options["annotation"]
    fasta = _open_fasta(path, scratch)
    try:
        lengths = {name: len(fasta[name]) for name in fasta.keys()}  # noqa: SIM118 (iterating a Fasta yields records)
        contigs = list(lengths)
        if not contigs:
            raise StagewiseError(f"{path}: the FASTA holds no sequences")
        genes = _genes(annotation, options, lengths, path)
        split = _chromosome_split(options, contigs, genes, path)
        genes = {g: ts for g, ts in genes.items() if split[ts[0].seqid] >= 0}
        windows = _windows(genes, contigs, window)
        sites = _site_arrays(genes, annotation)
        assignment = np.array([split[contigs[c]] for c in windows.contig], np.int8)
        names = list(genes)
        ids = np.array(
            [
                f"{names[g]}:{contigs[c]}:{s + 1}-{s + window}:{'+' if d > 0 else '-'}"
                for g, c, s, d in zip(windows.gene, windows.contig, windows.start, windows.strand)
            ]
        )
        source = Source(
            path,
            [f"f{i}" for i in range((window + context) * 4)],
            (window + context, 4),
            len(ids),
            _window_blocks(fasta, lengths, contigs, windows, sites, window, context),
            None,
            label_names=list(SITES),
            label_shape=(window,),
            sample_ids=ids,
            split=assignment,
        )
        source.sha256 = sha256_json({"fasta": sha256_file(path), "annotation": sha256_file(annotation)})
        counts = {SITES[k]: int(sum(int((v[1] == k).sum()) for v in sites.values())) for k in (1, 2)}
        source.info = {
            "genome": {
                **options,
                "n_genes": len(genes),
                "n_transcripts": sum(map(len, genes.values())),
                "sites": counts,
                "contigs": len(contigs),
                "windows": {"train_pool": int((assignment == 0).sum()), "test": int((assignment == 2).sum())},
            }
        }
        yield source
    finally:
        fasta.close()
        for suffix in (".fai", ".gzi"):
            (Path(scratch) / f".{Path(path).name}{suffix}").unlink(missing_ok=True)


def _check_options(path: str, options: dict) -> tuple[int, int]:
    """`data.*.genome` fits a FASTA in `path`: an annotation file that exists, a window and an even context."""
    annotation = options["annotation"]
    if not is_fasta(path):
        raise StagewiseError(
            f"{path}: data.*.genome needs a FASTA in data.*.train ({', '.join(FASTA)}, optionally .gz)"
        )
    if not annotation:
        raise StagewiseError(
            f"{path}: a genome needs its annotation: set data.*.genome.annotation to a GFF3 or GTF file"
        )
    if not Path(annotation).is_file():
        raise StagewiseError(f"{annotation}: annotation file not found (data.*.genome.annotation)")
    window, context = int(options["window"]), int(options["context"])
    if window < 1 or context < 0 or context % 2:
        raise StagewiseError(
            f"data.*.genome: window must be >= 1 and context an even number >= 0 (got {window}, {context})"
        )
    return window, context


def _genes(annotation: str, options: dict, lengths: dict[str, int], path: str) -> dict[str, list[Transcript]]:
    """The selected transcripts by gene, each on a contig of the FASTA `path` and within it."""
    genes = select(read_annotation(annotation), options, annotation)
    absent = sorted({t.seqid for ts in genes.values() for t in ts} - set(lengths))
    if absent:
        raise StagewiseError(
            f"{annotation}: contig(s) {absent[:5]} are not in the FASTA {path} "
            f"(its contigs: {list(lengths)[:10]}); use the annotation of this assembly"
        )
    for gene, chosen in genes.items():
        end = max(t.extent()[1] for t in chosen)
        if end > lengths[chosen[0].seqid]:
            raise StagewiseError(
                f"{annotation}:{chosen[0].line}: gene {gene!r} ends at {end}, past the end of "
                f"{chosen[0].seqid} ({lengths[chosen[0].seqid]} bases in {path})"
            )
    return genes


def _window_blocks(
    fasta, lengths: dict[str, int], contigs: list[str], windows: _Windows, sites: dict, window: int, context: int
) -> Callable[[], Iterator[Block]]:
    """The blocks of one-hot windows (bases read from `fasta` window by window) and their per-position labels."""
    half, step = context // 2, block_rows((window + context, 4))

    def blocks() -> Iterator[Block]:
        for start in range(0, len(windows.start), step):
            stop = min(start + step, len(windows.start))
            X = np.zeros((stop - start, window + context, 4), np.float32)
            y = np.zeros((stop - start, window), np.int64)
            for row, i in enumerate(range(start, stop)):
                contig, strand, lo = contigs[windows.contig[i]], int(windows.strand[i]), int(windows.start[i])
                first, last = max(lo - half, 0), min(lo + window + half, lengths[contig])
                if last > first:
                    bases = np.frombuffer(fasta[contig][first:last].encode("ascii", "replace"), np.uint8)
                    X[row, first - (lo - half) : last - (lo - half)] = _ONE_HOT[_CODES[bases]]
                positions, classes = sites[contig, strand]
                a, b = np.searchsorted(positions, [lo, lo + window])
                y[row, positions[a:b] - lo] = classes[a:b]
                if strand < 0:
                    X[row] = X[row, ::-1, ::-1]  # reverse complement: positions reversed, ACGT -> TGCA
                    y[row] = y[row, ::-1]
            yield Block(start, X, y)

    return blocks


def _site_arrays(genes: dict[str, list[Transcript]], where: str) -> dict:
    """{(contig, strand): (sorted positions, classes)} over every selected transcript; both strands of every contig."""
    found: dict = defaultdict(dict)
    for chosen in genes.values():
        for transcript in chosen:
            for position, kind in transcript.sites(f"{where}:{transcript.line}"):
                found[transcript.seqid, 1 if transcript.strand == "+" else -1][position] = kind
    arrays = defaultdict(lambda: (np.zeros(0, np.int64), np.zeros(0, np.int64)))
    for key, table in found.items():
        positions = np.array(sorted(table), np.int64)
        arrays[key] = (positions, np.array([table[p] for p in positions], np.int64))
    return arrays


def _chromosome_split(options: dict, contigs: list[str], genes: dict, path: str) -> dict[str, int]:
    """Per contig: 0 training pool, 2 test, -1 unused; named chromosomes must exist and hold genes."""
    test, train = list(options["test_chromosomes"] or []), options["train_chromosomes"]
    for key, names in (("test_chromosomes", test), ("train_chromosomes", train or [])):
        unknown = [c for c in names if c not in contigs]
        if unknown:
            raise StagewiseError(
                f"data.*.genome.{key}: {unknown[:5]} not in the FASTA {path} (its contigs: {contigs[:10]})"
            )
    both = sorted(set(test) & set(train or []))
    if both:
        raise StagewiseError(f"data.*.genome: chromosomes {both} are both train_chromosomes and test_chromosomes")
    split = {c: 2 if c in test else 0 if train is None or c in train else -1 for c in contigs}
    with_genes = {ts[0].seqid for ts in genes.values()}
    for key, value, names in (("train", 0, train), ("test", 2, test)):
        chosen = [c for c in contigs if split[c] == value]
        if (value == 0 or test) and not set(chosen) & with_genes:
            raise StagewiseError(
                f"data.*.genome: no selected genes on the {key} chromosomes "
                f"{chosen[:10] if names is None else names}; genes are on {sorted(with_genes)[:10]}: name other "
                f"chromosomes"
            )
    return split
