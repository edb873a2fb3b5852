"""The training loop, optimizers, schedules and losses on tiny models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from split_files import batches
from stagewise import freezing, losses, optim, trainer
from stagewise.errors import StagewiseError
from test_freezing import fit, mlp, run, settings, splits


def lrs(spec: dict, epochs: int = 3, batches: int = 4, lr: float = 1.0) -> list[float]:
    """The lr each optimizer step used under `spec`, for `epochs` × `batches` steps."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    optimizer.param_groups[0]["lr_scale"] = 1.0
    schedule = optim.Schedule(optimizer, spec, epochs, batches, "training")
    used = []
    for epoch in range(epochs):
        for batch in range(batches):
            schedule.step(epoch, batch)
            used.append(schedule.lr)
        schedule.end_epoch()
    return used


def test_multistep_steps_per_epoch():
    assert lrs({"name": "MultiStepLR", "milestones": [1, 2], "gamma": 0.1}) == pytest.approx(
        [1.0] * 4 + [0.1] * 4 + [0.01] * 4
    )


def test_cosine_restarts_step_per_epoch_or_fractionally_per_batch():
    per_epoch = lrs({"name": "CosineAnnealingWarmRestarts", "T_0": 2})
    assert per_epoch == pytest.approx([1.0] * 4 + [0.5] * 4 + [1.0] * 4)
    per_batch = lrs({"name": "CosineAnnealingWarmRestarts", "T_0": 2, "interval": "batch"})
    expected = [0.5 * (1 + math.cos(math.pi * ((step / 4) % 2) / 2)) for step in range(12)]
    assert per_batch == pytest.approx(expected)


def test_one_cycle_steps_per_batch_up_then_down():
    used = lrs({"name": "OneCycleLR"}, epochs=5, batches=4)
    peak = int(np.argmax(used))
    assert len(used) == 20 and used[peak] == pytest.approx(1.0) and 4 <= peak <= 7  # pct_start 0.3
    assert used[0] == pytest.approx(1.0 / 25) and used[-1] < 1e-4


def test_linear_warmup_then_the_schedule():
    used = lrs({"name": "none", "warmup_epochs": 1})
    assert used == pytest.approx([0.25, 0.5, 0.75] + [1.0] * 9)
    stepped = lrs({"name": "MultiStepLR", "milestones": [1], "gamma": 0.5, "warmup_epochs": 0.5})
    assert stepped == pytest.approx([0.5, 1.0, 1.0, 1.0] + [0.5] * 8)


def test_lr_groups_most_specific_glob_wins_and_layer_decay_counts_from_the_head():
    model = mlp()
    names = {n for n, _ in model.named_parameters()}
    scales = optim.lr_scales(model, names, {"encoder.*": 0.1, "encoder.0.norm": 0.01}, None, "training")
    assert (
        scales["encoder.1.linear.weight"] == 0.1
        and scales["encoder.0.norm.bias"] == 0.01
        and scales["head.bias"] == 1.0
    )
    decayed = optim.lr_scales(model, names, {}, 0.5, "training")
    assert (decayed["head.weight"], decayed["encoder.1.linear.weight"], decayed["encoder.0.norm.weight"]) == (
        1.0,
        0.5,
        0.25,
    )
    groups = optim.param_groups(model, names, 1e-3, decayed)
    assert [g["lr"] for g in groups] == pytest.approx([2.5e-4, 5e-4, 1e-3])
    with pytest.raises(StagewiseError, match="training.lr_groups: 'decoder' matches no module"):
        optim.lr_scales(model, names, {"decoder": 2.0}, None, "training")


