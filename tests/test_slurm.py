"""The workflow through real SLURM daemons (sbatch, sacct) with the shipped profile, and the profile's parts.

The cluster tests need root and Debian's SLURM packages (.ci/slurm-deps.sh): outside CI they skip
with the reason, in CI (CI=1) they fail. Every snakemake call runs under `timeout -k`, so a
polling fault fails a test instead of hanging CI; the cluster is stopped by pid whatever happens.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, TINY, file_lock, snakemake_command, write_config
from slurm_cluster import HERE, SHIPPED_PROFILE, skip_or_fail_if_unavailable, start_cluster, write_test_profile
from stagewise import resources
from stagewise.cli import main as stagewise_main

# seconds for one snakemake call through SLURM (the e2e run takes ~1.5 min alone, more beside other xdist workers)
TIMEOUT = 600
GPU_RULES = {"pretrain", "finetune", "train_scratch", "evaluate"}
# One experiment of two stages and the scratch baseline: 9 SLURM jobs in the e2e run.
CONFIG = {
    **copy.deepcopy(TINY),
    "experiments": {"gradual": copy.deepcopy(TINY["experiments"]["gradual"])},
    "evaluation": {"baselines": ["scratch"]},
}
# The test cluster's settings as command-line options (what a user would pass to a shipped profile).
OVERRIDES = [
    a for k, v in yaml.safe_load((HERE / "profile-overrides.yaml").read_text()).items() for a in (f"--{k}", str(v))
]


def run(
    cmd: list[str], cwd: Path, env: dict | None = None, check: bool = True, timeout: int = TIMEOUT
) -> subprocess.CompletedProcess:
    """Run a command under `timeout -k 10` (SIGTERM leaves snakemake waiting for its SLURM jobs)."""
    env = {**os.environ, "PYTHONHASHSEED": "0", **(env or {})}
    done = subprocess.run(["timeout", "-k", "10", str(timeout), *cmd], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode not in (124, 137), f"timed out after {timeout} s: {cmd}\n{done.stderr[-4000:]}"
    if check:
        assert done.returncode == 0, f"failed ({done.returncode}): {cmd}\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done


def snakemake(workdir: Path, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """snakemake on the repo's Snakefile with workdir/config.yaml, run from the repository."""
    cmd = snakemake_command(workdir, *args, cores=None)
    return run(cmd, REPO, env, check)


def sacct(after: int = 0) -> list[dict]:
    """Allocations (not steps) with a job id above `after`, as dicts."""
    fields = ["JobID", "JobName", "Comment", "Partition", "State", "AllocTRES"]
    out = run(["sacct", "-a", "-X", "-n", "-P", "-S", "2000-01-01", "-o", ",".join(fields)], REPO).stdout
    jobs = [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line]
    return [j for j in jobs if int(j["JobID"]) > after]


def last_job_id() -> int:
    return max((int(j["JobID"]) for j in sacct()), default=0)


def comments(jobs: list[dict]) -> list[str]:
    """The plugin's job comments, rule_<name>[_wildcards_<values>], without `rule_`."""
    return sorted(j["Comment"].removeprefix("rule_") for j in jobs)


def rules_of(jobs: list[dict]) -> list[str]:
    return sorted(c.split("_wildcards_")[0] for c in comments(jobs))


def metrics(workdir: Path) -> list[dict]:
    with open(workdir / "results" / "metrics.tsv") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """The two-node cluster (two slurmd on this machine). Its tests share one xdist worker (conftest's group
    "slurm_cluster"); the cluster is machine-wide, so a lock also keeps any other test process on this machine
    from starting it at the same time."""
    skip_or_fail_if_unavailable()
    folder = tmp_path_factory.mktemp("slurm_cluster")
    with file_lock(Path("/tmp/stagewise-slurm-cluster.lock")):
        cluster = start_cluster(folder)
        try:
            yield cluster
        finally:
            cluster.stop()


@pytest.fixture(scope="session")
def e2e(cluster, tmp_path_factory):
    """The tiny example through SLURM with the generated test profile; prepare_data submitted too."""
    workdir = tmp_path_factory.mktemp("slurm_e2e")
    write_config(workdir, CONFIG)
    profile = write_test_profile(workdir / "profile", cluster)
    before = last_job_id()
    t0 = time.monotonic()
    done = snakemake(workdir, "--profile", str(profile), env={resources.LOCAL_PREPARE_ENV: "0"})
    seconds = time.monotonic() - t0
    print(f"\nSLURM e2e run: {seconds:.1f} s")
    return {"workdir": workdir, "jobs": sacct(before), "log": done.stdout + done.stderr, "seconds": seconds}


