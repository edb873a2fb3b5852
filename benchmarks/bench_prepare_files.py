"""prepare_data on the files users hold, side by side with the obvious loop, in one run.

    python benchmarks/bench_prepare_files.py [--image-gb 1.0] [--genome-mb 100] [--folder /tmp/stagewise-bench-files]

Images: a folder of 10 class folders of 128x128 RGB PNGs (noise, so PNG cannot compress it), about
`--image-gb` GB, prepared by `prepare_data` (streamed in blocks) vs the obvious Pillow loop
(`np.stack` of every decoded image, then one h5py write). Genome: a random FASTA of `--genome-mb`
Mb with a GFF3 of multi-exon genes on both strands, prepared as SpliceAI-80nt windows of 5000
positions vs the obvious pure-Python loop (Biopython's `SeqIO.to_dict`, the whole genome in RAM as
OpenSpliceAI's create-data holds it, a dict lookup per base). Every measurement is a fresh Python
process; peak RSS is its ru_maxrss. Writes under --folder and deletes it afterwards.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SIDE = 128
WINDOW, CONTEXT = 5000, 80


def write_images(root: Path, gb: float) -> int:
    from PIL import Image

    rng = np.random.default_rng(0)
    sample = Image.fromarray(rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8))
    sample.save(root / "probe.png")
    per_image = (root / "probe.png").stat().st_size
    (root / "probe.png").unlink()
    count = int(gb * 1e9 / per_image)
    for i in range(count):
        folder = root / "images" / f"class_{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)).save(
            folder / f"{i:06d}.png", compress_level=1
        )
    return count


def write_genome(root: Path, mb: float) -> int:
    """A random genome of `mb` Mb on 4 contigs; genes every ~4 kb, 3-6 exons, both strands."""
    rng = np.random.default_rng(1)
    lines, genes = ["##gff-version 3"], 0
    with open(root / "genome.fa", "wb") as fasta:
        for c in range(4):
            length = int(mb * 1e6 / 4)
            seq = np.frombuffer(b"ACGT", np.uint8)[rng.integers(0, 4, length)]
            fasta.write(f">chr{c + 1}\n".encode())
            full = length // 60 * 60
            fasta.write(
                np.concatenate([seq[:full].reshape(-1, 60), np.full((full // 60, 1), 10, np.uint8)], axis=1).tobytes()
            )
            fasta.write(seq[full:].tobytes() + b"\n")
            position = 1000
            while position + 3000 < length:
                exons = int(rng.integers(3, 7))
                sizes, introns = rng.integers(60, 200, exons), rng.integers(80, 400, exons - 1)
                end = position + int(sizes.sum() + introns.sum()) - 1
                strand = "+-"[genes % 2]
                gid = f"g{genes}"
                lines.append(
                    f"chr{c + 1}\tb\tgene\t{position}\t{end}\t.\t{strand}\t.\tID={gid};gene_biotype=protein_coding"
                )
                lines.append(f"chr{c + 1}\tb\tmRNA\t{position}\t{end}\t.\t{strand}\t.\tID={gid}.1;Parent={gid}")
                start = position
                for k in range(exons):
                    lines.append(
                        f"chr{c + 1}\tb\texon\t{start}\t{start + sizes[k] - 1}\t.\t{strand}\t.\tParent={gid}.1"
                    )
                    start += int(sizes[k]) + (int(introns[k]) if k < exons - 1 else 0)
                genes += 1
                position = end + int(rng.integers(2000, 3000))
    (root / "genome.gff3").write_text("\n".join(lines) + "\n")
    return genes


STAGEWISE = """
import json, sys
from stagewise import config
from stagewise.steps import prepare
root, kind = sys.argv[1], sys.argv[2]
dataset = {"images": {"train": f"{root}/images"},
           "genome": {"train": f"{root}/genome.fa",
                      "genome": {"annotation": f"{root}/genome.gff3", "window": %d, "context": %d,
                                 "test_chromosomes": ["chr4"]}}}[kind]
spec = config.validate({"data": {"target": dataset}, "model": {}, "pretrained": {"checkpoint": "x.pt"},
                        "experiments": {"e": {"stages": [{"name": "s"}]}}})["data"]["target"]
out = f"{root}/prepared_{kind}"
import time
t = time.perf_counter()
prepare.run({}, {k: f"{out}/{k}.h5" for k in ("train", "val", "test")} | {"summary": f"{out}/summary.json"},
            {"dataset": spec, "name": "target", "task": "sequence_labeling" if kind == "genome" else "classification"})
run_s = time.perf_counter() - t
samples = sum(json.load(open(f"{out}/summary.json"))["samples"].values())
print(json.dumps({"samples": samples, "run_s": round(run_s, 1)}))
""" % (WINDOW, CONTEXT)

OBVIOUS_IMAGES = """
import sys, json
from pathlib import Path
import h5py, numpy as np
from PIL import Image
root = Path(sys.argv[1])
files = sorted(root.glob("images/*/*.png"))
X = np.stack([np.asarray(Image.open(f).convert("RGB"), np.float32).transpose(2, 0, 1) / 255.0 for f in files])
y = np.array([f.parent.name for f in files])
with h5py.File(root / "obvious_images.h5", "w") as h5:
    h5["X"] = X
    h5["y"] = y.astype("S")
