"""Checkpoints: safe loading of every common format (never unpickling code), atomic saving, rebuilding.

A stagewise checkpoint is `{"state_dict": {name: tensor}, "stagewise": {metadata}}` holding only
tensors, strings, numbers, lists and dicts, so `torch.load(path, weights_only=True)` reads it; the
same as `.safetensors` keeps the metadata as JSON under the header's `__metadata__["stagewise"]`.
The metadata is read into and written from one record, `metadata.CheckpointMeta`.
Also read: a plain state_dict, a dict holding one under `state_dict`/`model_state_dict`/`model`,
and a Lightning `.ckpt` (its common key prefix such as `model.` stripped).

Metadata of surgery: `new_parameters` names every parameter that is wholly or partly new;
`new_parameter_masks` = `{name: [[start, stop], ...]}` gives, for a partly new one (a Linear widened
for new covariate categories), the half-open column ranges (dimension 1) that are new.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import sys
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import safetensors
import safetensors.torch
import torch
from torch import nn

from . import __version__, models
from .errors import StagewiseError
from .files import atomic_path, sha256_file
from .metadata import CheckpointMeta

FORMAT = 1
WRAPPERS = ("state_dict", "model_state_dict", "model")  # where research scripts keep the state_dict
RESAVE = "torch.save(model.state_dict(), 'model.pt')"
_OTHER_FORMATS = {
    b"\x89HDF": "an HDF5 file",
    b"\x93NUMPY": "a NumPy .npy file",
    b"\x1f\x8b": "a gzip file",
    b"PAR1": "a Parquet file",
}


@dataclass
class Checkpoint:
    """Weights and the metadata recorded with them (empty for a plain state_dict)."""

    state_dict: dict[str, torch.Tensor]
    meta: CheckpointMeta = field(default_factory=CheckpointMeta)
    origin: str = "stagewise checkpoint"


def load(path: str | Path) -> Checkpoint:
    """Load a checkpoint safely, memory-mapped where the format allows; code-bearing pickles are refused."""
    path = Path(path)
    if not path.is_file():
        raise StagewiseError(f"{path}: checkpoint file not found (pretrained.checkpoint); check the path")
    with open(path, "rb") as handle:
        head = handle.read(16)
    if _is_safetensors(head):
        return _load_safetensors(path)
    for magic, what in _OTHER_FORMATS.items():
        if head.startswith(magic):
            raise StagewiseError(
                f"{path}: wrong format: this is {what}, not a checkpoint; expected a PyTorch file "
                "(.pt/.pth/.ckpt) or .safetensors"
            )
    if not head.startswith(b"PK") and not head.startswith(b"\x80"):
        raise StagewiseError(
            f"{path}: wrong format: not a PyTorch file (.pt/.pth/.ckpt, a zip archive or pickle) "
            "nor .safetensors; point pretrained.checkpoint at the saved weights"
        )
    return _unwrap(_torch_load(path, mmap=zipfile.is_zipfile(path)), path)


def _is_safetensors(head: bytes) -> bool:
    """An 8-byte little-endian header length (safetensors caps it at 100 MB), then the JSON header."""
    return len(head) >= 9 and 0 < int.from_bytes(head[:8], "little") <= 100_000_000 and head[8:9] == b"{"


def _torch_load(path: Path, mmap: bool) -> object:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # legacy files warn about their pickle protocol
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        raise StagewiseError(
            f"{path}: refused: the file is a pickle that needs code to load (a pickled object such as a whole "
            f"nn.Module, not plain tensors), and stagewise never unpickles code. Where it was made, re-save it with "
            f"{RESAVE} (or safetensors). Detail: {_unpickling_detail(error)}"
        ) from None
    except Exception as error:  # truncated, corrupt, or a zip that is not a torch file
        raise StagewiseError(
            f"{path}: corrupt or truncated checkpoint, cannot be read ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:200]}); copy or save it again"
        ) from None


def _unpickling_detail(error: Exception) -> str:
    """The code the pickle asks for, without torch's advice to allowlist it."""
    found = re.search(r"GLOBAL ([\w.]+)|Unsupported global: (?!GLOBAL )([\w.]+)", str(error))  # torch 2.6+: both
    return f"it references {found.group(1) or found.group(2)}" if found else f"{type(error).__name__}"