@pytest.mark.slurm
def test_tiny_example_through_slurm(e2e):
    jobs = e2e["jobs"]
    assert rules_of(jobs) == ["evaluate"] * 3 + ["finetune"] * 2 + ["prepare_data"] * 2 + ["pretrain", "train_scratch"]
    for job in jobs:
        rule = job["Comment"].removeprefix("rule_").split("_wildcards_")[0]
        assert job["State"] == "COMPLETED", job
        if rule in GPU_RULES:
            assert job["Partition"] == "gpu" and "gres/gpu=1" in job["AllocTRES"], job
        else:
            assert job["Partition"] == "cpu" and "gres/gpu" not in job["AllocTRES"], job
    assert len({j["JobName"] for j in jobs}) == 1  # one run
    workdir = e2e["workdir"]
    assert [m["stage"] for m in metrics(workdir)] and (workdir / "results" / "report.html").stat().st_size > 0
    assert (workdir / "results" / "compatibility.json").exists()  # check_compatibility and report: local


@pytest.mark.slurm
def test_compatibility_failure_submits_no_job(e2e, tmp_path):
    ckpt = torch.load(e2e["workdir"] / "results" / "pretrain" / "model.pt", weights_only=True)
    names = ckpt["stagewise"]["feature_names"]
    ckpt["stagewise"]["feature_names"] = names[1:] + names[:1]  # same features, another order
    torch.save(ckpt, tmp_path / "shuffled.pt")
    config = copy.deepcopy(CONFIG)
    config["pretrained"] = {
        "checkpoint": str(tmp_path / "shuffled.pt"),
        "features": "strict",
        "head": {"module": "head"},
    }
    write_config(tmp_path, config)
    before = last_job_id()
    done = run(
        snakemake_command(tmp_path, "--profile", "profiles/slurm", *OVERRIDES, cores=None),
        REPO,
        check=False,
    )
    assert done.returncode != 0
    assert "features differ from the checkpoint's" in done.stdout + done.stderr
    assert "check_compatibility" in done.stdout + done.stderr
    assert sacct(before) == []  # prepare_data ran locally: nothing was queued


@pytest.fixture(scope="session")
def long_stage(e2e, tmp_path_factory):
    """A config whose second stage trains long enough to be cancelled, and its local run (started here,
    waited for by calling the second item)."""
    config = copy.deepcopy(CONFIG)
    config["pretrained"] = {
        "checkpoint": str(e2e["workdir"] / "results" / "pretrain" / "model.pt"),
        "head": {"module": "head"},
    }
    config["data"]["target"]["train_per_class"] = None
    config["experiments"] = {"long": {"stages": [{"name": "all", "unfreeze_all": True, "epochs": 400}]}}
    config["evaluation"] = {"baselines": []}
    local = tmp_path_factory.mktemp("slurm_local")
    write_config(local, config)
    # The local run goes on in the background while the test drives SLURM; `finished()` waits for it.
    cmd = snakemake_command(local)
    log = tmp_path_factory.mktemp("slurm_local_log") / "snakemake.log"
    t0 = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            ["timeout", "-k", "10", str(TIMEOUT), *cmd],
            cwd=REPO,
            env={**os.environ, "PYTHONHASHSEED": "0"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def finished() -> Path:
        proc.wait(timeout=TIMEOUT + 20)
        out = log.read_text(errors="replace")
        assert proc.returncode not in (124, 137), f"timed out after {TIMEOUT} s: {cmd}\n{out[-4000:]}"
        assert proc.returncode == 0, f"failed ({proc.returncode}): {cmd}\n{out[-6000:]}"
        print(f"\nlocal run of the long-stage config: {time.monotonic() - t0:.1f} s (in the background)")
        return local

    try:
        yield config, finished
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_for(condition, what: str, timeout: float = 300):
    end = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.5)
    return result


