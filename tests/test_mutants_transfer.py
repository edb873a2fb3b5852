"""transfer (check_compatibility's tensor matching): the param that breaks a tensor's shape, named exactly.

Written for the mutation score of issue 21 (benchmarks/mutation.sh): mutants of these survived every fast test.
"""

from __future__ import annotations

import torch
from stagewise import checkpoints
from stagewise.config import derive_seed
from test_compatibility import COVARIATE_PARAMS, MODEL, errors, pretrained, run_check, write_checkpoint
from torch import nn

BROKEN = (
    "encoder.1.linear.weight, encoder.1.linear.bias, encoder.1.norm.weight, encoder.1.norm.bias, "
    "encoder.1.norm.running_mean, ... (2 more)"
)


def test_a_param_the_checkpoint_left_at_its_default_is_named_as_default(tmp_path):
    write_checkpoint(tmp_path / "ck.pt", params={"in_features": 6, "out_features": 3})  # hidden: MLP's (128, 64)
    report, start = run_check(tmp_path, model=MODEL | {"params": {"hidden": [128, 32], "dropout": 0.5}})
    assert start is None
    culprits = [c for c in report["checks"] if c["check"] == "params"]
    assert [c["message"] for c in culprits] == [
        f"model.params.hidden: 'default' in the checkpoint, [128, 32] now: changes the shape of {BROKEN}; set it back "
        "to reuse those tensors"
    ]
    assert len(culprits[0]["tensors"]) == 7 and len(errors(report)) == 8  # 7 tensors, then the culprit


def test_a_param_recorded_in_the_checkpoint_is_named_with_its_value(tmp_path):
    write_checkpoint(tmp_path / "ck.pt")  # hidden [8, 4]
    report, _ = run_check(tmp_path, model=MODEL | {"params": {"hidden": [8, 5], "batch_norm": True}})
    assert errors(report)[-1] == (
        f"model.params.hidden: [8, 4] in the checkpoint, [8, 5] now: changes the shape of {BROKEN}; set it back to "
        "reuse those tensors"
    )


def test_fresh_tensors_are_each_modules_own_seeded_init(tmp_path):
    """A replaced head and the new columns of a widened layer take `reset_parameters` of that module alone, seeded by
    derive_seed(seed, "start", module): reproducible whatever else the model holds."""
    write_checkpoint(tmp_path / "ck.pt")
    head = {"module": "head", "out_features": None}
    start = run_check(tmp_path, pretrained(head=head), labels=["odd", "even"], seed=5)[1]
    torch.manual_seed(derive_seed(5, "start", "head"))
    expected = nn.Linear(4, 2)  # its init: reset_parameters, seeded
    assert torch.equal(start.state_dict["head.weight"], expected.weight.detach())
    assert torch.equal(start.state_dict["head.bias"], expected.bias.detach())
    assert start.state_dict["head.weight"].dtype == torch.float32
    state = write_checkpoint(tmp_path / "ck.pt", COVARIATE_PARAMS, categories={"batch": ["b1", "b2"]})
    pre = pretrained(new_categories={"batch": ["b3"]})
    start = run_check(tmp_path, pre, categories={"batch": ["b3", "b1", "b2"]}, seed=5)[1]
    for layer, width in {"encoder.0.linear": 6, "encoder.1.linear": 8}.items():
        torch.manual_seed(derive_seed(5, "start", layer))
        old = state[f"{layer}.weight"]
        fresh = nn.Linear(width + 3, old.shape[0])
        assert torch.equal(start.state_dict[f"{layer}.weight"][:, width + 2], fresh.weight.detach()[:, width + 2])


def test_a_model_that_cannot_be_built_is_one_model_error(tmp_path):
    write_checkpoint(tmp_path / "ck.pt")
    report, start = run_check(tmp_path, model=MODEL | {"params": {"hidden": [8, 4], "nonsense": 1}})
    assert start is None and [c for c in report["checks"] if c["status"] == "error"] == [
        {
            "check": "model",
            "status": "error",
            "message": "model.architecture: mlp: the constructor failed (TypeError: MLP.__init__() got an unexpected "
            "keyword argument 'nonsense'); it does not accept ['nonsense']; called with ['hidden', 'in_features', "
            "'nonsense', 'out_features']",
        }
    ]


