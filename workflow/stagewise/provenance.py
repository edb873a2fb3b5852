"""The chain from a model back to the pretrained checkpoint and the data, with changed links flagged."""

from __future__ import annotations

from pathlib import Path

from . import checkpoints
from .errors import StagewiseError
from .files import sha256_file
from .models import source


def _workdir(path: Path) -> Path:
    """The folder the workflow ran in: recorded paths are relative to it."""
    return next((p.parent for p in path.resolve().parents if p.name == "results"), Path.cwd())


def _status(path: Path, recorded: str | None) -> str:
    if recorded is None:
        return "not recorded"
    if not path.is_file():
        return "MISSING"
    return "ok" if sha256_file(path) == recorded else "CHANGED since it was used"


def chain(path: str | Path) -> list[dict]:
    """One entry per checkpoint from `path` back to the first one, each with its data and parent link."""
    path = Path(path)
    root = _workdir(path)
    links, seen, shown = [], set(), str(path)
    while path is not None:
        if path.resolve() in seen:
            raise StagewiseError(f"{path}: provenance loops back to itself")
        seen.add(path.resolve())
        meta = checkpoints.load(path).meta
        link = {
            "path": shown,
            "sha256": sha256_file(path),
            "label": meta.label or "",
            "config_sha256": meta.config_sha256,
            "versions": {"stagewise_version": meta.stagewise_version, "torch_version": meta.torch_version},
            "plugin": meta.plugin,
        }
        if link["plugin"] and "module" in link["plugin"] and meta.architecture:
            link["plugin_status"] = source.status(link["plugin"], meta.architecture, root)
        if meta.data:
            link["data"] = meta.data
            link["data_status"] = _status(root / meta.data, meta.data_sha256)
        parent = meta.parent
        if parent:
            parent_path = Path(parent) if Path(parent).is_absolute() else root / parent
            link["parent"] = parent
            link["parent_status"] = _status(parent_path, meta.parent_sha256)
            if parent_path.is_file() and Path(parent_path).suffix in {".pt", ".pth", ".ckpt", ".safetensors"}:
                try:
                    checkpoints.load(parent_path)
                    path, shown = parent_path, parent
                except StagewiseError:
                    path = None  # a foreign checkpoint: the chain ends here
            else:
                path = None
        else:
            path = None
        links.append(link)
    return links


def render(links: list[dict]) -> str:
    """The chain as text, newest first; a changed or missing link is flagged."""
    lines = []
    for depth, link in enumerate(links):
        pad = "  " * depth
        lines.append(f"{pad}{link['path']}  [{link['label'] or 'checkpoint'}] sha256 {link['sha256'][:12]}")
        if link.get("config_sha256"):
            lines.append(
                f"{pad}  config sha256 {link['config_sha256'][:12]}, stagewise "
                f"{link['versions']['stagewise_version']}, torch {link['versions']['torch_version']}"
            )
        if link.get("plugin"):
            lines.append(f"{pad}  {source.render(link['plugin'])}: {link.get('plugin_status', 'not checked')}")
        if "data" in link:
            lines.append(f"{pad}  trained on {link['data']}: {link['data_status']}")
        if "parent" in link:
            lines.append(f"{pad}  parent {link['parent']}: {link['parent_status']}")
    return "\n".join(lines) + "\n"


def changed(links: list[dict]) -> bool:
    """Whether any link's file differs from what was recorded."""
    return any(
        link.get(k, "ok") not in ("ok", "not recorded")
        for link in links
        for k in ("data_status", "parent_status", "plugin_status")
    )
