"""Shared fixtures: a tiny config and a helper that runs the real `snakemake` in a temp dir.

The suite runs on several pytest-xdist workers (`addopts` in pyproject.toml; `-p no:xdist` or `-n 0` runs it
in one process). So that the workers neither repeat expensive work nor trip over each other:

- `shared_folder` builds a folder once per test session for all workers (a file lock in the session's
  temp root; the others wait and reuse it). `tiny_run` is one such run, copied (mtimes kept, so up to
  date) into each worker that asks for it, so tests of one worker never see another's edits.
- tests that use the machine-wide SLURM test cluster (fixture `cluster`) go to one worker (xdist group
  "slurm_cluster"); tests that share a module-, class- or session-scoped fixture of a test module go to one
  worker too (a group per fixture), unless that fixture is built through `shared_folder`.
- collection order puts SLURM, then one test that builds `tiny_run`, then the other end-to-end tests (those
  that read `tiny_run` last), so the long ones start early and the short unit tests fill the gaps at the end.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

TINY = {
    "data": {
        "source": {"train": "sklearn:digits", "rows": [0, 600], "val_fraction": 0.2},
        "target": {
            "train": "sklearn:digits",
            "rows": [600, 1000],
            "label_map": {d: ("even" if d % 2 == 0 else "odd") for d in range(10)},
            "test_fraction": 0.4,
            "val_fraction": 0.25,
            "train_per_class": 10,
        },
    },
    "model": {"architecture": "mlp", "params": {"hidden": [32, 16], "dropout": 0.1}},
    "pretrained": {"training": {"epochs": 4, "optimizer": {"lr": 3.0e-3}}, "head": {"module": "head"}},
    "training": {"epochs": 2, "batch_size": 16, "optimizer": {"lr": 1.0e-3}},
    "experiments": {
        "gradual": {
            "stages": [
                {"name": "head", "train": ["head"], "optimizer": {"lr": 3.0e-3}},
                {"name": "all", "unfreeze_all": True},
            ]
        },
        "fixed": {"stages": [{"name": "head", "train": ["head"]}]},
    },
    "report": {"title": "tiny"},
}


def write_config(folder: Path, config: dict) -> Path:
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake_command(workdir: Path, *args: str, cores: int | None = 2) -> list[str]:
    """The real snakemake on the repo's Snakefile in `workdir` with `workdir/config.yaml` (`cores` None: none given,
    as with a profile that sets jobs)."""
    return [
        *SNAKEMAKE,
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        *(["--cores", str(cores)] if cores is not None else []),
        *args,
    ]


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 1200) -> subprocess.CompletedProcess:
    """Run `snakemake_command` and fail with its output tail unless it succeeds (or `check` is off)."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        snakemake_command(workdir, *args), cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env
    )
    if check and done.returncode != 0:
        raise AssertionError(f"snakemake failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-6000:]}")
    return done


@pytest.fixture
def tiny_config() -> dict:
    import copy

    return copy.deepcopy(TINY)


def complete_run(workdir: Path, config: dict) -> Path:
    """`workdir` after a complete run of `config`."""
    write_config(workdir, config)
    snakemake(workdir)
    return workdir


# --- sharing work between pytest-xdist workers ------------------------------------------------


def session_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The temp folder of this test session that every xdist worker sees (the basetemp without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on `path` (created if need be), released on exit or when the process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def shared_folder(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]) -> Path:
    """`<session root>/shared/<name>` after `build(folder)`, built once per test session for all workers.

    The first worker to ask builds it under a lock while the others wait; later calls return it at once.
    A failed build is not retried: every worker that asks fails with the first one's error. Treat the folder
    as read-only (copy it, e.g. with `copy_run`, to edit or to run snakemake in it)."""
    root = session_root(tmp_path_factory) / "shared"
    folder, status = root / name, root / f"{name}.status"
    with file_lock(root / f"{name}.lock"):
        if not status.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            try:
                build(folder)
            except BaseException:
                status.write_text("failed\n" + traceback.format_exc())
                raise
            status.write_text("ok\n")
        state, _, detail = status.read_text().partition("\n")
    if state != "ok":
        pytest.fail(f"building the shared folder {name!r} failed in another worker:\n{detail[-6000:]}", pytrace=False)
    return folder


def shared_run(tmp_path_factory: pytest.TempPathFactory, name: str, config: dict) -> Path:
    """A complete run of `config`, once per test session for all workers (see `shared_folder`)."""
    return shared_folder(tmp_path_factory, name, lambda folder: complete_run(folder, config))


def copy_run(source: Path, target: Path) -> Path:
    """A copy of a run folder; copy2 keeps mtimes, so the copy is as up to date as the source."""
    shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
    return target


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One complete run of the tiny config, shared by the tests that only read its outputs.

    Run once per session; each xdist worker gets its own copy, so a test's snakemake calls in it (a dry
    run, --report) never meet another worker's."""
    return copy_run(shared_run(tmp_path_factory, "tiny_run", TINY), tmp_path_factory.mktemp("tiny_run"))


# --- grouping and ordering for pytest-xdist (--dist loadgroup) ---------------------------------

SLURM_GROUP = "slurm_cluster"
SHARED_FIXTURE_SCOPES = ("session", "package", "module", "class")


def _groups(item: pytest.Item) -> set[str]:
    """The xdist groups `item` needs: the SLURM cluster's, and one per wider-scoped fixture of a test module
    (built once per worker: tests sharing it belong on the same worker)."""
    if "cluster" in item.fixturenames:
        return {SLURM_GROUP}  # the machine-wide cluster: one worker starts it, once
    groups = set()
    info = getattr(item, "_fixtureinfo", None)
    for name in item.fixturenames:
        defs = info.name2fixturedefs.get(name) if info else None
        if not defs:
            continue
        fixturedef = defs[-1]
        source = Path((getattr(fixturedef.func, "__code__", None) and fixturedef.func.__code__.co_filename) or "")
        if fixturedef.scope in SHARED_FIXTURE_SCOPES and source.name.startswith("test_"):
            groups.add(f"{source.stem}.{name}")
    return groups


def _group_suffix(item: pytest.Item) -> None:
    """What xdist's --dist loadgroup does with the xdist_group marks (node id `<id>@<group>`, one worker per
    group), for pytest >= 9, where node ids live in `_id` and xdist <= 3.8's `item._nodeid = ...` is lost."""
    names = sorted(
        {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")}
    )
    if names and hasattr(item, "_id") and not item.nodeid.endswith("@" + "_".join(names)):
        from _pytest.nodeid import coerce_node_id

        item._id = coerce_node_id(f"{item.nodeid}@{'_'.join(names)}")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook turns the marks into node-id suffixes
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for group in sorted(_groups(item)):
            if not any(m.args[:1] == (group,) for m in item.iter_markers("xdist_group")):
                item.add_marker(pytest.mark.xdist_group(group))
        if getattr(config.option, "loadgroup", False):
            _group_suffix(item)

    first_tiny = next((item for item in items if "tiny_run" in item.fixturenames), None)

    def rank(item: pytest.Item) -> int:
        """SLURM; one test that builds tiny_run (its worker builds it while the others start the end-to-end tests
        that need no shared run); those; the others that read tiny_run; unit tests."""
        if item.get_closest_marker("slurm") or SLURM_GROUP in _groups(item):
            return 0
        if item is first_tiny:
            return 1
        if item.get_closest_marker("e2e"):
            return 3 if "tiny_run" in item.fixturenames else 2
        return 4

    items.sort(key=rank)  # stable: within a rank, the collection order
