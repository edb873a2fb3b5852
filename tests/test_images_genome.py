"""prepare_data on the files users hold: image folders / tables of image paths, and genome FASTA + GFF3/GTF."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import split_files
import yaml
from conftest import snakemake, write_config
from PIL import Image
from stagewise import config
from stagewise.errors import StagewiseError
from stagewise.io import genome, images, readers
from stagewise.steps import prepare

SPLITS = ("train", "val", "test")


def _spec(dataset: dict, task: str = "classification") -> dict:
    cfg = {
        "data": {"target": dataset},
        "model": {"task": task},
        "pretrained": {"checkpoint": "x.pt"},
        "experiments": {"e": {"stages": [{"name": "s"}]}},
    }
    return config.validate(cfg)["data"]["target"]


def _prepare(tmp_path: Path, dataset: dict, task: str = "classification", split: bool = True) -> dict:
    out = tmp_path / "out"
    if not split:  # what `stagewise check` reads: one file, every selected row
        out.mkdir(parents=True, exist_ok=True)
        summary = prepare.read(_spec(dataset, task), "target", task, str(out / "all.h5"))
        return {"train": split_files.read(out / "all.h5"), "summary": summary}
    outputs = {k: str(out / f"{k}.h5") for k in SPLITS} | {"summary": str(out / "summary.json")}
    prepare.run({}, outputs, {"dataset": _spec(dataset, task), "name": "target", "task": task})
    return {k: split_files.read(outputs[k]) for k in SPLITS} | {
        "summary": json.loads(Path(outputs["summary"]).read_text())
    }


def _all(prepared: dict) -> dict[str, tuple[np.ndarray, str]]:
    """Every prepared sample by id: (features, label name or per-position labels)."""
    rows = {}
    for k in SPLITS:
        if k not in prepared:
            continue
        split = prepared[k]
        for i, sample in enumerate(split.sample_ids):
            label = split.label_names[split.y[i]] if split.y.ndim == 1 else split.y[i]
            rows[sample] = (split.X[i], label)
    return rows


# ---------------------------------------------------------------- images


def _grey(path: Path, value: int, size=(6, 4), mode="L") -> np.ndarray:
    """An image whose pixel (x, y) is value + x + 10 y (width x height = size); returns its pixels."""
    pixels = value + np.arange(size[0])[None, :] + 10 * np.arange(size[1])[:, None]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint16 if mode == "I;16" else np.uint8)).save(path)
    return pixels


def _folder(root: Path, per_class: int = 6, size=(6, 4)) -> dict[str, np.ndarray]:
    made = {}
    for c, name in enumerate(["cat", "dog"]):
        for i in range(per_class):
            made[f"{name}/{i}.png"] = _grey(root / name / f"{i}.png", 20 * c + i, size)
    return made


def test_image_folder_classes_pixels_and_ids(tmp_path):
    made = _folder(tmp_path / "imgs")
    (tmp_path / "imgs" / "cat" / "notes.txt").write_text("not an image")  # other files are ignored
    prepared = _prepare(tmp_path, {"train": str(tmp_path / "imgs"), "test_fraction": 0.25, "val_fraction": 0.25})
    rows = _all(prepared)
    assert sorted(rows) == sorted(made) and prepared["train"].X.shape[1:] == (1, 4, 6)
    for sample, (X, label) in rows.items():
        assert label == sample.split("/")[0]
        assert np.allclose(X[0], made[sample] / 255.0)  # scale auto: 8 bits -> [0, 1]
    summary = prepared["summary"]
    assert summary["feature_shape"] == [1, 4, 6] and summary["preprocessing"]["images"]["channels"] == "grey"
    assert summary["label_names"] == ["cat", "dog"]


def test_image_table_relative_paths_resize_crop_rgb_and_given_normalisation(tmp_path):
    made = _folder(tmp_path / "stim", per_class=4, size=(8, 8))
    lines = ["path,label"] + [f"stim/{k},{'a' if k.startswith('cat') else 'b'}" for k in sorted(made)]
    (tmp_path / "table.csv").write_text("\n".join(lines) + "\n")
    options = {
        "resize": [6, 6],
        "crop": [4, 2],
        "channels": "rgb",
        "resample": "nearest",
        "normalize": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
    }
    prepared = _prepare(
        tmp_path, {"train": str(tmp_path / "table.csv"), "images": options, "test_fraction": 0.25, "val_fraction": 0.34}
    )
    rows = _all(prepared)
    assert prepared["train"].X.shape[1:] == (3, 4, 2)
    for sample, (X, label) in rows.items():
        image = Image.fromarray(made[sample.removeprefix("stim/")].astype(np.uint8)).resize(
            (6, 6), Image.Resampling.NEAREST
        )
        expected = (np.asarray(image, np.float32)[1:5, 2:4] / 255.0 - 0.5) / 0.25  # the centre 4 x 2
        assert all(np.allclose(X[c], expected, atol=1e-5) for c in range(3))  # grey replicated to RGB
        assert label == ("a" if "cat/" in sample else "b")


def test_normalize_auto_uses_the_training_split_and_is_recorded(tmp_path):
    _folder(tmp_path / "imgs", per_class=10)
    prepared = _prepare(tmp_path, {"train": str(tmp_path / "imgs"), "images": {"normalize": "auto"}})
    train = prepared["train"].X
    assert abs(train.mean()) < 1e-5 and abs(train.std() - 1) < 1e-4
    recorded = prepared["summary"]["preprocessing"]["images"]
    assert recorded["normalize"] == "auto" and len(recorded["mean"]) == len(recorded["std"]) == 1
    assert not np.isclose(prepared["test"].X.mean(), 0, atol=1e-6)  # val and test use the training statistics


def test_jpeg_tiff_colour_and_16_bit(tmp_path):
    root = tmp_path / "imgs"
    for i in range(3):
        (root / "colour").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((4, 6, 3), [200, 100, 50], np.uint8)).save(root / "colour" / f"{i}.jpg", quality=100)
        _grey(root / "deep" / f"{i}.tiff", 1000 * (i + 1), mode="I;16")
    prepared = _prepare(
        tmp_path,
        {"train": str(root), "images": {"channels": "rgb"}, "test_fraction": 0.34, "val_fraction": 0.5},
        split=False,
    )
    rows = _all(prepared)
    X, _ = rows["colour/0.jpg"]
    assert X.shape == (3, 4, 6) and np.allclose(X[:, 0, 0], [200 / 255, 100 / 255, 50 / 255], atol=0.02)
    with pytest.raises(StagewiseError, match=r"b/0\.png: a colour image \(RGB\) among grey ones"):
        _prepare(tmp_path, {"train": str(_mixed(tmp_path))}, split=False)
    grey = _prepare(tmp_path, {"train": str(root), "images": {"channels": "grey"}}, split=False)
    deep, _ = _all(grey)["deep/1.tiff"]
    assert np.isclose(deep[0, 0, 0], 2000 / 65535)  # 16 bits scale to [0, 1]


def _mixed(tmp_path: Path) -> Path:
    root = tmp_path / "mixed"
    for i in range(2):
        _grey(root / "a" / f"{i}.png", i)
        (root / "b").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(root / "b" / f"{i}.png")
    return root


def test_image_errors_name_the_file(tmp_path):
    root = tmp_path / "imgs"
    _folder(root)
    good = (root / "dog" / "1.png").read_bytes()
    (root / "dog" / "1.png").write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(StagewiseError, match=r"dog/1\.png: cannot read the image"):
        _prepare(tmp_path, {"train": str(root)}, split=False)
    (root / "dog" / "1.png").write_bytes(b"not a png at all")
    with pytest.raises(StagewiseError, match=r"dog/1\.png: cannot read the image"):
        _prepare(tmp_path, {"train": str(root)}, split=False)
    _grey(root / "dog" / "1.png", 0, size=(7, 4))
    with pytest.raises(StagewiseError, match=r"dog/1\.png: image is 7x4 .* need data.\*.images.resize"):
        _prepare(tmp_path, {"train": str(root)}, split=False)
    assert _prepare(tmp_path, {"train": str(root), "images": {"resize": [4, 6]}}, split=False)["train"].X.shape[1:] == (
        1,
        4,
        6,
    )
    (root / "bird").mkdir()
    with pytest.raises(StagewiseError, match=r"bird: class folder with no images"):
        _prepare(tmp_path, {"train": str(root)}, split=False)
    (tmp_path / "t.csv").write_text("path,label\nimgs/cat/0.png,a\nimgs/cat/missing.png,b\n")
    with pytest.raises(StagewiseError, match=r"t\.csv: row 3: image 'imgs/cat/missing.png' not found"):
        _prepare(tmp_path, {"train": str(tmp_path / "t.csv"), "images": {}})
    (tmp_path / "flat").mkdir()
    _grey(tmp_path / "flat" / "0.png", 0)
    with pytest.raises(StagewiseError, match="no class folders"):
        _prepare(tmp_path, {"train": str(tmp_path / "flat")})
    np.savez(tmp_path / "x.npz", X=np.zeros((4, 2)), y=np.arange(4))
    with pytest.raises(StagewiseError, match=r"data\.\*\.images applies to"):
        _prepare(tmp_path, {"train": str(tmp_path / "x.npz"), "images": {}})


def test_images_stream_in_blocks_in_order(tmp_path, monkeypatch):
    made = _folder(tmp_path / "imgs", per_class=7)
    monkeypatch.setattr("stagewise.io.source.BLOCK_BYTES", 4 * 24 * 3)  # three images a block
    with readers.open_source(str(tmp_path / "imgs"), _spec({"train": str(tmp_path / "imgs")}), tmp_path) as source:
        blocks = list(source.blocks())
        assert [len(b.X) for b in blocks] == [3, 3, 3, 3, 2] and source.n == len(made)
        ids = source.ids(0, source.n)
    stacked = np.concatenate([b.X for b in blocks])
    assert all(np.allclose(stacked[i, 0], made[sample] / 255.0) for i, sample in enumerate(ids))


def test_schema_defaults_match_the_readers():
    schema = yaml.safe_load((Path(config.__file__).parents[1] / "schemas" / "config.schema.yaml").read_text())
    dataset = schema["definitions"]["dataset"]["properties"]
    for section, defaults in (("images", images.DEFAULTS), ("genome", genome.DEFAULTS)):
        declared = {k: v.get("default") for k, v in dataset[section]["properties"].items()}
        assert declared == defaults, section


# ---------------------------------------------------------------- genomes

# chr1 (150 bases): gene1 on +, one transcript with three exons (1-based 3-30, 61-80, 121-140), and a
# shorter isoform skipping the middle exon; chr2 (120 bases): gene2 on -, exons 21-40 and 71-100;
# chr3 (90 bases): a lncRNA gene only.
GFF3 = """##gff-version 3
chr1\tt\tgene\t3\t140\t.\t+\t.\tID=gene1;gene_biotype=protein_coding
chr1\tt\tmRNA\t3\t140\t.\t+\t.\tID=tx1;Parent=gene1
chr1\tt\texon\t3\t30\t.\t+\t.\tParent=tx1
chr1\tt\texon\t61\t80\t.\t+\t.\tParent=tx1
chr1\tt\texon\t121\t140\t.\t+\t.\tParent=tx1
chr1\tt\tmRNA\t3\t130\t.\t+\t.\tID=tx1b;Parent=gene1
chr1\tt\texon\t3\t30\t.\t+\t.\tParent=tx1b
chr1\tt\texon\t101\t130\t.\t+\t.\tParent=tx1b
chr2\tt\tgene\t21\t100\t.\t-\t.\tID=gene2;gene_biotype=protein_coding
chr2\tt\tmRNA\t21\t100\t.\t-\t.\tID=tx2;Parent=gene2
chr2\tt\texon\t71\t100\t.\t-\t.\tParent=tx2
chr2\tt\texon\t21\t40\t.\t-\t.\tParent=tx2
chr3\tt\tgene\t11\t60\t.\t+\t.\tID=gene3;gene_biotype=lncRNA
chr3\tt\tlnc_RNA\t11\t60\t.\t+\t.\tID=tx3;Parent=gene3
chr3\tt\texon\t11\t20\t.\t+\t.\tParent=tx3
chr3\tt\texon\t41\t60\t.\t+\t.\tParent=tx3
"""
GTF = """chr1\tt\texon\t3\t30\t.\t+\t.\tgene_id "gene1"; transcript_id "tx1"; gene_biotype "protein_coding";
chr1\tt\texon\t61\t80\t.\t+\t.\tgene_id "gene1"; transcript_id "tx1"; gene_biotype "protein_coding";
chr1\tt\texon\t121\t140\t.\t+\t.\tgene_id "gene1"; transcript_id "tx1"; gene_biotype "protein_coding";
chr2\tt\texon\t71\t100\t.\t-\t.\tgene_id "gene2"; transcript_id "tx2"; gene_biotype "protein_coding";
chr2\tt\texon\t21\t40\t.\t-\t.\tgene_id "gene2"; transcript_id "tx2"; gene_biotype "protein_coding";
chr3\tt\texon\t11\t20\t.\t+\t.\tgene_id "gene3"; transcript_id "tx3"; gene_biotype "lncRNA";
chr3\tt\texon\t41\t60\t.\t+\t.\tgene_id "gene3"; transcript_id "tx3"; gene_biotype "lncRNA";
"""
LENGTHS = {"chr1": 150, "chr2": 120, "chr3": 90}
WINDOW, CONTEXT = 50, 20


def _sequences() -> dict[str, str]:
    rng = np.random.default_rng(5)
    seqs = {name: "".join(rng.choice(list("ACGT"), n)) for name, n in LENGTHS.items()}
    seqs["chr1"] = seqs["chr1"][:50] + "NNNN" + seqs["chr1"][54:]  # N -> all-zero one-hot rows
    return seqs


def _write_genome(
    folder: Path, annotation: str = GFF3, name: str = "ann.gff3", bgzip: bool = False
) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(
        f">{k} description\n" + "\n".join(v[i : i + 32] for i in range(0, len(v), 32)) + "\n"
        for k, v in _sequences().items()
    )
    fasta = folder / ("genome.fa.gz" if bgzip else "genome.fa")
    if bgzip:
        from Bio import bgzf

        with bgzf.BgzfWriter(str(fasta), "wb") as handle:
            handle.write(text.encode())
    else:
        fasta.write_text(text)
    (folder / name).write_text(annotation)
    return fasta, folder / name


def _genome(tmp_path: Path, split: bool = False, **options) -> dict:
    fasta, annotation = Path(options.pop("fasta", "")), options.pop("annotation", None)
    if not annotation:
        fasta, annotation = _write_genome(tmp_path / "g")
    settings = {"annotation": str(annotation), "window": WINDOW, "context": CONTEXT} | options
    return _prepare(tmp_path, {"train": str(fasta), "genome": settings}, "sequence_labeling", split=split)


def _one_hot(seq: str) -> np.ndarray:
    table = {"A": 0, "C": 1, "G": 2, "T": 3}
    out = np.zeros((len(seq), 4), np.float32)
    for i, base in enumerate(seq):
        if base in table:
            out[i, table[base]] = 1
    return out


def _expected_window(contig: str, lo: int, strand: str) -> np.ndarray:
    """The one-hot input of the window whose labelled part starts at 0-based `lo`, padded with zeros off the contig."""
    seq, half = _sequences()[contig], CONTEXT // 2
    padded = "-" * half + seq + "-" * (WINDOW + half)
    part = _one_hot(padded[lo : lo + WINDOW + CONTEXT])  # `lo - half` in the padded coordinates is `lo`
    return part[::-1, ::-1] if strand == "-" else part


def test_splice_sites_by_hand_both_strands_padding_and_sequence(tmp_path):
    rows = _all(_genome(tmp_path))  # the longest transcript per gene, protein-coding only
    starts = {"gene1": [2, 52, 102], "gene2": [50, 0]}  # gene1 from its 5' end at 3 (1-based); gene2 from 100 down
    expected_ids = [f"gene1:chr1:{s + 1}-{s + WINDOW}:+" for s in starts["gene1"]] + [
        f"gene2:chr2:{s + 1}-{s + WINDOW}:-" for s in starts["gene2"]
    ]
    assert sorted(rows) == sorted(expected_ids)  # chr3's lncRNA gene is not protein-coding
    labels = {sample: np.flatnonzero(y).tolist() for sample, (_, y) in rows.items()}
    kinds = {sample: y[y > 0].tolist() for sample, (_, y) in rows.items()}
    # + strand: donor = the last base of an exon (0-based 29, 79), acceptor = the first (60, 120)
    assert labels["gene1:chr1:3-52:+"] == [27] and kinds["gene1:chr1:3-52:+"] == [2]
    assert labels["gene1:chr1:53-102:+"] == [8, 27] and kinds["gene1:chr1:53-102:+"] == [1, 2]
    assert labels["gene1:chr1:103-152:+"] == [18] and kinds["gene1:chr1:103-152:+"] == [1]
    # - strand, in transcript orientation (position j is 0-based base hi - 1 - j): donor at 70, acceptor at 39
    assert labels["gene2:chr2:51-100:-"] == [99 - 70] and kinds["gene2:chr2:51-100:-"] == [2]
    assert labels["gene2:chr2:1-50:-"] == [49 - 39] and kinds["gene2:chr2:1-50:-"] == [1]
    for sample, (X, _) in rows.items():
        _, contig, span, strand = sample.split(":")
        assert np.array_equal(X, _expected_window(contig, int(span.split("-")[0]) - 1, strand)), sample
    first, last = rows["gene1:chr1:3-52:+"][0], rows["gene1:chr1:103-152:+"][0]
    assert not first[:8].any() and first[8].any()  # 8 bases before the contig's start are padding
    assert not last[-12:].any() and last[-13].any()  # 12 bases after its end (150) are padding
    assert not first[10 + 48 : 10 + 52].any()  # the NNNN at 51-54 (1-based): zeros


def test_isoforms_biotypes_gtf_and_bgzip(tmp_path):
    every = _all(_genome(tmp_path / "all", transcripts="all", biotype="all"))
    assert "gene3:chr3:11-60:+" in every  # lncRNA included
    # tx1b's acceptor at 101 (0-based 100) joins tx1's sites in the window starting at 53 (1-based)
    assert np.flatnonzero(every["gene1:chr1:53-102:+"][1]).tolist() == [8, 27, 48]
    assert np.flatnonzero(every["gene1:chr1:103-152:+"][1]).tolist() == [18]
    assert np.flatnonzero(every["gene1:chr1:3-52:+"][1]).tolist() == [27]  # both isoforms share the donor at 30
    gff = _all(_genome(tmp_path / "gff", transcripts="all"))
    fasta, annotation = _write_genome(tmp_path / "gtf", GTF, "ann.gtf", bgzip=True)
    gtf = _all(_genome(tmp_path / "gtf", fasta=fasta, annotation=annotation))
    longest = _all(_genome(tmp_path / "longest"))
    assert sorted(gtf) == sorted(longest)
    for sample in longest:
        assert np.array_equal(gtf[sample][0], longest[sample][0]) and np.array_equal(gtf[sample][1], longest[sample][1])
    assert set(gff) == set(longest)


def test_chromosome_split_and_validation_fraction(tmp_path):
    prepared = _genome(tmp_path, split=True, test_chromosomes=["chr2"])
    assert all(":chr2:" in s for s in prepared["test"].sample_ids) and len(prepared["test"].sample_ids) == 2
    assert all(":chr1:" in s for k in ("train", "val") for s in prepared[k].sample_ids)
    assert len(prepared["train"].sample_ids) + len(prepared["val"].sample_ids) == 3
    assert prepared["summary"]["label_names"] == ["none", "acceptor", "donor"]
    assert prepared["summary"]["preprocessing"]["genome"]["windows"] == {"train_pool": 3, "test": 2}
    with pytest.raises(StagewiseError, match=r"no selected genes on the test chromosomes \['chr3'\]"):
        _genome(tmp_path, split=True, test_chromosomes=["chr3"])
    with pytest.raises(StagewiseError, match=r"no selected genes on the train chromosomes \['chr3'\]"):
        _genome(tmp_path, split=True, test_chromosomes=["chr1"], train_chromosomes=["chr3"])
    with pytest.raises(StagewiseError, match=r"test_chromosomes: \['chrX'\] not in the FASTA"):
        _genome(tmp_path, split=True, test_chromosomes=["chrX"])


def test_genome_errors_name_file_and_line(tmp_path):
    fasta, annotation = _write_genome(tmp_path / "g")
    lines = GFF3.splitlines()
    annotation.write_text("\n".join([*lines[:4], "chr1\tt\texon\t61\t80\t.\t+\tParent=tx1", *lines[5:]]) + "\n")
    with pytest.raises(StagewiseError, match=r"ann\.gff3:5: expected 9 tab-separated columns"):
        _genome(tmp_path, fasta=fasta, annotation=annotation)
    annotation.write_text(GFF3.replace("\t61\t80\t", "\tsixty\t80\t"))
    with pytest.raises(StagewiseError, match=r"ann\.gff3:5: start and end .* must be integers"):
        _genome(tmp_path, fasta=fasta, annotation=annotation)
    annotation.write_text(
        GFF3 + "chr9\tt\tgene\t1\t50\t.\t+\t.\tID=g9;gene_biotype=protein_coding\n"
        "chr9\tt\texon\t1\t50\t.\t+\t.\tParent=g9\n"
    )
    with pytest.raises(StagewiseError, match=r"contig\(s\) \['chr9'\] are not in the FASTA"):
        _genome(tmp_path, fasta=fasta, annotation=annotation)
    annotation.write_text(GFF3.replace("gene_biotype=protein_coding", "note=x").replace("mRNA", "transcript"))
    with pytest.raises(StagewiseError, match="has no biotype"):
        _genome(tmp_path, fasta=fasta, annotation=annotation)
    (tmp_path / "plain.fa.gz").write_bytes(__import__("gzip").compress(fasta.read_bytes()))
    with pytest.raises(StagewiseError, match="bgzip"):
        _genome(tmp_path, fasta=tmp_path / "plain.fa.gz", annotation=tmp_path / "g" / "ann.gff3")


# ---------------------------------------------------------------- end to end

E2E_TRAINING = {
    "pretrained": {"checkpoint": None, "training": {"epochs": 1}},
    "training": {"epochs": 1, "batch_size": 8},
    "evaluation": {"bootstrap": 0, "baselines": []},
}


@pytest.mark.e2e
def test_image_table_with_auto_normalisation_end_to_end(tmp_path):
    """A DNNBrain-style stimulus table (paths and labels) and a class folder, through the whole workflow."""
    made = _folder(tmp_path / "data" / "stim", per_class=8, size=(8, 8))
    (tmp_path / "data" / "stim.tsv").write_text(
        "stimID\tcategory\n" + "".join(f"stim/{k}\t{k.split('/')[0]}\n" for k in sorted(made))
    )
    images_cfg = {"resize": 8, "normalize": "auto"}
    cfg = {
        "data": {
            "source": {"train": "data/stim", "images": images_cfg, "val_fraction": 0.25},
            "target": {
                "train": "data/stim.tsv",
                "label": "category",
                "images": images_cfg | {"column": "stimID"},
                "val_fraction": 0.25,
                "test_fraction": 0.25,
            },
        },
        "model": {"architecture": "cnn2d", "params": {"image_shape": [1, 8, 8], "channels": [4], "hidden": 8}},
        "experiments": {"all": {"stages": [{"name": "all"}]}},
    } | E2E_TRAINING
    write_config(tmp_path, cfg)
    snakemake(tmp_path)
    summary = json.loads((tmp_path / "results/data/target/summary.json").read_text())
    assert summary["feature_shape"] == [1, 8, 8] and "mean" in summary["preprocessing"]["images"]
    assert (tmp_path / "results/all/stages/1_all/test_metrics.json").is_file()


@pytest.mark.e2e
def test_genome_gtf_end_to_end(tmp_path):
    """A FASTA with a GTF annotation, split by chromosome, through the whole workflow."""
    from stagewise.synthetic.genome import write_genome

    data = tmp_path / "data"
    data.mkdir()
    write_genome(data / "a.fa", data / "a.gff3", "source", {"chr1": 6, "chr2": 3})
    _gff3_to_gtf(data / "a.gff3", data / "a.gtf")
    cfg = {
        "data": {
            name: {
                "train": "data/a.fa",
                "genome": {"annotation": "data/a.gtf", "window": 40, "context": 20, "test_chromosomes": ["chr2"]},
                "val_fraction": 0.2,
            }
            for name in ("source", "target")
        },
        "model": {
            "architecture": "cnn1d",
            "task": "sequence_labeling",
            "params": {"channels": 4, "kernels": [11], "dilations": [1]},
        },
        "experiments": {"all": {"stages": [{"name": "all"}]}},
    } | E2E_TRAINING
    write_config(tmp_path, cfg)
    snakemake(tmp_path)
    with __import__("h5py").File(tmp_path / "results/data/target/test.h5") as h5:
        assert h5["X"].shape[1:] == (60, 4) and h5["y"].shape[1:] == (40,)
        assert all(":chr2:" in s.decode() for s in h5["sample_ids"][()])


def _gff3_to_gtf(gff3: Path, gtf: Path) -> None:
    """The exons of a GFF3 (gene > transcript > exon, gene_biotype on genes) as GTF lines."""
    rows = [line.split("\t") for line in gff3.read_text().splitlines() if not line.startswith("#")]
    attributes = [dict(kv.split("=") for kv in row[8].split(";")) for row in rows]
    biotype = {a["ID"]: a["gene_biotype"] for a in attributes if "gene_biotype" in a}
    gene = {a["ID"]: a["Parent"] for row, a in zip(rows, attributes) if row[2] in ("mRNA", "lnc_RNA")}
    gtf.write_text(
        "".join(
            "\t".join(row[:8]) + f'\tgene_id "{gene[a["Parent"]]}"; transcript_id "{a["Parent"]}"; '
            f'gene_type "{biotype[gene[a["Parent"]]]}";\n'
            for row, a in zip(rows, attributes)
            if row[2] == "exon"
        )
    )


def test_raw_size_counts_image_folders_and_annotations(tmp_path):
    from stagewise import resources

    _folder(tmp_path / "imgs", per_class=2)
    fasta, annotation = _write_genome(tmp_path / "g")
    images_bytes = sum(f.stat().st_size for f in (tmp_path / "imgs").rglob("*.png"))
    data = {
        "a": {"train": str(tmp_path / "imgs")},
        "b": {"train": str(fasta), "genome": {"annotation": str(annotation)}},
    }
    assert resources.raw_bytes(data) == images_bytes + fasta.stat().st_size + annotation.stat().st_size


def test_an_existing_fai_index_is_used_and_none_is_left_behind(tmp_path):
    import pyfaidx

    fasta, annotation = _write_genome(tmp_path / "g")
    without = _all(_genome(tmp_path / "a", fasta=fasta, annotation=annotation))
    assert not (tmp_path / "g" / "genome.fa.fai").exists()  # built in the results folder, then removed
    assert not list((tmp_path / "a" / "out").glob(".*.fai"))
    pyfaidx.Faidx(str(fasta)).close()  # samtools faidx's index, next to the FASTA
    with_index = _all(_genome(tmp_path / "b", fasta=fasta, annotation=annotation))
    assert (tmp_path / "g" / "genome.fa.fai").exists() and sorted(with_index) == sorted(without)
    assert all(np.array_equal(with_index[k][0], without[k][0]) for k in without)
