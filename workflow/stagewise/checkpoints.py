"""Checkpoints: safe loading (never unpickling code), atomic saving, and model rebuilding.

A stagewise checkpoint is `{"state_dict": {name: tensor}, "stagewise": {metadata}}` holding only
tensors, strings, numbers, lists and dicts, so `torch.load(path, weights_only=True)` reads it.
"""

from __future__ import annotations

import pickle
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import __version__, models
from .errors import StagewiseError
from .files import atomic_path, sha256_file

FORMAT = 1


@dataclass
class Checkpoint:
    """Weights and the metadata recorded with them (empty for a plain state_dict)."""

    state_dict: dict[str, torch.Tensor]
    meta: dict = field(default_factory=dict)


def load(path: str | Path) -> Checkpoint:
    """Load a checkpoint safely; a file that needs code to unpickle is refused, never run."""
    path = Path(path)
    if not path.is_file():
        raise StagewiseError(f"{path}: checkpoint file not found (pretrained.checkpoint)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise StagewiseError(
            f"{path}: refused: the file needs code to load (a pickled object, not plain tensors), and "
            "stagewise never unpickles code. Re-save it where it was made with "
            "torch.save(model.state_dict(), 'model.pt'). Detail: " + _unpickling_detail(error)
        ) from None
    except Exception as error:  # truncated or not a torch file at all
        raise StagewiseError(f"{path}: cannot read as a PyTorch checkpoint ({type(error).__name__}: {error})") from None
    if isinstance(obj, dict) and "stagewise" in obj:
        return Checkpoint(obj["state_dict"], obj["stagewise"])
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return Checkpoint(obj)
    raise StagewiseError(f"{path}: not a state_dict or stagewise checkpoint (top-level keys: {list(obj)[:10] if isinstance(obj, dict) else type(obj).__name__})")


def _unpickling_detail(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines()]
    return next((line for line in lines if "Unsupported" in line), lines[0] if lines else "")


def save(path: str | Path, state_dict: dict[str, torch.Tensor], meta: dict) -> None:
    """Save weights and metadata atomically."""
    meta = {**meta, "format_version": FORMAT, "stagewise_version": __version__, "torch_version": str(torch.__version__),
            "python_version": sys.version.split()[0]}
    state = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        torch.save({"state_dict": state, "stagewise": meta}, tmp)


def build_model(checkpoint: Checkpoint) -> nn.Module:
    """Rebuild the model a stagewise checkpoint describes and load its weights."""
    meta = checkpoint.meta
    model = models.build(meta["architecture"], meta["params"])
    model.load_state_dict(checkpoint.state_dict)
    return model


def lineage(path: str | Path) -> dict:
    """The provenance fields a child checkpoint records about its parent file."""
    return {"parent": str(path), "parent_sha256": sha256_file(path)}
