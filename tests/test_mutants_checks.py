"""What `stagewise check` finds before a run (steps.stage.validate), checkpoint loading's origins and refusals, and
surgery's widening, asserted exactly.

Written for the mutation score of issue 21 (benchmarks/mutation.sh): mutants of these survived every fast test.
"""

from __future__ import annotations

import copy
import pathlib

import pytest
import safetensors.torch
import torch
from conftest import TINY
from stagewise import checkpoints, surgery
from stagewise import config as sw_config
from stagewise.errors import StagewiseError
from stagewise.io import hdf5
from stagewise.steps import pretrain
from stagewise.steps import stage as sw_stage

NORMS = "(encoder.0.norm, encoder.1.norm, encoder.2.norm)"  # the first 3 of the 4 BatchNorm layers


def _config(**training) -> dict:
    config = copy.deepcopy(TINY)
    config["model"]["params"]["hidden"] = [8, 8, 8, 8]
    config["training"] |= training
    return config


def _start(config: dict, **meta) -> checkpoints.Checkpoint:
    layout = hdf5.Layout([f"f{i}" for i in range(6)], ["no", "yes"], (6,))
    source = pretrain.source_model(layout, sw_config.validate(config)["model"])
    return checkpoints.Checkpoint({}, source.replace(**meta) if meta else source)


def _validate(config: dict, start: checkpoints.Checkpoint | None = None, pretraining: bool = False) -> list[str]:
    return sw_stage.validate(start or _start(config), sw_config.validate(config), pretraining)


def test_validate_finds_nothing_in_a_sound_config():
    assert _validate(_config()) == []
    assert _validate(_config(batch_size=2)) == []  # two samples per batch are enough for BatchNorm
    assert _validate(_config(scheduler={"name": "OneCycleLR"})) == []


def test_validate_names_a_stage_whose_batchnorm_layers_would_train_on_one_sample():
    # stage 1 trains only the head (no BatchNorm): only stage 2 (all) has the problem
    assert _validate(_config(batch_size=1)) == [
        f"experiments.gradual.stages[1] (all).batch_size: 1 sample per batch (and process) while BatchNorm layers "
        f"train {NORMS}: batch statistics need two samples or more; raise batch_size or freeze those modules"
    ]


def test_validate_checks_the_pretrain_stage_instead_when_pretraining():
    config = _config()
    config["pretrained"]["training"]["optimizer"] = {"name": "SGD", "lr": 0.1, "momentum": -1}
    message = "pretrained.training.optimizer: SGD rejects {'lr': 0.1, 'momentum': -1}: Invalid momentum value: -1"
    assert _validate(config, pretraining=True) == [message]
    assert _validate(config) == []  # the experiments' stages do not use pretrained.training
    config["pretrained"]["training"] = {"loss": "nb"}
    assert _validate(config, pretraining=True) == [
        f"pretrained.training.loss.name: 'nb' does not fit model.task 'classification'; use one of {_losses()} or auto"
    ]


def _losses() -> list[str]:
    from stagewise import tasks

    return list(tasks.get("classification").losses)


def test_validate_names_a_loss_that_does_not_fit_the_task():
    config = _config()
    config["experiments"]["fixed"]["stages"][0]["loss"] = "zinb"
    assert _validate(config) == [
        f"experiments.fixed.stages[0] (head).loss.name: 'zinb' does not fit model.task 'classification'; use one of "
        f"{_losses()} or auto"
    ]


def test_validate_reports_too_few_samples_for_the_processes_after_each_stage():
    problems = _validate(_config(devices=4, batch_size=2))
    too_small = (
        "{}.batch_size: 2 is smaller than the stage's 4 processes (devices 4 × nodes 1); batch_size is the global "
        "batch, split across the processes: raise it to at least the number of processes"
    )
    assert problems == [
        too_small.format("experiments.gradual.stages[0] (head)"),
        f"experiments.gradual.stages[1] (all).batch_size: 0 sample per batch (and process) while BatchNorm layers "
        f"train {NORMS}: batch statistics need two samples or more; raise batch_size or freeze those modules",
        too_small.format("experiments.gradual.stages[1] (all)"),
        too_small.format("experiments.fixed.stages[0] (head)"),
    ]


