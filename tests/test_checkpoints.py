"""Checkpoint formats: every one a user brings is read safely; code-bearing pickles are refused and never run."""

from __future__ import annotations

import contextlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from stagewise import checkpoints
from stagewise.errors import StagewiseError
from stagewise.metadata import CheckpointMeta
from stagewise.models.mlp import MLP
from torch import nn

META = CheckpointMeta(
    architecture="mlp",
    params={"in_features": 4, "out_features": 2, "hidden": [3]},
    feature_names=list("abcd"),
    label_names=["x", "y"],
    categories={"batch": ["b1", "b2"]},
)


@pytest.fixture
def model() -> MLP:
    torch.manual_seed(0)
    return MLP(4, 2, hidden=[3])


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class Payload:
    """What an attacker pickles: unpickling it runs `touch MARKER`."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("name", ["model.pt", "model.safetensors"])
def test_stagewise_checkpoint_round_trips_with_its_metadata(tmp_path, model, name):
    checkpoints.save(tmp_path / name, model.state_dict(), META)
    loaded = checkpoints.load(tmp_path / name)
    assert same(loaded.state_dict, model.state_dict())
    assert loaded.meta.to_dict().items() >= META.to_dict().items()
    assert loaded.meta.format_version == checkpoints.FORMAT
    assert checkpoints.build_model(loaded)(torch.ones(2, 4)).shape == (2, 2)


def test_metadata_keeps_its_key_order_nulls_and_unknown_keys():
    recorded = {"label": "start", "parent": None, "from_a_newer_version": [1], "architecture": "mlp"}
    meta = CheckpointMeta.from_dict(recorded)
    assert list(meta.to_dict().items()) == list(recorded.items()) and meta.extra == {"from_a_newer_version": [1]}
    child = meta.replace(epoch=3, parent="p.pt")
    assert list(child.to_dict()) == [*recorded, "epoch"] and child.parent == "p.pt" and meta.parent is None
    built = CheckpointMeta(task="regression", architecture="mlp")  # set by the constructor: field order
    built.update(parent=None)  # set later: after the others, even when None
    assert list(built.to_dict().items()) == [("architecture", "mlp"), ("task", "regression"), ("parent", None)]
    with pytest.raises(TypeError, match="no field colour"):
        built.update(colour="red")


@pytest.mark.parametrize("name", ["model.pt", "model.safetensors"])
def test_a_checkpoint_saved_again_keeps_its_bytes(tmp_path, model, name):
    checkpoints.save(tmp_path / name, model.state_dict(), META.replace(parent=None, stage={"epochs": 2}))
    loaded = checkpoints.load(tmp_path / name)
    checkpoints.save(tmp_path / f"again_{name}", loaded.state_dict, loaded.meta)
    assert (tmp_path / name).read_bytes() == (tmp_path / f"again_{name}").read_bytes()


def test_safetensors_keeps_the_metadata_in_its_header(tmp_path, model):
    import safetensors

    checkpoints.save(tmp_path / "m.safetensors", model.state_dict(), META)
    with safetensors.safe_open(tmp_path / "m.safetensors", framework="pt") as handle:
        assert '"label_names": ["x", "y"]' in handle.metadata()["stagewise"]


@pytest.mark.parametrize("name", ["plain.pt", "plain.pth"])
def test_plain_state_dict(tmp_path, model, name):
    torch.save(model.state_dict(), tmp_path / name)
    loaded = checkpoints.load(tmp_path / name)
    assert same(loaded.state_dict, model.state_dict()) and loaded.meta == CheckpointMeta()
    assert loaded.origin == "plain state_dict"


@pytest.mark.parametrize("key", checkpoints.WRAPPERS)
def test_state_dict_inside_a_training_script_dict(tmp_path, model, key):
    torch.save(
        {key: model.state_dict(), "epoch": 7, "optimizer_state_dict": {"state": {}, "param_groups": []}},
        tmp_path / "m.pt",
    )
    loaded = checkpoints.load(tmp_path / "m.pt")
    assert same(loaded.state_dict, model.state_dict()) and key in loaded.origin


def test_lightning_ckpt_prefix_stripped_and_hyper_parameters_kept(tmp_path, model):
    lightning = {
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "pytorch-lightning_version": "2.4.0",
        "hyper_parameters": {"hidden": [3], "lr": 0.01},
        "epoch": 3,
        "global_step": 30,
    }
    torch.save(lightning, tmp_path / "last.ckpt")
    loaded = checkpoints.load(tmp_path / "last.ckpt")
    assert same(loaded.state_dict, model.state_dict())
    assert loaded.meta.to_dict() == {"hyper_parameters": {"hidden": [3], "lr": 0.01}}
    assert "'model.' stripped" in loaded.origin


def test_dataparallel_module_prefix_stripped(tmp_path, model):
    torch.save(nn.DataParallel(model).state_dict(), tmp_path / "dp.pt")
    assert same(checkpoints.load(tmp_path / "dp.pt").state_dict, model.state_dict())


def test_legacy_non_zip_torch_file(tmp_path, model):
    torch.save(model.state_dict(), tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    assert same(checkpoints.load(tmp_path / "old.pt").state_dict, model.state_dict())


def test_zip_checkpoints_are_memory_mapped(tmp_path, model):
    checkpoints.save(tmp_path / "m.pt", model.state_dict(), META)
    loaded = checkpoints.load(tmp_path / "m.pt")
    assert str(tmp_path / "m.pt") in Path("/proc/self/maps").read_text()  # mapped, not read into memory
    assert same(loaded.state_dict, model.state_dict())


def test_whole_pickled_module_is_refused_with_how_to_resave(tmp_path, model):
    torch.save(model, tmp_path / "whole.pt")
    with pytest.raises(StagewiseError) as error:
        checkpoints.load(tmp_path / "whole.pt")
    message = str(error.value)
    assert "whole.pt" in message and "never unpickles code" in message and "torch.save(model.state_dict()" in message


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_malicious_pickle_is_refused_and_its_payload_never_runs(tmp_path, writer):
    marker = tmp_path / "payload_ran"
    path = tmp_path / "evil.pt"
    if writer == "torch.save":
        torch.save({"state_dict": {"w": torch.zeros(1)}, "extra": Payload(str(marker))}, path)
    else:
        path.write_bytes(pickle.dumps(Payload(str(marker))))
    with pytest.raises(StagewiseError, match="refused") as error:
        checkpoints.load(path)
    assert not marker.exists()
    assert "safe_globals" not in str(error.value) and "allowlist" not in str(
        error.value
    )  # never taught to trust the payload
    pickle.loads(pickle.dumps(Payload(str(marker))))  # the payload is live: plain unpickling runs it
    assert marker.exists()


@pytest.mark.parametrize("name", ["m.pt", "m.safetensors"])
def test_truncated_file_is_reported_as_corrupt(tmp_path, model, name):
    checkpoints.save(tmp_path / name, model.state_dict(), META)
    data = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(StagewiseError, match=rf"{name}: corrupt or truncated .* again"):
        checkpoints.load(tmp_path / name)


def test_wrong_formats_are_named(tmp_path):
    (tmp_path / "notes.pt").write_text("these are not weights\n")
    np.save(tmp_path / "array.npy", np.zeros(3))
    import h5py

    with h5py.File(tmp_path / "data.h5", "w") as h5:
        h5["X"] = np.zeros(3)
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    torch.save({"weights": 1, "epoch": 2}, tmp_path / "nodict.pt")
    for name, what in [
        ("notes.pt", "not a PyTorch file"),
        ("array.npy", "NumPy"),
        ("data.h5", "HDF5"),
        ("list.pt", "no state_dict found .a list"),
        ("nodict.pt", r"top-level keys \['weights', 'epoch'\]"),
    ]:
        with pytest.raises(StagewiseError, match=rf"{name}: wrong format.*{what}"):
            checkpoints.load(tmp_path / name)


def test_missing_file(tmp_path):
    with pytest.raises(StagewiseError, match=r"nope.pt: checkpoint file not found \(pretrained.checkpoint\)"):
        checkpoints.load(tmp_path / "nope.pt")


@pytest.mark.parametrize("name", ["m.pt", "m.safetensors"])
def test_save_is_atomic_and_leaves_no_temporary(tmp_path, model, monkeypatch, name):
    checkpoints.save(tmp_path / name, model.state_dict(), META)

    def fails_midway(_obj, target, *args, **kwargs):  # a write that dies half-way (full disk, a kill)
        with open(target, "wb") if isinstance(target, (str, os.PathLike)) else contextlib.nullcontext(target) as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints.torch, "save", fails_midway)
    monkeypatch.setattr(checkpoints.safetensors.torch, "save_file", fails_midway)
    with pytest.raises(OSError, match="disk full"):
        checkpoints.save(tmp_path / name, {k: v + 1 for k, v in model.state_dict().items()}, META)
    monkeypatch.undo()
    assert same(checkpoints.load(tmp_path / name).state_dict, model.state_dict())  # the old file, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
