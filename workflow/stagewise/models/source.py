"""What a plug-in architecture's code is: the sha256 of its source files, or its installed distribution's version.

Tracked by the rules that build the model from the class (`check_compatibility`, `pretrain`), so
an edit of a plug-in module next to the config reruns them and everything after them, and
recorded in checkpoint metadata as `plugin`. Nothing here imports the plug-in: the files are
found with `importlib.util.find_spec` on the top-level name, so a module that fails to import is
reported by the check, not here.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import sys
from pathlib import Path

from ..files import sha256_file


def _owner(top: str, origin: Path) -> importlib.metadata.Distribution | None:
    """The installed distribution whose file list holds `origin` (an editable install holds none of its sources)."""
    for name in importlib.metadata.packages_distributions().get(top, []):
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        try:
            relative = origin.resolve().relative_to(Path(dist.locate_file("")).resolve()).as_posix()
        except ValueError:
            continue
        if any(str(file).replace(os.sep, "/") == relative for file in dist.files or []):
            return dist
    return None


def _package_files(locations: list[str]) -> list[tuple[str, Path]]:
    """Every .py file under a package's folders, as (path relative to its folder's parent, path), sorted."""
    files = []
    for location in locations:
        folder = Path(location)
        files += [(p.relative_to(folder.parent).as_posix(), p) for p in folder.rglob("*.py") if p.is_file()]
    return sorted(files)


def describe(architecture: str, root: str | os.PathLike | None = None) -> dict | None:
    """`{"module", "sha256"[, "files"]}` for local source, `{"module", "package", "version"}` when installed; None for
    built-ins.

    A single module's sha256 is its file's (`sha256sum` shows the same); a local package's is the
    sha256 of its .py files' relative paths and sha256s, one `path sha256` line each in sorted
    path order (`files` counts them). A module that cannot be found gives `{"module", "found": false}`:
    the check then says why it cannot be imported. Local modules are looked for in `root` (default:
    the working directory), after installed packages.
    """
    if ":" not in architecture:
        return None
    module = architecture.partition(":")[0]
    top = module.split(".")[0]
    folder = os.fspath(root) if root is not None else os.getcwd()
    if folder not in sys.path:
        sys.path.append(folder)  # as models.resolve: a module next to the config, after installed packages
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return {"module": module, "found": False}
    locations = list(spec.submodule_search_locations or [])
    origin = Path(spec.origin) if spec.origin and spec.has_location else None
    if origin is None and not locations:
        return {"module": module, "builtin": True, "version": sys.version.split()[0]}  # compiled into Python
    files = _package_files(locations)
    anchor = origin or (files[0][1] if files else None)
    dist = _owner(top, anchor) if anchor is not None else None
    if dist is not None:
        return {"module": module, "package": dist.metadata["Name"], "version": dist.version}
    if not locations:
        return {"module": module, "sha256": sha256_file(origin)}
    listing = "".join(f"{name} {sha256_file(path)}\n" for name, path in files)
    return {"module": module, "sha256": hashlib.sha256(listing.encode()).hexdigest(), "files": len(files)}


def render(plugin: dict | None) -> str:
    """One line for provenance: `plug-in my_models.py sha256 ab12…` or `plug-in package openspliceai 0.0.7`."""
    if not plugin:
        return ""
    if "package" in plugin:
        return f"plug-in package {plugin['package']} {plugin['version']} (module {plugin['module']})"
    if plugin.get("sha256"):
        what = plugin["module"].split(".")[0]
        what = (
            f"package {what} ({plugin['files']} .py files)"
            if "files" in plugin
            else f"{plugin['module'].replace('.', '/')}.py"
        )
        return f"plug-in {what} sha256 {plugin['sha256'][:12]}"
    if plugin.get("builtin"):
        return f"plug-in {plugin['module']} (built into Python {plugin['version']})"
    return f"plug-in {plugin['module']} (source not found when it was recorded)"


def status(plugin: dict, architecture: str, root: str | os.PathLike) -> str:
    """Whether the plug-in's code is still what `plugin` recorded: ok, CHANGED (how) or MISSING."""
    now = describe(architecture, root)
    if now is None or now.get("found") is False:
        return "MISSING"
    if now == plugin:
        return "ok"
    if "package" in now:
        return f"CHANGED since it was used: now {now['package']} {now['version']}"
    return f"CHANGED since it was used: now sha256 {now['sha256'][:12]}"