print(json.dumps({"samples": len(X)}))
"""

OBVIOUS_GENOME = """
import sys, json
from collections import defaultdict
import numpy as np
from Bio import SeqIO
root = sys.argv[1]
W, C = %d, %d
genome = {k: str(v.seq).upper() for k, v in SeqIO.to_dict(SeqIO.parse(f"{root}/genome.fa", "fasta")).items()}
exons, where = defaultdict(list), {}
for line in open(f"{root}/genome.gff3"):
    if line.startswith("#"):
        continue
    f = line.rstrip("\\n").split("\\t")
    attrs = dict(kv.split("=") for kv in f[8].split(";"))
    if f[2] == "exon":
        exons[attrs["Parent"]].append((int(f[3]) - 1, int(f[4])))
        where[attrs["Parent"]] = (f[0], f[6])
ONE = {"A": [1, 0, 0, 0], "C": [0, 1, 0, 0], "G": [0, 0, 1, 0], "T": [0, 0, 0, 1]}
COMP = str.maketrans("ACGT", "TGCA")
X, Y = [], []
for tx, ex in exons.items():
    contig, strand = where[tx]
    ex.sort()
    lo, hi = ex[0][0], ex[-1][1]
    labels = {}
    for (s1, e1), (s2, e2) in zip(ex, ex[1:]):
        labels[e1 - 1], labels[s2] = (2, 1) if strand == "+" else (1, 2)
    seq = genome[contig]
    for start in range(lo, hi, W):
        if strand == "-":
            start = hi - W - (start - lo)
        a, b = start - C // 2, start + W + C // 2
        window = "N" * max(0, -a) + seq[max(a, 0):b] + "N" * max(0, b - len(seq))
        y = [labels.get(p, 0) for p in range(start, start + W)]
        if strand == "-":
            window, y = window.translate(COMP)[::-1], y[::-1]
        X.append(np.array([ONE.get(base, [0, 0, 0, 0]) for base in window], np.float32))
        Y.append(y)
X, Y = np.stack(X), np.array(Y, np.int64)
np.save(f"{root}/obvious_genome_X.npy", X)
print(json.dumps({"samples": len(X)}))
""" % (WINDOW, CONTEXT)


def measure(code: str, *args: str) -> dict:
    """Run `code` in a fresh process: its wall seconds (imports excluded) and peak RSS in MB."""
    wrapper = (
        "import resource, runpy, sys, time, json\n"
        "sys.argv = sys.argv[1:]\n"
        "t = time.perf_counter()\n"
        "exec(compile(open(sys.argv[0]).read(), 'bench', 'exec'), {'__name__': '__main__'})\n"
        "print('BENCH', json.dumps({'seconds': time.perf_counter() - t, "
        "'rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))\n"
    )
    script = Path(args[0]) / f".bench_{abs(hash(code))}.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, "-c", wrapper, str(script), *args], capture_output=True, text=True)
    script.unlink()
    if done.returncode:
        raise SystemExit(f"measurement failed:\n{done.stderr[-3000:]}")
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1].removeprefix("BENCH "))
    return result | {"output": lines[-2]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image-gb", type=float, default=1.0)
    parser.add_argument("--genome-mb", type=float, default=100.0)
    parser.add_argument("--folder", default="/tmp/stagewise-bench-files")
    args = parser.parse_args()
    root = Path(args.folder)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    try:
        rows = []
        if args.image_gb > 0:
            t = time.perf_counter()
            count = write_images(root, args.image_gb)
            size = sum(f.stat().st_size for f in (root / "images").rglob("*.png")) / 1e6
            print(f"wrote {count} images, {size:.0f} MB, in {time.perf_counter() - t:.0f} s", file=sys.stderr)
            for name, code in (("prepare_data", STAGEWISE), ("obvious Pillow loop", OBVIOUS_IMAGES)):
                result = measure(code, str(root), "images")
                rows.append((f"images {size:.0f} MB ({count} PNG 128x128 RGB)", name, size / result["seconds"], result))
                print(rows[-1], file=sys.stderr)
        if args.genome_mb > 0:
            t = time.perf_counter()
            genes = write_genome(root, args.genome_mb)
            size = (root / "genome.fa").stat().st_size / 1e6
            print(f"wrote {args.genome_mb} Mb, {genes} genes, in {time.perf_counter() - t:.0f} s", file=sys.stderr)
            for name, code in (("prepare_data", STAGEWISE), ("obvious pure-Python loop", OBVIOUS_GENOME)):
                result = measure(code, str(root), "genome")
                rows.append(
                    (
                        f"genome {args.genome_mb:.0f} Mb ({genes} genes)",
                        name,
                        args.genome_mb / result["seconds"],
                        result,
                    )
                )
                print(rows[-1], file=sys.stderr)
        print("| input | reader | wall s | throughput | peak RSS MB | samples |\n|---|---|---|---|---|---|")
        for what, name, speed, result in rows:
            unit = "MB/s" if what.startswith("images") else "Mb/s"
            print(
                f"| {what} | {name} | {result['seconds']:.1f} | {speed:.1f} {unit} | {result['rss_mb']:.0f} | "
                f"{result['output']} |"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
