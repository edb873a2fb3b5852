"""The code stays in one shape: ruff-clean Python, snakefmt-formatted rules, a lint-clean workflow."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_snakefmt_leaves_the_snakefile_and_rules_unchanged():
    done = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow/rules"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_snakemake_lint_is_clean_on_the_embedded_example(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "--lint",
            "--cores",
            "1",
            "--configfile",
            str(REPO / "config/config.yaml"),
            "--directory",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and "Congratulations" in done.stdout + done.stderr, done.stdout + done.stderr


def test_ruff_lint_and_format_are_clean():
    """`ruff check` and `ruff format --check` (rules and line length in pyproject.toml) over the package, tests and
    benchmarks."""
    for args in (["check"], ["format", "--check"]):
        done = subprocess.run(
            [sys.executable, "-m", "ruff", *args, "workflow", "tests", "benchmarks", "setup.py"],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr
