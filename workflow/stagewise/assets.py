"""Where the workflow's files are: the Snakefile, rules, schema, scripts, report captions, envs, profiles and examples.

A clone (and `pip install -e .`) uses the repository's own files; a wheel carries the same files
under `stagewise/_workflow/`, copied from the repository when the wheel is built (setup.py), so
the repository stays their one source.
"""

from __future__ import annotations

from pathlib import Path

SHIPPED = (
    "Snakefile",
    "workflow/rules",
    "workflow/scripts",
    "workflow/schemas",
    "workflow/report",
    "envs",
    "profiles",
    "config",
    ".snakemake-workflow-catalog.yml",
)
_PACKAGED = Path(__file__).resolve().parent / "_workflow"
ROOT = _PACKAGED if _PACKAGED.is_dir() else Path(__file__).resolve().parents[2]

SNAKEFILE = ROOT / "Snakefile"
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
PROFILES = ROOT / "profiles"
EXAMPLES = ROOT / "config" / "examples"
EXAMPLE_CONFIG = ROOT / "config" / "config.yaml"