def test_covariates_of_the_checkpoint_need_covariate_layers(tmp_path):
    write_checkpoint(tmp_path / "ck.pt", COVARIATE_PARAMS, categories={"batch": ["b1", "b2"]})
    report, _ = run_check(tmp_path, model=MODEL | {"covariate_layers": []}, categories={"batch": ["b1", "b2"]})
    assert [c for c in report["checks"] if c["check"] == "categories" and c["status"] == "error"] == [
        {
            "check": "categories",
            "status": "error",
            "message": "the checkpoint's model takes covariates ['batch'] but mlp has no covariate layers; name them "
            "in model.covariate_layers",
        }
    ]


def test_a_replaced_heads_old_tensors_are_no_stray_and_counts_survive_a_failed_check(tmp_path):
    write_checkpoint(tmp_path / "ck.pt")
    head = {"module": "head", "out_features": None}
    report, _ = run_check(tmp_path, pretrained(head=head), labels=["odd", "even"])
    assert [c for c in report["checks"] if c["check"] == "tensors"] == [
        {
            "check": "tensors",
            "status": "ok",
            "message": "14 tensors matched (142 values), 0 widened, 2 new (10 values), 2 unmatched in the checkpoint "
            "(15 values)",
        }
    ]
    report, start = run_check(tmp_path, model=MODEL | {"params": {"hidden": [8, 5]}})
    assert start is None and report["parameters"]["reused"] == 93 and report["parameters"]["new"] == 0


def test_reused_tensors_take_the_models_dtype(tmp_path):
    state = write_checkpoint(tmp_path / "ck.pt")
    doubled = {k: v.double() if v.is_floating_point() else v for k, v in state.items()}
    checkpoints.save(tmp_path / "ck.pt", doubled, checkpoints.load(tmp_path / "ck.pt").meta)
    _, start = run_check(tmp_path)
    assert start.state_dict["head.weight"].dtype == torch.float32
    assert torch.equal(start.state_dict["head.weight"], state["head.weight"])


def _tensor_checks(report: dict) -> list[dict]:
    return [c for c in report["checks"] if c["check"] in ("tensors", "params")]


def test_missing_and_stray_tensors_are_named(tmp_path):
    write_checkpoint(tmp_path / "ck.pt", rename=lambda k: k.replace("encoder.1.norm", "extra.norm"))
    report, _ = run_check(tmp_path)
    names = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert _tensor_checks(report) == [
        {
            "check": "tensors",
            "status": "error",
            "message": "5 tensors of the new model have no counterpart in the checkpoint: encoder.1.norm.weight (4,), "
            "encoder.1.norm.bias (4,), encoder.1.norm.running_mean (4,), encoder.1.norm.running_var (4,), "
            "encoder.1.norm.num_batches_tracked (); map their modules with pretrained.match {checkpoint name: model "
            "name} or replace the final layer with pretrained.head (is this checkpoint for this architecture?)",
            "tensors": [f"encoder.1.norm.{n}" for n in names],
        },
        {
            "check": "tensors",
            "status": "warning",
            "message": "11 tensors matched (140 values), 0 widened, 0 new (0 values), 5 unmatched in the checkpoint "
            "(17 values): " + ", ".join(f"extra.norm.{n}" for n in names) + " not used by the new model",
        },
    ]


