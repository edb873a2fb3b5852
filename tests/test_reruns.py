"""Config edits rerun exactly what they affect; same config, same numbers; kills lose nothing."""

from __future__ import annotations

import copy
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import h5py
import pytest
import torch
import yaml
from conftest import SNAKEMAKE, TINY, copy_run, shared_run, snakemake, snakemake_command, write_config

pytestmark = pytest.mark.e2e

STAGES = {"gradual/stages/1_head", "gradual/stages/2_all", "fixed/stages/1_head"}
TRAINED = STAGES | {"baselines/scratch"}


def planned(workdir: Path) -> set[tuple[str, str]]:
    """(rule, folder of its first output) of every job a dry run plans, `all` left out."""
    out = snakemake(workdir, "-n").stdout
    jobs = set()
    for rule, output in re.findall(r"^(?:local)?rule (\w+):\n(?:    (?!output).*\n)*    output: ([^,\n]+)", out, re.M):
        folder = str(Path(output).parent.relative_to("results")) if output.count("/") > 1 else "."
        jobs.add((rule, folder))
    return jobs


def _edit_stage_lr(c):
    c["experiments"]["gradual"]["stages"][1]["optimizer"] = {"lr": 5.0e-4}


def _edit_metrics(c):
    c["evaluation"] = {"metrics": ["accuracy", "f1"]}


def _edit_val_fraction(c):
    c["data"]["target"]["val_fraction"] = 0.3


def _edit_title(c):
    c["report"]["title"] = "another title"


def _add_experiment(c):
    c["experiments"]["extra"] = {"stages": [{"name": "head", "train": ["head"]}]}


EDITS = {
    "stage 2 lr": (
        _edit_stage_lr,
        {("finetune", "gradual/stages/2_all"), ("evaluate", "gradual/stages/2_all"), ("report", ".")},
    ),
    "evaluation metrics": (_edit_metrics, {("evaluate", m) for m in TRAINED} | {("report", ".")}),
    "val_fraction": (
        _edit_val_fraction,
        {("prepare_data", "data/target"), ("check_compatibility", "."), ("report", ".")}
        | {("finetune", s) for s in STAGES}
        | {("train_scratch", "baselines/scratch")}
        | {("evaluate", m) for m in TRAINED},
    ),
    "report title": (_edit_title, {("report", ".")}),
    "new experiment": (
        _add_experiment,
        {("finetune", "extra/stages/1_head"), ("evaluate", "extra/stages/1_head"), ("report", ".")},
    ),
    "nothing": (lambda c: None, set()),
}


@pytest.mark.parametrize("edit", EDITS)
def test_an_edit_reruns_exactly_what_it_affects(tiny_run, tmp_path, edit):
    workdir = copy_run(tiny_run, tmp_path / "run")
    change, expected = EDITS[edit]
    config = copy.deepcopy(TINY)
    change(config)
    write_config(workdir, config)
    assert planned(workdir) == expected


def test_reordered_keys_and_comments_rerun_nothing(tiny_run, tmp_path):
    workdir = copy_run(tiny_run, tmp_path / "run")
    reordered = dict(reversed(list(copy.deepcopy(TINY).items())))
    reordered["training"] = dict(reversed(list(reordered["training"].items())))
    (workdir / "config.yaml").write_text("# a comment\n" + yaml.safe_dump(reordered, sort_keys=False))
    assert planned(workdir) == set()


def test_a_changed_checkpoint_reruns_the_check_and_everything_after(tiny_run, tmp_path):
    workdir = copy_run(tiny_run, tmp_path / "run")
    shutil.copy(tiny_run / "results/pretrain/model.pt", workdir / "pretrained.pt")
    config = copy.deepcopy(TINY)
    config["pretrained"]["checkpoint"] = "pretrained.pt"
    write_config(workdir, config)
    snakemake(workdir)
    checkpoint = torch.load(workdir / "pretrained.pt", weights_only=True)
    checkpoint["state_dict"]["encoder.0.linear.bias"] += 0.01
    torch.save(checkpoint, workdir / "pretrained.pt")
    expected = {("check_compatibility", "."), ("report", "."), ("train_scratch", "baselines/scratch")}
    expected |= {("finetune", s) for s in STAGES} | {("evaluate", m) for m in TRAINED}
    assert planned(workdir) == expected


def _model_bytes(workdir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(workdir)): p.read_bytes() for p in sorted((workdir / "results").rglob("*.pt"))}


def test_two_fresh_runs_are_identical_byte_for_byte(tiny_run, tmp_path):
    write_config(tmp_path, TINY)
    snakemake(tmp_path)
    assert _model_bytes(tmp_path) == _model_bytes(tiny_run)
    for name in ["metrics.tsv", "data/target/train.h5", "gradual/stages/2_all/test_predictions.h5"]:
        assert (tmp_path / "results" / name).read_bytes() == (tiny_run / "results" / name).read_bytes(), name


