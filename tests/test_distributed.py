"""Data-parallel stages (`training.devices`): 2 gloo processes on CPU through real snakemake.

One module-scoped set of runs of a two-stage experiment (head only, then everything) serves most tests:
with 2 processes, again with 2 processes in a fresh folder, and with 1 process (pretrain: 2 processes in all). A kill
test starts a long
2-process stage and kills rank 1 mid-epoch. The SLURM test (2 tasks in one job) is in tests/test_slurm.py,
next to the cluster it needs.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import split_files
import torch
from conftest import TINY, copy_run, snakemake, snakemake_command, write_config
from stagewise import distributed, resources
from stagewise.io import hdf5
from stagewise.io.batches import Batches

STAGES = "results/par/stages"
TARGET = f"{STAGES}/2_all/model_best.pt"
OUTPUTS = ("model_best.pt", "model_last.pt", "history.tsv", "stage.json")


def par_config(devices: int) -> dict:
    config = copy.deepcopy(TINY)
    config["experiments"] = {
        "par": {
            "stages": [
                {"name": "head", "train": ["head"], "optimizer": {"lr": 3.0e-3}, "devices": devices},
                {"name": "all", "unfreeze_all": True, "devices": devices},
            ]
        }
    }
    config["pretrained"]["training"]["devices"] = 2  # pretrain too (the same in every run: one start model)
    config["evaluation"] = {"baselines": []}
    return config


def state(workdir: Path, stage: str, name: str = "model_best.pt") -> dict[str, torch.Tensor]:
    return torch.load(workdir / STAGES / stage / name, weights_only=True)["state_dict"]


def history(workdir: Path, stage: str) -> list[dict]:
    with open(workdir / STAGES / stage / "history.tsv") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """The experiment with 2 processes, again with 2 in a fresh copy of the inputs, and with 1 process."""
    two = tmp_path_factory.mktemp("two")
    write_config(two, par_config(2))
    t0 = time.monotonic()
    snakemake(two, TARGET)
    print(f"\n2 processes, with prepare/pretrain/check: {time.monotonic() - t0:.1f} s")
    again = copy_run(two, tmp_path_factory.mktemp("again"))
    shutil.rmtree(again / "results" / "par")
    snakemake(again, TARGET)
    one = copy_run(two, tmp_path_factory.mktemp("one"))
    write_config(one, par_config(1))
    t0 = time.monotonic()
    snakemake(one, TARGET)  # params changed: both stages rerun with 1 process
    print(f"1 process, both stages: {time.monotonic() - t0:.1f} s")
    return {"two": two, "again": again, "one": one}


# --- without snakemake -----------------------------------------------------------------------


def test_shards_are_contiguous_disjoint_and_balanced():
    for n in range(40):
        for world in (1, 2, 3, 4):
            parts = [distributed.shard(n, r, world) for r in range(world)]
            assert (
                [p.start for p in parts[1:]] == [p.stop for p in parts[:-1]]
                and parts[0].start == 0
                and parts[-1].stop == n
            )
            sizes = [p.stop - p.start for p in parts]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_batches_shards_cut_the_one_process_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(hdf5, "CHUNK_BYTES", 8 * 4 * 20)  # 20-row blocks, several windows
    rng = np.random.default_rng(0)
    X = rng.normal(size=(203, 8)).astype(np.float32)
    X[:, 0] = np.arange(203)
    path = str(tmp_path / "s.h5")
    split_files.write(
        path,
        split_files.Split(
            X, rng.integers(0, 2, 203), [f"f{i}" for i in range(8)], ["a", "b"], [f"s{i}" for i in range(203)]
        ),
        "train",
        "test",
    )
    for in_memory in ("true", "false"):
        whole = [
            x[:, 0].numpy()
            for x, _, _ in Batches(path, 16, shuffle=True, seed=3, in_memory=in_memory, window=2).epoch(2)
        ]
        ranks = [
            [
                x[:, 0].numpy()
                for x, _, _ in Batches(path, 16, shuffle=True, seed=3, in_memory=in_memory, window=2)
                .shard(r, 3)
                .epoch(2)
            ]
            for r in range(3)
        ]
        assert all(len(r) == len(whole) for r in ranks)  # every rank steps once per global batch
        for b, batch in enumerate(whole):
            np.testing.assert_array_equal(np.concatenate([r[b] for r in ranks]), batch)  # disjoint, in order


def test_slurm_layout_of_a_stage():
    base = {"device": "auto", "devices": 1, "nodes": 1}
    assert resources.slurm_layout(base, 2) == {"gpu": 1}
    assert resources.slurm_layout(base | {"device": "cpu"}, 2) == {"gpu": None}
    four = resources.slurm_layout(base | {"devices": 4, "nodes": 2}, 3)
    assert {k: v for k, v in four.items() if v is not None} == {
        "mpi": "srun",
        "nodes": 2,
        "tasks_per_node": 4,
        "cpus_per_task": 3,
        "gres": "gpu:4",
    }
    one_per_node = resources.slurm_layout(base | {"nodes": 3}, 1)
    assert one_per_node["tasks"] == 3 and one_per_node["tasks_per_gpu"] == 1 and one_per_node["tasks_per_node"] is None
    cpu = resources.slurm_layout(base | {"devices": 2, "device": "cpu"}, 1)
    assert "gres" not in cpu and cpu["tasks_per_node"] == 2
    assert resources.stage_threads(2, base | {"devices": 3}) == 6


def test_check_refuses_a_batch_smaller_than_the_processes(tmp_path, monkeypatch, capsys):
    from stagewise.cli import main

    config = copy.deepcopy(TINY)
    config["experiments"]["gradual"]["stages"][1] |= {"devices": 4, "nodes": 2, "batch_size": 4}
    write_config(tmp_path, config)
    monkeypatch.chdir(tmp_path)
    assert main(["check", "--config", "config.yaml"]) == 1
    out = capsys.readouterr().out
    assert "experiments.gradual.stages[1] (all).batch_size: 4 is smaller than the stage's 8 processes" in out


# --- through snakemake -------------------------------------------------------------------------


@pytest.mark.e2e
def test_two_processes_only_rank_0_writes_and_a_second_run_is_bitwise_identical(runs):
    two, again = runs["two"], runs["again"]
    assert json.loads((two / "results" / "pretrain" / "stage.json").read_text())["processes"] == 2
    assert "pretrained.training: 2 processes" in (two / "logs" / "pretrain" / "pretrain.log").read_text()
    for stage in ("1_head", "2_all"):
        folder = two / STAGES / stage
        assert sorted(p.name for p in folder.iterdir()) == sorted(OUTPUTS)  # no launch spec or rank files left behind
        for name in ("model_best.pt", "model_last.pt"):
            assert (folder / name).read_bytes() == (again / STAGES / stage / name).read_bytes(), (stage, name)
        timeless = [
            {k: v for k, v in row.items() if k not in ("seconds", "samples_per_s")} for row in history(two, stage)
        ]
        assert timeless == [
            {k: v for k, v in row.items() if k not in ("seconds", "samples_per_s")} for row in history(again, stage)
        ]
        info = json.loads((folder / "stage.json").read_text())
        assert info["processes"] == 2 and info["effective_config"]["training"]["devices"] == 2
        ranks = info["freeze_audit"]["ranks"]
        assert [r["rank"] for r in ranks] == [0, 1]
        assert ranks[0]["state_sha256"] == ranks[1]["state_sha256"]  # every rank ends with the same weights
        log = (two / "logs" / "finetune" / "par" / f"{stage}.log").read_text()
        assert "2 processes (2 per node × 1 node, local)" in log and "[rank 1]" in log
        assert "val_loss" not in "".join(
            line for line in log.splitlines() if line.startswith("[rank 1]")
        )  # rank 0 validates


@pytest.mark.e2e
def test_head_stage_keeps_frozen_tensors_and_batchnorm_buffers_on_every_rank(runs):
    two = runs["two"]
    start = torch.load(two / "results" / "start" / "model.pt", weights_only=True)["state_dict"]
    ranks = json.loads((two / STAGES / "1_head" / "stage.json").read_text())["freeze_audit"]["ranks"]
    frozen = [k for k in start if not k.startswith("head.")]
    assert any("running_mean" in k for k in frozen)
    expected = distributed.digest(start, frozen)
    for rank in ranks:
        assert rank["frozen_sha256_start"] == rank["frozen_sha256_end"] == expected, rank["rank"]
        assert set(rank["modes"].values()) == {"eval"}  # frozen BatchNorm and dropout in eval mode on every rank
    best = state(two, "1_head")
    assert all(torch.equal(best[k], start[k]) for k in frozen)


@pytest.mark.e2e
def test_two_processes_agree_with_one(runs):
    """Head stage (frozen BatchNorm, no dropout in play): the same numbers within float rounding of the gradient sum.
    The whole-model stage trains BatchNorm on each rank's half batch and draws other dropout masks: only close."""
    two, one = runs["two"], runs["one"]
    a, b = state(two, "1_head"), state(one, "1_head")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    for row2, row1 in zip(history(two, "1_head"), history(one, "1_head"), strict=True):
        for key in ("train_loss", "val_loss", "val_accuracy"):
            assert float(row2[key]) == pytest.approx(float(row1[key]), rel=1e-5, abs=1e-6), key
    assert json.loads((one / STAGES / "1_head" / "stage.json").read_text())["processes"] == 1
    for row2, row1 in zip(history(two, "2_all"), history(one, "2_all"), strict=True):
        assert float(row2["val_loss"]) == pytest.approx(float(row1["val_loss"]), rel=0.2)