def _is_state_dict(obj: object) -> bool:
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _unwrap(obj: object, path: Path) -> Checkpoint:
    """The state_dict and metadata inside whatever dict the file holds."""
    if isinstance(obj, dict) and "stagewise" in obj and _is_state_dict(obj.get("state_dict")):
        return Checkpoint(obj["state_dict"], CheckpointMeta.from_dict(obj["stagewise"]))
    if _is_state_dict(obj):
        return _strip(obj, CheckpointMeta(), "plain state_dict", ("module.",))
    if isinstance(obj, dict):
        for key in WRAPPERS:
            if _is_state_dict(obj.get(key)):
                if "pytorch-lightning_version" in obj or "hyper_parameters" in obj:
                    meta = CheckpointMeta(hyper_parameters=obj.get("hyper_parameters") or {})
                    return _strip(obj[key], meta, "Lightning checkpoint", (_common_prefix(obj[key]), "module."))
                return _strip(obj[key], CheckpointMeta(), f"state_dict under {key!r}", ("module.",))
    found = f"top-level keys {list(obj)[:10]}" if isinstance(obj, dict) else f"a {type(obj).__name__}"
    raise StagewiseError(
        f"{path}: wrong format: no state_dict found ({found}); expected a state_dict or a dict holding "
        f"one under {list(WRAPPERS)}; re-save it with {RESAVE}"
    )


def _common_prefix(state_dict: dict) -> str:
    first = {key.split(".", 1)[0] for key in state_dict}
    return f"{first.pop()}." if len(first) == 1 and all("." in key for key in state_dict) else ""


def _strip(state_dict: dict, meta: CheckpointMeta, origin: str, prefixes: tuple[str, ...]) -> Checkpoint:
    """Drop a prefix every key shares (Lightning's `model.`, DataParallel's `module.`)."""
    for prefix in prefixes:
        if prefix and all(key.startswith(prefix) for key in state_dict):
            state_dict = {key[len(prefix) :]: value for key, value in state_dict.items()}
            origin += f", prefix {prefix!r} stripped"
    return Checkpoint(state_dict, meta, origin)


def _load_safetensors(path: Path) -> Checkpoint:
    try:
        with safetensors.safe_open(path, framework="pt") as handle:
            header = handle.metadata() or {}
        state_dict = safetensors.torch.load_file(path)
        meta = json.loads(header["stagewise"]) if "stagewise" in header else {}
    except (safetensors.SafetensorError, json.JSONDecodeError, OSError) as error:
        raise StagewiseError(
            f"{path}: corrupt or truncated safetensors file ({error}); copy or save it again"
        ) from None
    origin = "stagewise safetensors" if meta else "plain safetensors"
    return Checkpoint(state_dict, CheckpointMeta.from_dict(meta), origin)


def save(path: str | Path, state_dict: dict[str, torch.Tensor], meta: CheckpointMeta) -> None:
    """Save weights and metadata atomically; a `.safetensors` path writes safetensors with the metadata as JSON."""
    meta = meta.replace(
        format_version=FORMAT,
        stagewise_version=__version__,
        torch_version=str(torch.__version__),
        python_version=sys.version.split()[0],
    ).to_dict()
    state = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        if os.fspath(path).endswith(".safetensors"):
            safetensors.torch.save_file(state, tmp, metadata={"stagewise": json.dumps(meta, sort_keys=True)})
        else:
            with open(tmp, "wb") as handle:  # a handle, not a path: the archive name must not depend on the file name
                torch.save({"state_dict": state, "stagewise": meta}, handle)


def build_model(checkpoint: Checkpoint) -> nn.Module:
    """Rebuild the model a stagewise checkpoint describes and load its weights."""
    model = models.from_meta(checkpoint.meta)
    model.load_state_dict(checkpoint.state_dict)
    return model


def lineage(path: str | Path) -> dict:
    """The provenance fields a child checkpoint records about its parent file."""
    return {"parent": str(path), "parent_sha256": sha256_file(path)}
