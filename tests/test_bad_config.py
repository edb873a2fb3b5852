"""A bad config after a good run, through each entry point a user has: a clear error naming the file, key and line;
no traceback; the earlier results untouched. And the success line names a report only when one was built."""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import TINY, snakemake

pytestmark = pytest.mark.e2e

ENTRY_POINTS = ["stagewise check", "snakemake --configfile", "stagewise run"]


def _results(workdir: Path) -> dict[str, str]:
    return {
        str(p.relative_to(workdir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((workdir / "results").rglob("*"))
        if p.is_file()
    }


def _entry(workdir: Path, entry: str, config: str = "config.yaml") -> subprocess.CompletedProcess:
    """Run one entry point on `workdir/config` (snakemake's helper always reads config.yaml)."""
    if entry == "snakemake --configfile":
        return snakemake(workdir, "--cores", "1", check=False)
    command = (
        ["check", "--config", config] if entry == "stagewise check" else ["run", "--config", config, "--cores", "1"]
    )
    return subprocess.run(
        [sys.executable, "-m", "stagewise.cli", *command],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )


def _text(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False)


def _line(text: str, fragment: str, after: str = "") -> int:
    """1-based line of the first line holding `fragment` after the first holding `after`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if after in line)
    return next(i for i, line in enumerate(lines) if i >= start and fragment in line) + 1


def _with(edit) -> str:
    config = copy.deepcopy(TINY)
    edit(config)
    return _text(config)


def _missing_train(c):
    c["data"]["target"]["train"] = "data/target.csv"


def _missing_checkpoint(c):
    c["pretrained"]["checkpoint"] = "models/lab.pt"


def _missing_feature_names(c):
    c["pretrained"]["checkpoint"] = "results/pretrain/model.pt"
    c["pretrained"]["feature_names"] = "models/features.txt"


def _missing_label_names(c):
    c["pretrained"]["checkpoint"] = "results/pretrain/model.pt"
    c["pretrained"]["label_names"] = "models/labels.txt"


def _unknown_key(c):
    c["training"]["epochz"] = 3


GOOD = _text(TINY)
DUPLICATE_EPOCHS = GOOD.replace("  epochs: 2\n", "  epochs: 2\n  epochs: 5\n", 1)
DUPLICATE_EXPERIMENT = GOOD.replace(
    "  fixed:\n", "  gradual:\n    stages:\n    - name: all\n      unfreeze_all: true\n  fixed:\n", 1
)
SYNTAX = GOOD.replace("  epochs: 2\n", "  epochs: [2, 3\n", 1)
TAB = GOOD.replace("  epochs: 2\n", "\tepochs: 2\n", 1)

# (case, config text, what the message must hold: the file is always named)
CASES = [
    (
        "missing data file",
        _with(_missing_train),
        [
            f"line {_line(_with(_missing_train), 'train: data/target.csv')}: "
            "data.target.train: data/target.csv: not found"
        ],
    ),
    ("missing checkpoint", _with(_missing_checkpoint), ["pretrained.checkpoint: models/lab.pt: not found"]),
    (
        "missing feature_names",
        _with(_missing_feature_names),
        ["pretrained.feature_names: models/features.txt: not found"],
    ),
    ("missing label_names", _with(_missing_label_names), ["pretrained.label_names: models/labels.txt: not found"]),
    (
        "unknown key",
        _with(_unknown_key),
        [f"line {_line(_with(_unknown_key), 'epochz')}: config.training: unknown key", "'epochz'"],
    ),
    (
        "duplicate key",
        DUPLICATE_EPOCHS,
        [
            f"config.yaml:{_line(DUPLICATE_EPOCHS, 'epochs: 5')}: ",
            f"duplicate key 'epochs' (first on line {_line(DUPLICATE_EPOCHS, 'epochs: 2', 'training:')})",
        ],
    ),
    (
        "duplicate experiment",
        DUPLICATE_EXPERIMENT,
        [
            f"config.yaml:{_line(DUPLICATE_EXPERIMENT, 'gradual:', 'name: all')}: ",
            "duplicate key 'gradual' (first on line ",
        ],
    ),
]
# Snakemake parses a --configfile itself before the workflow starts: for these it prints its own
# one-line WorkflowError (no file named); `stagewise check` and `stagewise run` name file and line.
PARSE_CASES = [
    (
        "YAML syntax error",
        SYNTAX,
        [
            f"config.yaml:{_line(SYNTAX, 'epochs: [2, 3') + 1}: not valid YAML",
            f"flow sequence, from line {_line(SYNTAX, 'epochs: [2, 3')}",
        ],
    ),
    ("tab", TAB, [f"config.yaml:{_line(TAB, 'epochs: 2', 'training:')}: not valid YAML", "never tabs"]),
    ("empty file", "", ["config.yaml: the config file is empty"]),
    ("top-level list", "- data\n- model\n", ["config.yaml: the config must be a mapping"]),
]


@pytest.fixture
def copied_run(tiny_run, tmp_path) -> Path:
    """A copy of the completed tiny run (mtimes kept: it is up to date)."""
    return Path(shutil.copytree(tiny_run, tmp_path / "run", symlinks=True))


def _assert_refused(done: subprocess.CompletedProcess, expected: list[str], workdir: Path, before: dict) -> None:
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Traceback" not in output, output
    for fragment in expected:
        assert fragment in output, f"{fragment!r} not in:\n{output}"
    assert _results(workdir) == before


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("case,text,expected", CASES + PARSE_CASES, ids=[c[0] for c in CASES + PARSE_CASES])
def test_a_bad_config_is_refused_naming_file_key_and_line(copied_run, entry, case, text, expected):
    before = _results(copied_run)
    (copied_run / "config.yaml").write_text(text)
    done = _entry(copied_run, entry)
    if entry != "snakemake --configfile":
        expected = ["config.yaml", *expected]
    elif any(case == c[0] for c in PARSE_CASES):
        expected = [
            "Config file"
        ]  # Snakemake's own message: "Config file is not valid JSON or YAML", "... keys at top level"
    else:
        expected = [str(copied_run / "config.yaml"), *expected]
    _assert_refused(done, expected, copied_run, before)


@pytest.mark.parametrize("entry", ["stagewise check", "stagewise run"])
def test_a_config_file_that_does_not_exist(copied_run, entry):
    before = _results(copied_run)
    done = _entry(copied_run, entry, config="my-transfer.yaml")
    _assert_refused(done, [f"my-transfer.yaml: config file not found (in {copied_run})"], copied_run, before)


def test_stagewise_run_takes_snakemakes_configfile_flag(copied_run):
    done = subprocess.run(
        [sys.executable, "-m", "stagewise.cli", "run", "--configfile", "my-transfer.yaml", "--cores", "1"],
        cwd=copied_run,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1 and "my-transfer.yaml: config file not found" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_report_line_only_when_the_report_was_built(copied_run):
    def run(*args):
        done = subprocess.run(
            [sys.executable, "-m", "stagewise.cli", "run", "--config", "config.yaml", "--cores", "1", *args],
            cwd=copied_run,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    report = f"stagewise: report at {copied_run / 'results' / 'report.html'}"
    assert report not in run("results/compatibility.json", "--force")  # one job, no report asked for
    assert report in run("--forcerun", "report")