def test_an_edit_undone_gives_the_same_bytes_back(tiny_run, tmp_path):
    workdir = copy_run(tiny_run, tmp_path / "run")
    config = copy.deepcopy(TINY)
    _edit_stage_lr(config)
    write_config(workdir, config)
    snakemake(workdir)
    assert _model_bytes(workdir) != _model_bytes(tiny_run)
    write_config(workdir, TINY)
    snakemake(workdir)
    assert _model_bytes(workdir) == _model_bytes(tiny_run)


def test_provenance_chain_flags_a_changed_link(tiny_run, tmp_path):
    workdir = copy_run(tiny_run, tmp_path / "run")
    model = workdir / "results/gradual/stages/2_all/model_best.pt"
    cli = [str(Path(SNAKEMAKE[0]).with_name("stagewise")), "provenance", str(model)]
    done = subprocess.run(cli, capture_output=True, text=True, cwd=workdir)
    assert done.returncode == 0, done.stderr
    for name in [
        "gradual/stages/1_head/model_best.pt",
        "start/model.pt",
        "pretrain/model.pt",
        "data/target/train.h5",
        "data/source/train.h5",
    ]:
        assert f"results/{name}" in done.stdout
    assert "CHANGED" not in done.stdout
    start = torch.load(workdir / "results/start/model.pt", weights_only=True)
    start["state_dict"]["head.bias"] += 1
    torch.save(start, workdir / "results/start/model.pt")
    done = subprocess.run(cli, capture_output=True, text=True, cwd=workdir)
    assert done.returncode == 1
    assert re.search(r"parent results/start/model.pt: CHANGED", done.stdout)


# --- interruptions -------------------------------------------------------------------------

SLOW = copy.deepcopy(TINY)
SLOW["data"]["target"]["train_per_class"] = None  # every training image: epochs take long enough to interrupt
SLOW["training"].update(epochs=6, batch_size=4)
SLOW["experiments"] = {"gradual": TINY["experiments"]["gradual"]}


@pytest.fixture
def slow_reference(tmp_path_factory) -> Path:
    """A complete run of SLOW, once per session for all xdist workers (read only)."""
    return shared_run(tmp_path_factory, "slow_reference", SLOW)


def _kill_when(workdir: Path, log: str, needle: str) -> None:
    """Start snakemake; kill -9 it and its jobs once `log` contains `needle`."""
    process = subprocess.Popen(
        snakemake_command(workdir, cores=1),
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 900  # generous: other xdist workers share the cores
    path = workdir / log
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if path.exists() and needle in path.read_text(errors="replace"):
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                return
            time.sleep(0.05)
        raise AssertionError(f"the run ended before {log} showed {needle!r}")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def _assert_nothing_partial(workdir: Path, reference: Path) -> None:
    for path in (workdir / "results").rglob("*"):
        if not path.is_file() or path.name.startswith("."):
            continue  # hidden temporary names never look complete
        twin = reference / path.relative_to(workdir)
        if path.suffix in {".pt", ".h5"}:
            assert path.read_bytes() == twin.read_bytes(), f"{path} is partial or differs"
        if path.suffix == ".h5":
            with h5py.File(path):
                pass


@pytest.mark.parametrize(
    "log,needle",
    [
        ("logs/prepare_data/target.log", ""),
        ("logs/finetune/gradual/2_all.log", "it/s]"),
        ("logs/evaluate/gradual/stages/1_head.log", ""),
        ("logs/report/report.log", ""),
    ],
    ids=["prepare_data", "finetune mid-epoch", "evaluate", "report"],
)
def test_a_killed_run_loses_nothing(slow_reference, tmp_path, log, needle):
    write_config(tmp_path, SLOW)
    _kill_when(tmp_path, log, needle)
    _assert_nothing_partial(tmp_path, slow_reference)
    snakemake(tmp_path, "--unlock")  # kill -9 leaves Snakemake's lock behind
    snakemake(tmp_path, "--rerun-incomplete")
    assert (tmp_path / "results/metrics.tsv").read_bytes() == (slow_reference / "results/metrics.tsv").read_bytes()
    assert _model_bytes(tmp_path) == _model_bytes(slow_reference)


def test_a_changed_data_file_reruns_its_preparation(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    rows = ["label," + ",".join(f"g{j}" for j in range(4))]
    rows += [f"{'ab'[i % 2]}," + ",".join(f"{v:.3f}" for v in rng.random(4)) for i in range(40)]
    (tmp_path / "target.csv").write_text("\n".join(rows) + "\n")
    config = copy.deepcopy(TINY)
    config["data"]["target"] = {"train": "target.csv", "val_fraction": 0.25, "test_fraction": 0.25}
    write_config(tmp_path, config)
    snakemake(tmp_path, "--until", "prepare_data")
    assert ("prepare_data", "data/target") not in planned(tmp_path)
    with open(tmp_path / "target.csv", "a") as handle:
        handle.write("a,0.1,0.2,0.3,0.4\n")
    assert ("prepare_data", "data/target") in planned(tmp_path)
    assert ("prepare_data", "data/source") not in planned(tmp_path)