def test_a_shape_mismatch_names_module_tensor_and_shapes(tmp_path):
    write_checkpoint(tmp_path / "ck.pt")
    report, _ = run_check(tmp_path, model=MODEL | {"params": {"hidden": [8, 5]}})
    assert _tensor_checks(report)[0] == {
        "check": "tensors",
        "status": "error",
        "message": "module 'encoder.1.linear', tensor encoder.1.linear.weight: checkpoint shape (4, 8), new model "
        "shape (5, 8)",
        "tensor": "encoder.1.linear.weight",
    }
    write_checkpoint(tmp_path / "ck.pt", plain=True)
    (tmp_path / "features.txt").write_text("\n".join(f"g{i}" for i in range(6)) + "\n")
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    files = {"feature_names": str(tmp_path / "features.txt"), "label_names": str(tmp_path / "labels.txt")}
    report, _ = run_check(tmp_path, pretrained(**files), model=MODEL | {"params": {"hidden": [8, 5]}})
    assert [c for c in report["checks"] if c["check"] == "params"] == [
        {
            "check": "params",
            "status": "error",
            "message": "7 tensors differ in shape and the checkpoint records no model params: set model.params to the "
            "ones it was trained with",
        }
    ]


def test_widened_tensors_are_counted(tmp_path):
    write_checkpoint(tmp_path / "ck.pt", COVARIATE_PARAMS, categories={"batch": ["b1", "b2"]})
    pre = pretrained(new_categories={"batch": ["b3"]})
    report, _ = run_check(tmp_path, pre, categories={"batch": ["b3", "b1", "b2"]})
    assert report["parameters"]["widened"] == 104
    assert report["parameters"]["tensors"]["widened"] == ["encoder.0.linear.weight", "encoder.1.linear.weight"]
    assert [c["message"] for c in _tensor_checks(report)] == [
        "14 tensors matched (77 values), 2 widened, 0 new (0 values), 0 unmatched in the checkpoint (0 values)"
    ]


def test_pretrained_match_renames_or_names_what_it_cannot_find(tmp_path):
    write_checkpoint(tmp_path / "ck.pt", rename=lambda k: k.replace("encoder.", "enc."))
    report, start = run_check(tmp_path, pretrained(match={"enc": "encoder"}))
    assert start is not None and [c for c in report["checks"] if c["check"] == "match"] == [
        {"check": "match", "status": "ok", "message": "checkpoint modules renamed: {'enc': 'encoder'}"}
    ]
    report, _ = run_check(tmp_path, pretrained(match={"nothing": "nowhere"}))
    assert [c for c in report["checks"] if c["check"] == "match"] == [
        {
            "check": "match",
            "status": "error",
            "message": "pretrained.match: 'nothing' is not a module of the checkpoint; its modules: enc.0.linear, "
            "enc.0.norm, enc.1.linear, enc.1.norm, head",
        },
        {
            "check": "match",
            "status": "error",
            "message": "pretrained.match: 'nothing' -> 'nowhere': the model has no module 'nowhere'; its modules: "
            "encoder, encoder.0, encoder.0.linear, encoder.0.norm, encoder.0.act, ... (7 more)",
        },
    ]


def test_tensors_of_another_kind_or_not_finite_are_refused(tmp_path):
    state = write_checkpoint(tmp_path / "ck.pt")
    state["head.weight"] = state["head.weight"].to(torch.int64)
    state["encoder.0.linear.bias"] = torch.full_like(state["encoder.0.linear.bias"], float("nan"))
    checkpoints.save(tmp_path / "ck.pt", state, checkpoints.load(tmp_path / "ck.pt").meta)
    report, start = run_check(tmp_path)
    assert start is None and [c for c in report["checks"] if c["status"] == "error"] == [
        {
            "check": "tensors",
            "status": "error",
            "message": "1 checkpoint tensors have another kind of dtype than the model's: head.weight torch.int64 "
            "(model: torch.float32); is this checkpoint for this architecture?",
            "tensors": ["head.weight"],
        },
        {
            "check": "tensors",
            "status": "error",
            "message": "1 checkpoint tensors hold NaN or inf values: encoder.0.linear.bias; the checkpoint comes from "
            "a diverged or corrupted training run: use an earlier one",
            "tensors": ["encoder.0.linear.bias"],
        },
    ]
