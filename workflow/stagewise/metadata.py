"""The metadata a stagewise checkpoint records with its weights: one typed record, `CheckpointMeta`.

Every field may be absent (None): a plain state_dict records nothing, a Lightning `.ckpt` only its
`hyper_parameters`, an older checkpoint fewer keys. `to_dict()` writes the keys in the order they
were read or set, as the dict this record replaces did, so a checkpoint re-saved keeps its bytes;
keys this version does not know are kept in `extra` and written back where they were.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class CheckpointMeta:
    """What a checkpoint says about its model, data and provenance (config/README.md, "Checkpoint metadata")."""

    architecture: str | None = None
    params: dict[str, Any] | None = None
    interface: dict[str, Any] | None = None
    replaced_head: dict[str, Any] | None = None
    task: str | None = None
    feature_names: list[str] | None = None
    padded_features: list[str] | None = None
    label_names: list[str] | None = None
    new_parameters: list[str] | None = None
    new_parameter_masks: dict[str, list[list[int]]] | None = None
    categories: dict[str, list[str]] | None = None
    head: dict[str, Any] | None = None
    plugin: dict[str, Any] | None = None
    config_sha256: str | None = None
    data: str | None = None
    data_sha256: str | None = None
    parent: str | None = None
    parent_sha256: str | None = None
    stage: dict[str, Any] | None = None
    label: str | None = None
    epoch: int | None = None
    format_version: int | None = None
    stagewise_version: str | None = None
    torch_version: str | None = None
    python_version: str | None = None
    hyper_parameters: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    _order: list[str] = field(default_factory=list, init=False, repr=False, compare=False)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CheckpointMeta:
        """The record of a checkpoint's metadata dict; unknown keys go to `extra`, the key order is kept."""
        known = {k: v for k, v in values.items() if k in KEYS}
        meta = cls(**known, extra={k: v for k, v in values.items() if k not in KEYS})
        meta._order = list(values)
        return meta

    def to_dict(self) -> dict[str, Any]:
        """The metadata as written into a checkpoint: the values themselves (not copies), in key order."""
        values = {**self.extra, **{key: getattr(self, key) for key in KEYS}}
        return {key: values[key] for key in self._keys()}

    def update(self, **values: Any) -> None:
        """Set fields in place, as `dict.update` would: a key set for the first time is written after the others,
        even when None (`parent: null`)."""
        unknown = sorted(set(values) - set(KEYS))
        if unknown:
            raise TypeError(f"CheckpointMeta has no field {', '.join(unknown)}")
        keys = self._keys()
        self._order = keys + [key for key in values if key not in keys]
        for key, value in values.items():
            setattr(self, key, value)

    def replace(self, **values: Any) -> CheckpointMeta:
        """A copy with fields set (`update`); the values it shares with this record are the same objects."""
        new = copy.copy(self)
        new.extra, new._order = dict(self.extra), list(self._order)
        new.update(**values)
        return new

    def _keys(self) -> list[str]:
        """The keys read or set, in that order, then any other field that holds a value, in field order."""
        return [*self._order, *(key for key in KEYS if key not in self._order and getattr(self, key) is not None)]


KEYS = tuple(f.name for f in fields(CheckpointMeta) if f.name not in ("extra", "_order"))
