"""DAG build time: `snakemake -n` on a config of 10 experiments × 5 stages, against 1 × 1 and an empty Snakefile.

    python benchmarks/bench_dag.py [--repeats 5]

Both configs pretrain on scikit-learn's digits, so no input file is needed; each dry run is a
fresh `python -m snakemake` process (startup included), as a user types it. The empty Snakefile
(one rule, no config) is Snakemake's own startup: what no workflow can go below. Wall and CPU
seconds (user + system of the child) are reported; CPU time is what a busy machine does not inflate.
"""

from __future__ import annotations

import argparse
import copy
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BASE = {
    "data": {
        "source": {"train": "sklearn:digits", "rows": [0, 1000]},
        "target": {"train": "sklearn:digits", "rows": [1000, 1797]},
    },
    "model": {"architecture": "mlp"},
    "pretrained": {"head": {"module": "head"}},
}


def config(experiments: int, stages: int) -> dict:
    cfg = copy.deepcopy(BASE)
    policies = [
        {"train": ["head"]},
        {"unfreeze_last": 1},
        {"unfreeze_last": 2},
        {"unfreeze_all": True, "optimizer": {"lr": 1e-5}},
        {"unfreeze_all": True, "scheduler": {"name": "CosineAnnealingWarmRestarts", "T_0": 3}},
    ]
    cfg["experiments"] = {
        f"exp{e}": {"stages": [{"name": f"s{s}", "epochs": 2 + e, **policies[s % 5]} for s in range(stages)]}
        for e in range(experiments)
    }
    return cfg


def dry_run(folder: Path) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and finetune+evaluate jobs of one `snakemake -n` in `folder`."""
    snakefile = folder / "Snakefile" if (folder / "Snakefile").exists() else REPO / "Snakefile"
    config = ["--configfile", str(folder / "config.yaml")] if (folder / "config.yaml").exists() else []
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(snakefile),
            "--directory",
            str(folder),
            *config,
            "-n",
            "--quiet",
            "rules",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    jobs = sum(
        int(line.split()[1]) for line in done.stdout.splitlines() if line.split()[:1] in (["finetune"], ["evaluate"])
    )
    return wall, cpu, jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    names = ("empty Snakefile", "1×1", "10×5")
    walls: dict[str, list[float]] = {name: [] for name in names}
    cpus: dict[str, list[float]] = {name: [] for name in names}
    jobs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            (Path(tmp) / name).mkdir()
        (Path(tmp) / "empty Snakefile" / "Snakefile").write_text('rule all:\n    shell: "true"\n')
        for name, shape in (("1×1", (1, 1)), ("10×5", (10, 5))):
            (Path(tmp) / name / "config.yaml").write_text(yaml.safe_dump(config(*shape)))
        for _ in range(args.repeats):
            for name in names:
                wall, cpu, jobs[name] = dry_run(Path(tmp) / name)
                walls[name].append(wall)
                cpus[name].append(cpu)
    print("| snakemake -n on | wall s (median) | CPU s (median) | finetune + evaluate jobs |")
    print("|---|---|---|---|")
    for name in names:
        print(f"| {name} | {statistics.median(walls[name]):.2f} | {statistics.median(cpus[name]):.2f} | {jobs[name]} |")


if __name__ == "__main__":
    main()
