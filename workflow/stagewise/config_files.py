"""The files and folders a validated config names, and the check that they exist."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import StagewiseError

if TYPE_CHECKING:
    from .config_yaml import Lines


def named_files(config: dict) -> list[tuple[list, str]]:
    """(key path, path) of every file or folder a validated config names (built-in data like sklearn:digits
    excluded)."""
    named = [
        (["data", name, split], spec[split])
        for name, spec in config["data"].items()
        for split in ("train", "test")
        if spec.get(split) and ":" not in spec[split]
    ]
    named += [
        (["data", name, "genome", "annotation"], spec["genome"]["annotation"])
        for name, spec in config["data"].items()
        if isinstance(spec.get("genome"), dict)
    ]
    named += [
        (["pretrained", key], config["pretrained"][key])
        for key in ("checkpoint", "feature_names", "label_names")
        if config["pretrained"].get(key)
    ]
    return named


def check_files(
    config: dict, source: str = "config", lines: Lines | None = None, made: Callable[[str], bool] = lambda _: False
) -> None:
    """Raise naming every key whose file (or, for data, folder) does not exist, relative to the working directory,
    and that no rule `made` (a rule of the user's own Snakefile, with stagewise as a module)."""
    missing = []
    for key, name in named_files(config):
        path = Path(name)
        if path.is_file() or (key[0] == "data" and path.is_dir()) or made(name):
            continue
        line = lines.line(key) if lines else None
        what = "a folder, not a file" if path.is_dir() else "not found"
        missing.append(f"  {f'line {line}: ' if line else ''}{'.'.join(key)}: {name}: {what}")
    if missing:
        raise StagewiseError(
            "\n".join(
                [f"{source}: files the config names do not exist (paths are relative to {Path.cwd()}):", *missing]
            )
        )
