"""stagewise as users reach it: a wheel installed in a fresh venv, and the workflow as a Snakemake module."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from stagewise import __version__, assets, config

pytestmark = pytest.mark.e2e

SMALL = {
    "data": {"source": {"train_per_class": 30}},
    "pretrained": {"training": {"epochs": 2}},
    "training": {"epochs": 2},
    "evaluation": {"bootstrap": 20},
}


def run(cmd: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    """A fresh venv holding only the wheel built from this checkout; the dependencies come from the test's own
    environment through a path entry (no stagewise there: that environment's editable install is not activated)."""
    tmp = tmp_path_factory.mktemp("wheel")
    run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(REPO), "-w", str(tmp)],
        tmp,
    )
    (wheel,) = tmp.glob("stagewise-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for item in (
        "Snakefile",
        "workflow/rules/common.smk",
        "workflow/schemas/config.schema.yaml",
        "workflow/scripts/finetune.py",
        "workflow/report/workflow.rst",
        "envs/stagewise.yaml",
        "profiles/slurm/config.yaml",
        "profiles/default/config.yaml",
        "config/examples/dnnbrain.yaml",
        "config/examples/my_models.py",
    ):
        assert f"stagewise/_workflow/{item}" in names, item
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", str(venv)], tmp)
    run([str(venv / "bin/python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], tmp)
    purelib = subprocess.run(
        [str(venv / "bin/python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return venv


def test_a_wheel_carries_the_workflow_and_runs_an_example_outside_the_repository(wheel_venv, tmp_path):
    python, stagewise = str(wheel_venv / "bin/python"), str(wheel_venv / "bin/stagewise")
    where = run([python, "-c", "import stagewise.assets as a; print(a.ROOT)"], tmp_path).stdout.strip()
    assert where.startswith(str(wheel_venv)) and where.endswith("stagewise/_workflow")
    assert run([stagewise, "--version"], tmp_path).stdout.strip() == f"stagewise {__version__}"
    project = tmp_path / "project"
    run([stagewise, "init", "--example", "dnnbrain", str(project)], tmp_path)
    path = project / "config.yaml"
    path.write_text(yaml.safe_dump(config.deep_merge(yaml.safe_load(path.read_text()), SMALL), sort_keys=False))
    env = {**os.environ, "PATH": f"{wheel_venv / 'bin'}:{os.environ['PATH']}"}
    done = run([stagewise, "run", "--config", "config.yaml", "--cores", "2"], project, env)
    assert (project / "results/report.html").is_file() and (project / "results/metrics.tsv").is_file()
    assert f"report at {project / 'results/report.html'}" in done.stdout + done.stderr


USER_SNAKEFILE = """\
configfile: "config.yaml"


module stagewise:
    snakefile:
        "{snakefile}"
    config:
        config


use rule * from stagewise as stagewise_*


rule digits_table:
    output:
        "data/digits.csv",
    run:
        from sklearn.datasets import load_digits
        import pandas as pd

        digits = load_digits()
        table = pd.DataFrame(digits.data / 16.0, columns=digits.feature_names)
        table.insert(0, "label", ["even" if t % 2 == 0 else "odd" for t in digits.target])
        table.iloc[600:1000].to_csv(output[0], index=False)


rule all:
    default_target: True
    input:
        rules.stagewise_all.input,
"""

MODULE_CONFIG = {
    "data": {
        "source": {"train": "sklearn:digits", "rows": [0, 600], "val_fraction": 0.2},
        "target": {"train": "data/digits.csv", "test_fraction": 0.4, "val_fraction": 0.25, "train_per_class": 10},
    },
    "model": {"architecture": "mlp", "params": {"hidden": [32, 16]}},
    "pretrained": {"training": {"epochs": 2}, "head": {}},
    "training": {"epochs": 2, "batch_size": 16},
    "experiments": {"fixed": {"stages": [{"name": "head", "train": ["head"]}]}},
    "evaluation": {"baselines": ["scratch"], "bootstrap": 20},
}


def test_the_workflow_as_a_snakemake_module_with_a_rule_of_the_users_own(tmp_path):
    (tmp_path / "Snakefile").write_text(USER_SNAKEFILE.format(snakefile=assets.SNAKEFILE))
    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump(config.deep_merge(MODULE_CONFIG, {"data": {"source": {"train": "nothere.csv"}}}))
    )
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "2"], cwd=tmp_path, capture_output=True, text=True
    )
    assert (
        done.returncode != 0 and "data.source.train: nothere.csv: not found" in done.stdout + done.stderr
    )  # no rule makes it
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(MODULE_CONFIG))
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    dry = run([sys.executable, "-m", "snakemake", "-n", "--cores", "2"], tmp_path, env).stdout
    assert "digits_table" in dry and "stagewise_prepare_data" in dry  # the user's rule makes what prepare_data reads
    run([sys.executable, "-m", "snakemake", "--cores", "2"], tmp_path, env)
    assert (tmp_path / "data/digits.csv").is_file() and (tmp_path / "results/report.html").is_file()
    assert len((tmp_path / "results/metrics.tsv").read_text().splitlines()) == 1 + 2  # fixed/head and scratch
    assert "localrules directive specifies rules that are not present" not in dry