def _rank_pid(workdir: Path, rank: int) -> int | None:
    """The pid of our worker of `rank` (its spec file lies under `workdir`), or None."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            b"stagewise.distributed" in cmdline
            and any(str(workdir).encode() in a for a in cmdline)
            and f"STAGEWISE_RANK={rank}".encode() in environ
        ):
            return int(pid)
    return None


@pytest.mark.e2e
def test_a_killed_rank_fails_the_stage_quickly_naming_it(runs, tmp_path):
    work = copy_run(runs["two"], tmp_path / "kill")
    config = par_config(2)
    config["experiments"]["long"] = {"stages": [{"name": "all", "unfreeze_all": True, "devices": 2, "epochs": 100000}]}
    write_config(work, config)
    log = work / "logs" / "finetune" / "long" / "1_all.log"
    proc = subprocess.Popen(
        snakemake_command(work, "results/long/stages/1_all/model_best.pt"),
        cwd=work,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    try:
        end = time.monotonic() + 240
        while not ((log.exists() and "it/s" in log.read_text()) or "s/it" in (log.read_text() if log.exists() else "")):
            assert time.monotonic() < end and proc.poll() is None, "the long stage did not start training"
            time.sleep(0.5)
        pid = _rank_pid(work, 1)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        out, _ = proc.communicate(timeout=60)
        seconds = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    print(f"\nsnakemake ended {seconds:.1f} s after rank 1 was killed")
    assert seconds < 30
    said = out + log.read_text()
    assert "experiments.long.stages[0] (all): rank 1 of 2 failed (killed by SIGKILL)" in said, said[-3000:]
    assert _rank_pid(work, 0) is None  # rank 0 did not outlive the job
    assert not (work / "results" / "long" / "stages" / "1_all" / "model_best.pt").exists()