def test_discriminative_lrs_reach_the_optimizer_and_the_audit():
    _, _, result = run(mlp(), {"unfreeze_all": True}, layer_decay=0.5, optimizer={"lr": 0.01})
    groups = result.audit["optimizer_groups"]
    assert [g["lr_scale"] for g in groups] == [0.25, 0.5, 1.0] and groups[2]["parameters"] == [
        "head.weight",
        "head.bias",
    ]


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"name": "AdamW", "lr": 0.01, "betas": [0.8, 0.9], "weight_decay": 0.1}, None),
        ({"name": "SGD", "lr": 0.1, "momentum": 0.9, "nesterov": True}, None),
        ({"name": "SGD", "lr": 0.1, "nesterov": True}, "Nesterov momentum requires a momentum"),
        ({"name": "Adam", "lr": -1.0}, "Invalid learning rate: -1.0"),
        ({"name": "AdamW", "betas": [0.9, 1.0]}, "Invalid beta parameter at index 1"),
    ],
)
def test_a_dry_run_optimizer_is_checked_by_torch_as_the_real_one(spec, message):
    """`stagewise check` builds each stage's optimizer as a dry run: the same groups, the same errors, a scheduler on
    top."""
    model = mlp()
    names = {n for n, _ in model.named_parameters()}
    training = {"optimizer": spec, "lr_groups": {"encoder.*": 0.1}}
    built = {}
    for dry_run in (False, True):
        try:
            optimizer = optim.build_optimizer(model, names, training, "stage", dry_run=dry_run)
        except StagewiseError as error:
            built[dry_run] = str(error)
            continue
        optim.Schedule(optimizer, {"name": "MultiStepLR", "milestones": [1]}, 2, 1, "stage")
        built[dry_run] = [
            {k: v for k, v in g.items() if k != "params"} | {"params": [id(p) for p in g["params"]]}
            for g in optimizer.param_groups
        ]
    assert built[True] == built[False]
    assert (message is None) == isinstance(built[True], list) and (message is None or message in built[True])


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("optimizer", {"name": "AdamW", "momentum": 0.9}, "stage.optimizer.momentum: not an argument of AdamW"),
        ("optimizer", {"name": "SGD", "lr": 0.1, "momentum": -1}, "stage.optimizer: SGD rejects"),
        ("scheduler", {"name": "MultiStepLR"}, "stage.scheduler: MultiStepLR rejects"),
        (
            "scheduler",
            {"name": "CosineAnnealingWarmRestarts", "T_0": 2, "T_zero": 1},
            "stage.scheduler.T_zero: not an argument",
        ),
        ("loss", {"name": "focal", "gama": 2}, "stage.loss.gama: not an argument of the focal loss"),
        ("loss", {"name": "mse", "class_weights": "balanced"}, "stage.loss.class_weights: only"),
    ],
)
def test_settings_torch_rejects_are_errors_naming_the_key(key, value, message):
    train, val = splits()
    model = mlp()
    selection = freezing.select(model, {}, [], {}, "stage")
    cfg = settings() | {key: value}
    with pytest.raises(StagewiseError, match=message):
        fit(model, train, val, cfg, selection)


def test_losses():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0], [0.5, 0.5, 3.0]])
    y = torch.tensor([0, 1, 2])
    build = lambda spec, labels=np.array([0, 0, 0, 1, 2]): losses.build(spec, labels, 3, torch.device("cpu"))  # noqa: E731, B008
    assert build({"name": "cross_entropy"})(logits, y) == pytest.approx(F.cross_entropy(logits, y).item())
    smooth = build({"name": "cross_entropy", "label_smoothing": 0.1})(logits, y)
    assert smooth == pytest.approx(F.cross_entropy(logits, y, label_smoothing=0.1).item())
    # balanced: n / (classes × count) = 5 / (3 × [3, 1, 1])
    weights = losses.class_weights("balanced", np.array([0, 0, 0, 1, 2]), 3)
    assert weights.tolist() == pytest.approx([5 / 9, 5 / 3, 5 / 3])
    weighted = build({"name": "cross_entropy", "class_weights": "balanced"})(logits, y)
    assert weighted == pytest.approx(F.cross_entropy(logits, y, weight=weights).item())
    assert build({"name": "focal", "gamma": 0.0})(logits, y) == pytest.approx(F.cross_entropy(logits, y).item())
    p = F.softmax(logits, 1)[torch.arange(3), y]
    focal = (-((1 - p) ** 2) * p.log() * torch.tensor([0.25, 0.5, 1.0])).mean()
    assert build({"name": "focal", "gamma": 2.0, "alpha": [0.25, 0.5, 1.0]})(logits, y) == pytest.approx(focal.item())
    onehot = F.one_hot(y, 3).float()
    assert build({"name": "mse"})(logits, y) == pytest.approx(F.mse_loss(logits, onehot).item())
    assert build({"name": "huber", "delta": 0.5})(logits, y) == pytest.approx(
        F.huber_loss(logits, onehot, delta=0.5).item()
    )
    values = torch.tensor([[1.0], [2.0]])
    assert build({"name": "mse"})(values, torch.tensor([1.5, 2.0])) == pytest.approx(0.125)


def test_early_stopping_fires_and_keeps_the_best_state():
    # nothing can improve val_accuracy by more than 1.0: the run stops after `patience` epochs
    _, _, result = run(
        mlp(),
        {},
        epochs=10,
        optimizer={"lr": 0.05},
        early_stopping={"monitor": "val_accuracy", "patience": 2, "min_delta": 1.0},
    )
    assert len(result.history) == 3 and result.best_epoch == 1
    assert result.stopped.startswith("early stopping: val_accuracy did not improve for 2 epochs")
    assert not torch.equal(result.best_state["head.weight"], result.last_state["head.weight"])


