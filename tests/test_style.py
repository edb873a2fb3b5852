"""The workflow stays in the shape the Snakemake catalog expects: snakefmt-formatted and lint-clean."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_snakefmt_leaves_the_snakefile_and_rules_unchanged():
    done = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow/rules"], cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_snakemake_lint_is_clean_on_the_embedded_example(tmp_path):
    done = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--lint", "--cores", "1",
                           "--configfile", str(REPO / "config/config.yaml"), "--directory", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0 and "Congratulations" in done.stdout + done.stderr, done.stdout + done.stderr