def test_validate_reads_the_new_parameters_and_masks_of_the_start_checkpoint():
    config = _config()
    config["experiments"] = {"n": {"stages": [{"name": "new", "train": ["new"]}]}}
    assert _validate(config) == [
        "experiments.n.stages[0] (new).train: 'new' selects nothing: no parameter was created by head replacement or "
        "surgery"
    ]
    assert _validate(config, _start(config, new_parameters=["encoder.1.linear.bias"])) == []
    masked = _start(config, new_parameter_masks={"encoder.0.linear.weight": [[4, 6]]})
    assert _validate(config, masked) == []
    with pytest.raises(StagewiseError) as error:
        _validate(config, _start(config, new_parameter_masks={"missing.weight": [[0, 1]]}))
    assert str(error.value) == "new_parameter_masks: 'missing.weight' is not a parameter of the model"


def test_safetensors_origin_says_whether_stagewise_wrote_it(tmp_path):
    plain = tmp_path / "plain.safetensors"
    safetensors.torch.save_file({"w": torch.ones(2)}, plain)
    loaded = checkpoints.load(plain)
    assert loaded.origin == "plain safetensors" and loaded.meta.to_dict() == {}
    assert torch.equal(loaded.state_dict["w"], torch.ones(2))
    ours = tmp_path / "ours.safetensors"
    checkpoints.save(ours, {"w": torch.ones(2)}, _start(_config()).meta)
    loaded = checkpoints.load(ours)
    assert loaded.origin == "stagewise safetensors" and loaded.meta.architecture == "mlp"


def test_a_pickle_that_needs_code_is_refused_naming_what_it_references(tmp_path):
    path = tmp_path / "object.pt"
    torch.save({"w": torch.zeros(1), "where": pathlib.PurePosixPath("a")}, path)
    with pytest.raises(StagewiseError) as error:
        checkpoints.load(path)
    assert str(error.value) == (
        f"{path}: refused: the file is a pickle that needs code to load (a pickled object such as a whole nn.Module, "
        "not plain tensors), and stagewise never unpickles code. Where it was made, re-save it with "
        "torch.save(model.state_dict(), 'model.pt') (or safetensors). Detail: it references pathlib.PurePosixPath"
    )
    path.write_bytes(b"\x80\x02\x8c\x01a\x94\x93.")  # a pickle torch refuses without naming a global
    with pytest.raises(StagewiseError) as error:
        checkpoints.load(path)
    assert str(error.value).endswith("(or safetensors). Detail: UnpicklingError")


def test_widen_keeps_the_old_dtype_and_returns_only_the_grown_blocks():
    old = torch.arange(2 * 7, dtype=torch.float64).reshape(2, 7)  # 2 features, covariates of 2 and 3 categories
    fresh = torch.full((2, 8), -1.0)  # the second covariate grows to 4
    out, ranges = surgery.widen(old, fresh, [2, 3], [2, 4])
    assert out.dtype == torch.float64 and ranges == [[7, 8]]
    assert out[:, :7].tolist() == old.tolist() and out[:, 7].tolist() == [-1.0, -1.0]
    out, ranges = surgery.widen(old, torch.zeros(2, 9), [2, 3], [3, 4])
    assert ranges == [[4, 5], [8, 9]]
    assert out[:, 5:8].tolist() == old[:, 4:7].tolist()


def test_the_origin_names_the_format_and_every_prefix_stripped(tmp_path):
    weights = {"layer.weight": torch.ones(2, 2), "layer.bias": torch.zeros(2)}
    cases = {
        "plain.pt": ({f"module.{k}": v for k, v in weights.items()}, "plain state_dict, prefix 'module.' stripped"),
        "wrapped.pt": ({"model_state_dict": weights}, "state_dict under 'model_state_dict'"),
        "lightning.ckpt": (
            {"state_dict": {f"net.module.{k}": v for k, v in weights.items()}, "pytorch-lightning_version": "2"},
            "Lightning checkpoint, prefix 'net.' stripped, prefix 'module.' stripped",
        ),
    }
    for name, (content, origin) in cases.items():
        torch.save(content, tmp_path / name)
        loaded = checkpoints.load(tmp_path / name)
        assert loaded.origin == origin and loaded.state_dict.keys() == weights.keys()