def test_history_columns_and_determinism():
    _, _, first = run(mlp(), {}, epochs=3, optimizer={"lr": 0.05})
    _, _, second = run(mlp(), {}, epochs=3, optimizer={"lr": 0.05})
    assert list(first.history[0])[:4] == ["epoch", "lr", "train_loss", "val_loss"]
    assert {"val_accuracy", "seconds", "samples_per_s"} <= set(first.history[0])
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("seconds", "samples_per_s")} for r in rows]  # noqa: E731
    assert strip(first.history) == strip(second.history)
    assert all(torch.equal(first.last_state[k], second.last_state[k]) for k in first.last_state)


def test_bf16_trains_on_cpu():
    before, after, result = run(mlp(), {}, precision="bf16", optimizer={"lr": 0.05}, grad_clip=0.5)
    assert all(math.isfinite(row["train_loss"]) for row in result.history)
    assert not torch.equal(before["head.weight"], after["head.weight"])
    assert after["head.weight"].dtype == torch.float32


def test_nan_loss_stops_naming_epoch_and_batch():
    train, val = splits()
    train.X[20, 0] = np.nan  # in whichever batch sample 20 lands
    model = mlp()
    selection = freezing.select(model, {}, [], {}, "stage")
    with pytest.raises(StagewiseError, match=r"stage: loss is nan at epoch 1, batch [1-6]; lower optimizer.lr"):
        fit(model, train, val, settings(), selection)


def test_monitor_that_is_not_a_column_is_an_error_before_the_first_batch(monkeypatch):
    monkeypatch.setattr(trainer, "_forward", None)  # a batch would call it
    with pytest.raises(
        StagewiseError,
        match=r"early_stopping.monitor: 'val_auc' is not recorded for task 'classification'; "
        r"choose from \['val_loss', 'train_loss', 'val_accuracy'",
    ):
        run(mlp(), {}, early_stopping={"monitor": "val_auc"})


def test_covariates_are_one_hot_in_the_models_category_order():
    train, _ = splits(covariates=True)
    train.categories = {"batch": ["b1", "b0"]}  # the data's codes name categories in another order
    served = batches(train, 48, categories={"batch": ["b0", "b1", "b2"]})
    _, onehot, _ = next(served.epoch(0))
    names = np.array(["b1", "b0"])[train.covariates["batch"]]
    assert onehot.shape == (48, 3) and (onehot.argmax(1).numpy() == np.array([int(n[1]) for n in names])).all()
    assert next(batches(train, 48).epoch(0))[1] is None
    with pytest.raises(StagewiseError, match=r"has categories \[.b0.\] unknown to the model"):
        next(batches(train, 48, categories={"batch": ["b1"]}).epoch(0))


def test_predict_passes_covariates():
    train, _ = splits(covariates=True)
    model = mlp(n_covariates=2)
    out, _ = trainer.predict(model, batches(train, 16, categories={"batch": ["b0", "b1"]}))
    model.eval()
    onehot = torch.eye(2)[train.covariates["batch"]]
    assert torch.allclose(out, model(torch.from_numpy(train.X), onehot).detach())


def test_tensorboard_writes_event_files(tmp_path):
    train, val = splits()
    model = mlp()
    selection = freezing.select(model, {}, [], {}, "stage")
    fit(model, train, val, settings(tensorboard=True), selection, tensorboard=tmp_path / "tb")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    assert [e.step for e in events.Scalars("val_loss")] == [1, 2]


def test_stage_errors_name_experiment_stage_and_key():
    from stagewise.steps.stage import config_path

    assert config_path("gradual/2_top") == "experiments.gradual.stages[1] (top)"
    assert config_path("baselines/scratch") == "baselines/scratch" and config_path("pretrain") == "pretrained.training"
    model = mlp()
    selection = freezing.select(model, {}, [], {}, "s")
    with pytest.raises(
        StagewiseError, match=r"experiments.gradual.stages\[1\] \(top\).optimizer.momentm: not an argument of AdamW"
    ):
        optim.build_optimizer(
            model, selection.names, settings(optimizer={"momentm": 0.9}), config_path("gradual/2_top")
        )


def test_scheduler_arguments_without_a_scheduler_are_an_error():
    with pytest.raises(StagewiseError, match=r"\['milestones'\] given but scheduler.name is none"):
        lrs({"name": "none", "milestones": [5]})


def test_auto_mode_minimises_error_metrics():
    train, val = splits()
    train.y, val.y = train.X[:, 0].copy(), val.X[:, 0].copy()  # a regression target
    model = mlp(out_features=1)
    stage = settings(epochs=6, optimizer={"lr": 0.05})  # validated as classification, the helper's task
    stage["early_stopping"]["monitor"] = "val_mae"
    result = fit(
        model, train, val, stage, freezing.Selection({n for n, _ in model.named_parameters()}), task="regression"
    )
    errors = [row["val_mae"] for row in result.history]
    assert result.history[result.best_epoch - 1]["val_mae"] == min(errors) and max(errors) > min(errors)
