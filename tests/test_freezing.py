"""Freeze policies on tiny models: what trains, what stays bitwise fixed, eval mode, the audit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from split_files import Split, batches
from stagewise import config, freezing, optim, trainer
from stagewise.errors import StagewiseError
from stagewise.models import build

BASE = {
    "data": {"target": {"train": "x"}},
    "model": {},
    "pretrained": {"checkpoint": "x"},
    "experiments": {"e": {"stages": [{"name": "s"}]}},
}


def settings(**training) -> dict:
    """The effective training config of a stage with `training` overrides (schema defaults filled)."""
    cfg = config.validate({**BASE, "training": {"epochs": 2, "batch_size": 8, "device": "cpu", **training}})
    return config.stage_config(cfg, "e", 0)["training"]


def splits(n_features: int = 6, covariates: bool = False) -> tuple[Split, Split]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, n_features)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    cov = {"batch": rng.integers(0, 2, size=64)} if covariates else {}
    cats = {"batch": ["b0", "b1"]} if covariates else {}

    def part(rows: slice) -> Split:
        return Split(
            X[rows],
            y[rows],
            [f"f{i}" for i in range(n_features)],
            ["a", "b"],
            [str(i) for i in range(64)][rows],
            {k: v[rows] for k, v in cov.items()},
            cats,
        )

    return part(slice(0, 48)), part(slice(48, 64))


def mlp(**params) -> torch.nn.Module:
    torch.manual_seed(0)
    return build("mlp", {"in_features": 6, "out_features": 2, "hidden": [8, 4], **params})


def run(model, policy: dict, new=(), masks=None, **training_cfg) -> tuple[dict, dict, trainer.Result]:
    train, val = splits(covariates=bool(getattr(model, "n_covariates", 0)))
    masks = masks or {}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    selection = freezing.select(model, policy, list(new), masks, "stage")
    categories = {"batch": ["b0", "b1"]} if getattr(model, "n_covariates", 0) else None
    result = fit(model, train, val, settings(**training_cfg), selection, categories=categories)
    return before, model.state_dict(), result


def fit(model, train: Split, val: Split, cfg: dict, selection, where: str = "stage", categories=None, **kwargs):
    """`trainer.fit` on the two splits served as a stage serves its files (training batches shuffled, seeded)."""
    served = {"categories": categories} if categories else {}
    return trainer.fit(
        model,
        batches(train, cfg["batch_size"], shuffle=True, seed=cfg["seed"], **served),
        batches(val, cfg["batch_size"], **served),
        cfg,
        selection,
        where,
        **kwargs,
    )


def test_head_stage_keeps_everything_else_bitwise_including_batchnorm_buffers():
    before, after, result = run(mlp(), {"train": ["head"]}, optimizer={"lr": 0.05, "weight_decay": 0.1})
    for name in before:
        if name.startswith("encoder."):
            assert torch.equal(before[name], after[name]), name  # running_mean/var and num_batches_tracked too
    assert not torch.equal(before["head.weight"], after["head.weight"])
    assert result.audit["modes"]["encoder.0.norm"] == "eval" and result.audit["modes"]["encoder.0.dropout"] == "eval"
    assert result.audit["modules"]["encoder.0"] == {"trainable": 0, "frozen": 8 * 6 + 8 + 16}


def test_optimizer_holds_only_the_trainable_parameters():
    model = mlp()
    selection = freezing.select(model, {"unfreeze_last": 1}, [], {}, "stage")
    freezing.set_trainable(model, selection.names)
    optimizer = optim.build_optimizer(model, selection.names, settings(), "stage")
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert held == {id(p) for n, p in model.named_parameters() if n in selection.names}
    assert selection.names == {n for n, _ in model.named_parameters() if n.startswith(("encoder.1.", "head."))}


def test_head_trains_under_unfreeze_last_unless_frozen_by_name():
    _, _after, result = run(mlp(), {"unfreeze_last": 1}, optimizer={"lr": 0.05})
    assert result.audit["modules"]["head"]["frozen"] == 0 and result.audit["modules"]["encoder.0"]["trainable"] == 0
    model = mlp()
    selection = freezing.select(model, {"unfreeze_last": 1, "freeze": ["head"]}, [], {}, "stage")
    assert not any(name.startswith("head.") for name in selection.names)


def test_unfreeze_all_globs_and_no_policy_train_everything():
    model = mlp()
    every = {n for n, _ in model.named_parameters()}
    assert freezing.select(model, {"unfreeze_all": True}, [], {}, "s").names == every
    assert freezing.select(model, {}, [], {}, "s").names == every
    globbed = freezing.select(model, {"train": ["encoder.*.norm"]}, [], {}, "s").names
    assert globbed == {n for n in every if ".norm." in n or n.startswith("head.")}


@pytest.mark.parametrize(
    "policy, message",
    [
        ({"train": ["encoder.9"]}, "stage.train: 'encoder.9' matches no module"),
        ({"train": ["new"]}, "'new' selects nothing"),
        ({"unfreeze_last": 5}, "stage.unfreeze_last: 5 but the model has 2 blocks"),
        ({"train": ["head"], "freeze": ["head"]}, "nothing trains in this stage"),
        ({"unfreeze_all": True, "freeze": ["encoder", "head"]}, "nothing trains in this stage"),
    ],
)
def test_bad_policies_are_errors_naming_the_key(policy, message):
    with pytest.raises(StagewiseError, match=message.replace("(", r"\(").replace("[", r"\[")):
        freezing.select(mlp(), policy, [], {}, "stage")


@pytest.mark.parametrize("as_tensor", [False, True])
def test_train_new_changes_only_the_new_columns_bitwise(as_tensor):
    # a Linear widened by 2 covariate columns (surgery's new categories): only those columns are new
    model = mlp(n_covariates=2)
    weight = "encoder.0.linear.weight"
    spec = torch.zeros(8, 8, dtype=torch.bool).index_fill_(1, torch.tensor([6, 7]), True) if as_tensor else [[6, 8]]
    masks = freezing.entry_masks(model, {weight: spec})
    before, after, result = run(
        model,
        {"train": ["new"], "freeze": ["head"]},
        masks=masks,
        optimizer={"lr": 0.05, "weight_decay": 0.5},
        grad_clip=1.0,
    )
    for name in before:
        if name != weight:
            assert torch.equal(before[name], after[name]), name
    assert torch.equal(before[weight][:, :6], after[weight][:, :6])
    assert not torch.equal(before[weight][:, 6:], after[weight][:, 6:])
    assert result.audit["trainable"] == 16 and result.audit["partial"] == {weight: 16}


def test_a_parameter_named_by_module_trains_whole_even_if_partly_new():
    model = mlp(n_covariates=2)
    masks = freezing.entry_masks(model, {"encoder.0.linear.weight": [[6, 8]]})
    assert freezing.select(model, {"train": ["new"]}, [], masks, "s").masks.keys() == {"encoder.0.linear.weight"}
    assert freezing.select(model, {"train": ["new", "encoder.0"]}, [], masks, "s").masks == {}


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"nope.weight": [[0, 1]]}, "'nope.weight' is not a parameter"),
        ({"head.bias": [[0, 1]]}, "rank >= 2"),
        ({"head.weight": [[2, 9]]}, r"column range \[2, 9\) outside 0..4"),
        ({"head.weight": torch.ones(3, dtype=torch.bool)}, "bool tensor of shape"),
    ],
)
def test_bad_masks_are_errors(spec, message):
    with pytest.raises(StagewiseError, match=message):
        freezing.entry_masks(mlp(), spec)


def test_frozen_modules_and_the_layers_inside_them_run_in_eval_mode():
    model = mlp()
    freezing.set_trainable(model, freezing.select(model, {"unfreeze_last": 1}, [], {}, "s").names)
    freezing.set_train_mode(model)
    assert not model.encoder[0].training and not model.encoder[0].act.training and not model.encoder[0].dropout.training
    assert model.encoder[1].norm.training and model.encoder[1].dropout.training and model.head.training
