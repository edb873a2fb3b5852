"""A plug-in's source is tracked: an edit reruns the check and everything after it, and provenance shows its hash."""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, TINY, complete_run, copy_run, shared_folder
from stagewise.models import source
from test_reruns import STAGES, TRAINED, planned

PLUGIN = (REPO / "tests" / "plugin_model.py").read_text()
AFTER_CHECK = (
    {("check_compatibility", "."), ("pretrain", "pretrain"), ("train_scratch", "baselines/scratch"), ("report", ".")}
    | {("finetune", stage) for stage in STAGES}
    | {("evaluate", model) for model in TRAINED}
)


def _plugin_config() -> dict:
    config = copy.deepcopy(TINY)
    config["model"] = {"architecture": "lab_models:TwoLayerNet", "params": {"width": 16}}
    config["pretrained"]["head"] = {"module": "out"}
    return config


@pytest.fixture(scope="session")
def plugin_run(tmp_path_factory) -> Path:
    """A complete run of the tiny config with a plug-in class from a module next to the config (read-only)."""

    def build(folder: Path) -> None:
        (folder / "lab_models.py").write_text(PLUGIN)
        complete_run(folder, _plugin_config())

    return shared_folder(tmp_path_factory, "plugin_run", build)


@pytest.mark.e2e
def test_plugin_edit_reruns_the_check_and_after(plugin_run, tmp_path):
    workdir = copy_run(plugin_run, tmp_path / "run")
    module = workdir / "lab_models.py"
    assert planned(workdir) == set()
    module.write_bytes(module.read_bytes())  # same bytes, new mtime: nothing to do
    later = module.stat().st_mtime + 100
    os.utime(module, (later, later))
    assert planned(workdir) == set()
    module.write_text(PLUGIN.replace("nn.ReLU()", "nn.GELU()"))
    assert planned(workdir) == AFTER_CHECK
    done = _provenance(workdir)
    now = hashlib.sha256(module.read_bytes()).hexdigest()[:12]
    assert done.returncode == 1 and f"CHANGED since it was used: now sha256 {now}" in done.stdout, done.stdout


def _provenance(workdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stagewise.cli", "provenance", "results/gradual/stages/2_all/model_best.pt"],
        cwd=workdir,
        capture_output=True,
        text=True,
    )


@pytest.mark.e2e
def test_provenance_shows_the_plugin_hash(plugin_run):
    digest = hashlib.sha256(PLUGIN.encode()).hexdigest()
    done = _provenance(plugin_run)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line.strip() for line in done.stdout.splitlines() if "plug-in" in line]
    # 2_all <- 1_head <- start <- pretrain/model.pt: every link built from the same source
    assert lines == [f"plug-in lab_models.py sha256 {digest[:12]}: ok"] * 4, done.stdout


def test_describe_local_module_package_and_installed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "single_mod.py").write_text(PLUGIN)
    assert source.describe("single_mod:TwoLayerNet") == {
        "module": "single_mod",
        "sha256": hashlib.sha256(PLUGIN.encode()).hexdigest(),
    }
    package = tmp_path / "labpkg"
    (package / "nets").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "nets" / "__init__.py").write_text("")
    (package / "nets" / "mlp.py").write_text(PLUGIN)
    (package / "data.csv").write_text("not python\n")
    before = source.describe("labpkg.nets.mlp:TwoLayerNet")
    assert before["module"] == "labpkg.nets.mlp" and before["files"] == 3
    (package / "data.csv").write_text("other\n")
    assert source.describe("labpkg.nets.mlp:TwoLayerNet") == before  # only .py files count
    (package / "__init__.py").write_text("VERSION = 2\n")  # any .py file of the top-level package
    assert source.describe("labpkg.nets.mlp:TwoLayerNet")["sha256"] != before["sha256"]
    assert source.describe("yaml:YAMLObject") == {
        "module": "yaml",
        "package": "PyYAML",
        "version": importlib.metadata.version("PyYAML"),
    }
    assert source.describe("mlp") is None
    assert source.describe("no_such_module_here:Net") == {"module": "no_such_module_here", "found": False}
    assert "labpkg" not in sys.modules and "single_mod" not in sys.modules  # found, never imported


def test_render():
    assert source.render({"module": "my_models", "sha256": "ab" * 32}) == "plug-in my_models.py sha256 abababababab"
    assert source.render({"module": "openspliceai.model", "package": "openspliceai", "version": "0.0.7"}) == (
        "plug-in package openspliceai 0.0.7 (module openspliceai.model)"
    )
    assert source.render(None) == ""