@pytest.mark.slurm
def test_cancelled_stage_fails_clearly_and_rerun_matches_local(long_stage, tmp_path):
    config, local_run = long_stage
    write_config(tmp_path, config)
    cmd = snakemake_command(tmp_path, "--profile", "profiles/slurm", *OVERRIDES, cores=None)
    before = last_job_id()
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.Popen(
        ["timeout", "-k", "10", str(TIMEOUT), *cmd],
        cwd=REPO,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        log = tmp_path / "logs" / "finetune" / "long" / "1_all.log"
        job = wait_for(
            lambda: next((j for j in sacct(before) if j["State"] == "RUNNING" and log.exists()), None),
            "the second stage's job to start training",
        )
        run(["scancel", job["JobID"]], REPO)
        out, _ = proc.communicate(timeout=TIMEOUT + 20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode not in (0, 124, 137), out[-3000:]
    assert f"SLURM-job '{job['JobID']}' failed, SLURM status is: 'CANCELLED'" in out, out[-3000:]
    assert "Error in rule finetune" in out
    assert not (tmp_path / "results" / "long" / "stages" / "1_all" / "model_best.pt").exists()
    assert [j["State"].split()[0] for j in sacct(before) if j["JobID"] == job["JobID"]] == [
        "CANCELLED"
    ]  # "CANCELLED by 0"

    before = last_job_id()
    run([*cmd, "--rerun-incomplete"], REPO)
    assert comments(sacct(before)) == ["evaluate_wildcards_long_stages_1_all", "finetune_wildcards_long_1_all"]
    local = local_run()
    assert metrics(tmp_path) == metrics(local)
    best = "results/long/stages/1_all/model_best.pt"
    ours, theirs = (torch.load(w / best, weights_only=True)["state_dict"] for w in (tmp_path, local))
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs) and ours.keys() == theirs.keys()


@pytest.mark.slurm
def test_config_edit_reruns_only_affected_jobs_with_installed_profile(e2e, tmp_path):
    workdir = e2e["workdir"]
    home = tmp_path / "home"
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    run([sys.executable, "-m", "stagewise.cli", "profile", "install", "slurm"], workdir, env)
    assert (home / ".config" / "snakemake" / "slurm" / "config.yaml").read_text() == SHIPPED_PROFILE.read_text()

    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["experiments"]["gradual"]["stages"][1]["optimizer"] = {"lr": 5.0e-4}
    write_config(workdir, config)
    stages = workdir / "results" / "gradual" / "stages"
    untouched = {
        p: p.stat().st_mtime_ns
        for p in [stages / "1_head" / "model_best.pt", workdir / "results" / "baselines" / "scratch" / "model_best.pt"]
    }
    before = last_job_id()
    # what a user types in a project folder, with the installed profile
    run(
        [sys.executable, "-m", "stagewise.cli", "run", "--config", "config.yaml", "--profile", "slurm", *OVERRIDES],
        workdir,
        env,
    )
    assert comments(sacct(before)) == ["evaluate_wildcards_gradual_stages_2_all", "finetune_wildcards_gradual_2_all"]
    assert (stages / "2_all" / "model_best.pt").stat().st_mtime_ns > max(untouched.values())
    assert {p: p.stat().st_mtime_ns for p in untouched} == untouched


# --- the profile's parts, without a cluster --------------------------------------------------


def test_profile_install_copies_the_shipped_profile_and_refuses_to_overwrite(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert stagewise_main(["profile", "install", "slurm"]) == 0
    installed = tmp_path / ".config" / "snakemake" / "slurm" / "config.yaml"
    assert installed.read_text() == SHIPPED_PROFILE.read_text()
    assert "snakemake --profile slurm" in capsys.readouterr().out
    assert stagewise_main(["profile", "install", "slurm"]) == 1
    assert "--force" in capsys.readouterr().err
    assert stagewise_main(["profile", "install", "slurm", "--force"]) == 0
    assert stagewise_main(["profile", "install", "nosuch"]) == 1
    assert "shipped: ['default', 'slurm']" in capsys.readouterr().err


def test_shipped_profiles_avoid_the_known_traps():
    slurm = yaml.safe_load(SHIPPED_PROFILE.read_text())
    default = yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text())
    assert slurm["executor"] == "slurm" and slurm["jobs"] >= 1
    assert "cpus_per_task" not in slurm["default-resources"]  # it would replace the rules' threads
    assert all(slurm["set-resources"][r]["slurm_partition"] == "gpu" for r in GPU_RULES)
    assert slurm["set-resources"]["evaluate"]["gpu"] == 1
    # the training rules ask for their GPUs per stage (training.devices): a profile value would replace that
    assert not any({"gpu", "gres"} & set(slurm["set-resources"][r]) for r in GPU_RULES - {"evaluate"})
    assert not {"executor", "default-resources", "set-resources"} & set(default)  # it would win over --profile


def test_resources_follow_data_size_and_epochs(tmp_path):
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"bytes": 2 * 1024**3}))
    assert resources.train_mem_mb(str(summary)) == 9500  # 3000 + 3 * 2048, rounded up to 500
    assert resources.train_runtime(str(summary), 10) == 10 + 10 * 11
    assert resources.evaluate_runtime(str(summary)) == 20
    assert [resources.threads(n * resources.MB) for n in (0, 255, 256, 4096)] == [1, 1, 2, 4]
    assert resources.raw_bytes({"target": {"train": "sklearn:digits", "test": None}}) == 0
    raw = tmp_path / "raw.csv"
    raw.write_bytes(b"x" * 3000)
    assert resources.raw_bytes({"target": {"train": str(raw), "test": str(raw)}}) == 6000
    assert resources.local_prepare(6000) and not resources.local_prepare(2 * 1024 * resources.MB)


