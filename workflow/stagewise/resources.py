"""What a rule asks a cluster for: threads, memory and run time, from the data's size and the epochs."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

MB = 2**20
# prepare_data runs on the submitting machine (so that the compatibility check can fail before any
# job is queued) when the raw data named under `data:` is smaller than this many MB (0: never).
LOCAL_PREPARE_ENV = "STAGEWISE_LOCAL_PREPARE_MB"
LOCAL_PREPARE_MB = 1024


def raw_bytes(data: dict) -> int:
    """Total size of the raw files named under `data:`: files, image folders (every file in them), a genome's
    annotation (built-in `sklearn:` data counts 0)."""
    paths = [spec[key] for spec in data.values() for key in ("train", "test") if spec.get(key)]
    paths += [spec["genome"]["annotation"] for spec in data.values() if spec.get("genome")]
    return sum(_size(p) for p in paths if not p.startswith("sklearn:"))


def _size(path: str) -> int:
    if os.path.isdir(path):
        return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    return os.path.getsize(path) if os.path.isfile(path) else 0


def threads(raw: int) -> int:
    """Threads of the compute rules: 1 below 256 MB of raw data, 2 below 2 GB, else 4.

    torch's results can depend on its thread count, so this depends only on the data (never on
    the machine): a local run with --cores >= this number computes with the same threads as SLURM."""
    return 1 if raw < 256 * MB else 2 if raw < 2048 * MB else 4


def local_prepare(raw: int) -> bool:
    """Whether prepare_data is light enough to run on the submitting machine."""
    return raw < float(os.environ.get(LOCAL_PREPARE_ENV, LOCAL_PREPARE_MB)) * MB


def _round_up(mb: float, step: int = 500) -> int:
    return int(math.ceil(mb / step) * step)


def prepare_mem_mb(raw: int) -> int:
    """Memory for prepare_data: 2 GB plus four times the raw data (parsed table, splits, copies)."""
    return _round_up(2000 + 4 * raw / MB)


def _prepared_mb(summary: str) -> float:
    """In-memory size of all prepared splits, from prepare_data's summary.json."""
    return json.loads(Path(summary).read_text())["bytes"] / MB


def train_mem_mb(summary: str) -> int:
    """Memory for a training or evaluate job: 3 GB (torch, CUDA context) plus three times the data."""
    return _round_up(3000 + 3 * _prepared_mb(summary))


def train_runtime(summary: str, epochs: int) -> int:
    """Minutes for a training job: 10 plus, per epoch, 1 minute and 5 more per GB of prepared data."""
    return int(10 + math.ceil(epochs * (1 + 5 * _prepared_mb(summary) / 1024)))


def evaluate_runtime(summary: str) -> int:
    """Minutes for an evaluate job: 10 plus 5 per GB of prepared data."""
    return int(10 + math.ceil(5 * _prepared_mb(summary) / 1024))


def processes(training: dict) -> tuple[int, int]:
    """(processes per node, nodes) of a stage: `training.devices`, `training.nodes`."""
    return int(training.get("devices", 1)), int(training.get("nodes", 1))


def stage_threads(threads: int, training: dict) -> int:
    """The rule's threads: `threads` for each of the node's processes (each computes with `threads`, as one would)."""
    return threads * processes(training)[0]


def stage_mem_mb(summary: str, training: dict) -> int:
    """Memory per node of a training job: `train_mem_mb` for each process on it (each reads the data itself)."""
    return train_mem_mb(summary) * processes(training)[0]


def slurm_layout(training: dict, threads: int) -> dict:
    """What a training job asks the SLURM executor plugin (2.8) for, beyond threads, memory and time.

    One process: GPU rules ask `gpu: 1` (sbatch --gpus=1) unless `training.device: cpu`, and the plugin runs the
    job in `srun -n1` as before. Several (`devices × nodes > 1`): `mpi: srun` makes the plugin run the job itself
    on the first node, without its own srun, and submit it with `--nodes`, `--ntasks-per-node` (`tasks_per_node`,
    or `tasks` when one process per node) and `--cpus-per-task`; the job's launcher then starts the ranks with
    one `srun` (`stagewise.distributed`). GPUs are asked per node, `gres: gpu:<devices>`. Values None are unset."""
    devices, nodes = processes(training)
    gpu = training.get("device", "auto") != "cpu"
    if devices * nodes == 1:
        return {"gpu": 1 if gpu else None}
    layout = {
        "mpi": "srun",
        "nodes": nodes,
        "cpus_per_task": threads,
        "tasks_per_node": devices if devices > 1 else None,
        "tasks": nodes if devices == 1 else None,
    }
    if gpu:
        # with `tasks` the plugin would also write --ntasks-per-gpu=<tasks>; one task per GPU is what is meant
        layout |= {"gres": f"gpu:{devices}", "tasks_per_gpu": 1 if devices == 1 else None}
    return layout
