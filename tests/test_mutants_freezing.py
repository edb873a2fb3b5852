"""freezing.select's branches and freezing.audit's counts and modes, asserted exactly.

Written for the mutation score of issue 21 (benchmarks/mutation.sh): mutants of these survived every fast test.
"""

from __future__ import annotations

import pytest
import torch
from stagewise import freezing
from stagewise.errors import StagewiseError
from stagewise.models import build


def _model():
    torch.manual_seed(0)
    return build("mlp", {"in_features": 6, "out_features": 3, "hidden": [8, 4], "dropout": 0.1})


def test_unfreeze_all_false_is_a_choice_the_head_only():
    model = _model()
    names = freezing.select(model, {"name": "s", "unfreeze_all": False}, [], {}, "w").names
    assert names == {"head.weight", "head.bias"}


def test_unfreeze_all_freezes_what_freeze_names_new_included():
    model = _model()
    every = {n for n, _ in model.named_parameters()}
    policy = {"name": "s", "unfreeze_all": True, "freeze": ["new"]}
    assert freezing.select(model, policy, ["head.bias"], {}, "w").names == every - {"head.bias"}
    with pytest.raises(StagewiseError) as error:
        freezing.select(model, {"name": "s", "unfreeze_all": True, "freeze": ["*"]}, [], {}, "stage x")
    assert str(error.value) == (
        "stage x: nothing trains in this stage; name something in train/unfreeze_last/unfreeze_all"
    )


def test_audit_counts_masked_entries_per_module_and_reports_modes():
    model = _model()
    masks = {"encoder.0.linear.weight": torch.zeros(8, 6, dtype=torch.bool)}
    masks["encoder.0.linear.weight"][:, 4:] = True  # 2 new columns of 8 rows
    freezing.set_trainable(model, {"encoder.0.linear.weight", "head.weight", "head.bias"})
    freezing.set_train_mode(model)
    audit = freezing.audit(model, masks)
    assert audit["modules"]["encoder.0"] == {"trainable": 16, "frozen": 8 * 6 + 8 + 8 + 8 - 16}
    assert audit["modules"]["head"] == {"trainable": 15, "frozen": 0}
    assert audit["trainable"] == 16 + 15 and audit["partial"] == {"encoder.0.linear.weight": 16}
    assert audit["modes"] == {  # a block trains in part: its dropout trains, its frozen norm does not
        "encoder.0.norm": "eval",
        "encoder.0.dropout": "train",
        "encoder.1.norm": "eval",
        "encoder.1.dropout": "eval",
    }
    model.train()
    assert set(freezing.audit(model)["modes"].values()) == {"train"}
    model.eval()
    assert set(freezing.audit(model)["modes"].values()) == {"eval"}


def test_freeze_new_and_pattern_errors_name_their_key_outside_unfreeze_all():
    model = _model()
    policy = {"name": "s", "train": ["encoder.1"], "freeze": ["new"]}
    names = freezing.select(model, policy, ["encoder.1.linear.bias"], {}, "w").names
    assert names == {n for n, _ in model.named_parameters() if n.startswith(("encoder.1.", "head."))} - {
        "encoder.1.linear.bias"
    }
    with pytest.raises(StagewiseError, match=r"^w\.freeze: 'nothing' matches no module or parameter"):
        freezing.select(model, {"name": "s", "train": ["head"], "freeze": ["nothing"]}, [], {}, "w")
    with pytest.raises(StagewiseError, match=r"^w\.train: 'nothing' matches no module or parameter"):
        freezing.select(model, {"name": "s", "train": ["nothing"]}, [], {}, "w")


def test_head_names_the_models_head_whatever_it_is_called():
    model = _model()
    model.head_name = "encoder.1"  # e.g. a plug-in model whose last block is its head
    names = freezing.select(model, {"name": "s", "train": ["head"]}, [], {}, "w").names
    assert names == {n for n, _ in model.named_parameters() if n.startswith("encoder.1.")}


def test_an_unmatched_pattern_lists_the_first_15_modules():
    torch.manual_seed(0)
    model = build("mlp", {"in_features": 2, "out_features": 2, "hidden": [2] * 5})
    modules = [n for n, _ in model.named_modules() if n]
    with pytest.raises(StagewiseError) as error:
        freezing.select(model, {"name": "s", "train": ["nothing"]}, [], {}, "w")
    assert str(error.value) == f"w.train: 'nothing' matches no module or parameter; modules are {modules[:15]}"


def test_frozen_names_are_frozen_parameters_and_the_buffers_of_wholly_frozen_modules():
    model = _model()
    freezing.set_trainable(model, {"encoder.1.linear.weight", "head.weight", "head.bias"})
    frozen = freezing.frozen_names(model)
    stats = ["running_mean", "running_var", "num_batches_tracked"]
    assert sorted(frozen) == sorted(
        [
            f"encoder.0.{m}.{p}"
            for m, p in [("linear", "weight"), ("linear", "bias"), ("norm", "weight"), ("norm", "bias")]
        ]
        + ["encoder.1.linear.bias", "encoder.1.norm.weight", "encoder.1.norm.bias"]
        + [f"encoder.0.norm.{s}" for s in stats]
        + [f"encoder.1.norm.{s}" for s in stats]
    )