# --- a data-parallel stage as one job of 2 tasks: on one node (devices: 2), on two (nodes: 2) ------------

PAR_TARGET = "results/par/stages/1_all/model_best.pt"


def _par_config(devices: int = 2, nodes: int = 1) -> dict:
    config = copy.deepcopy(CONFIG)
    stage = {"name": "all", "unfreeze_all": True, "devices": devices, "nodes": nodes, "device": "cpu"}
    config["experiments"] = {"par": {"stages": [stage]}}
    return config


@pytest.fixture(scope="session")
def local_par(e2e, tmp_path_factory) -> Path:
    """The data-parallel stage run locally on 2 processes (`--cores 2`): what both SLURM layouts must give."""
    from conftest import copy_run

    local = copy_run(e2e["workdir"], tmp_path_factory.mktemp("slurm_par") / "local")
    write_config(local, _par_config())
    run(snakemake_command(local, PAR_TARGET), REPO)
    return local


def _par_through_slurm(cluster, e2e, local: Path, workdir: Path, devices: int, nodes: int) -> dict:
    """Run the stage with `devices` × `nodes` through SLURM in a copy of the e2e run; check that it was one
    completed job with no GPU and a srun step of 2 completed tasks whose checkpoint equals the local run's.
    Returns the job's sacct line and its step's (NNodes, NTasks, NodeList, State)."""
    from conftest import copy_run

    copy_run(e2e["workdir"], workdir)
    write_config(workdir, _par_config(devices, nodes))
    profile = write_test_profile(workdir.parent / "profile", cluster)
    before = last_job_id()
    t0 = time.monotonic()
    snakemake(workdir, "--profile", str(profile), PAR_TARGET)
    bench = (workdir / "benchmarks" / "finetune" / "par" / "1_all.tsv").read_text().splitlines()
    seconds = float(next(csv.DictReader(bench, delimiter="\t"))["s"])
    print(
        f"\n{devices} × {nodes} node(s) through SLURM: {time.monotonic() - t0:.1f} s, the job {seconds:.1f} s"
        " (benchmark file)"
    )
    jobs = sacct(before)
    assert comments(jobs) == ["finetune_wildcards_par_1_all"] and jobs[0]["State"] == "COMPLETED", jobs
    assert "gres/gpu" not in jobs[0]["AllocTRES"]  # device: cpu asks for no GPU
    fields = ["JobID", "NNodes", "NTasks", "NodeList", "State"]
    lines = run(["sacct", "-n", "-P", "-j", jobs[0]["JobID"], "-o", ",".join(fields)], REPO).stdout.splitlines()
    steps = {line.split("|")[0]: dict(zip(fields, line.split("|"))) for line in lines}
    step = steps.get(f"{jobs[0]['JobID']}.0")
    assert step and step["NTasks"] == "2" and step["State"] == "COMPLETED", lines  # the srun step: 2 tasks, both done
    log = (workdir / "logs" / "finetune" / "par" / "1_all.log").read_text()
    assert "0: rank 0 of 2" in log and "1: rank 1 of 2" in log, log[-3000:]
    ours, theirs = (torch.load(w / PAR_TARGET, weights_only=True)["state_dict"] for w in (workdir, local))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in theirs)
    return {"job": steps[jobs[0]["JobID"]], "step": step}


@pytest.mark.slurm
def test_two_process_stage_is_one_job_of_two_tasks_and_matches_the_local_run(cluster, e2e, local_par, tmp_path):
    _par_through_slurm(cluster, e2e, local_par, tmp_path / "slurm", devices=2, nodes=1)


@pytest.mark.slurm
def test_two_node_stage_is_one_job_of_a_task_on_each_node_and_matches_the_local_run(cluster, e2e, local_par, tmp_path):
    """`nodes: 2, devices: 1` on the test cluster's two nodes (two slurmd on this machine): sbatch --nodes=2
    --ntasks=2, one srun step with a rank on each node, rendezvous at the first node's TCP store."""
    found = _par_through_slurm(cluster, e2e, local_par, tmp_path / "slurm", devices=1, nodes=2)
    both = run(["scontrol", "show", "hostlist", ",".join(cluster.nodes)], REPO).stdout.strip()  # n[1-2]
    assert found["job"]["NNodes"] == "2" and found["job"]["NodeList"] == both, found
    assert found["step"]["NNodes"] == "2" and found["step"]["NodeList"] == both, found
