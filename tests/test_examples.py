"""The recipes of config/examples/, end to end with the real snakemake at a reduced size.

Each test starts like a user: `stagewise init --example NAME DIR` (config, plug-in module, data),
then applies a small override (fewer samples and epochs) and runs the whole workflow.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import split_files
import torch
import yaml
from conftest import REPO, snakemake
from stagewise import checkpoints, cli, config, trainer
from stagewise.errors import StagewiseError
from stagewise.steps import evaluate

pytestmark = pytest.mark.e2e

FAST = {"evaluation": {"bootstrap": 20}}
OVERRIDES = {
    "dnnbrain": {
        "data": {"source": {"train_per_class": 50}},
        "pretrained": {"training": {"epochs": 3}},
        "training": {"epochs": 3},
    },
    "openspliceai": {
        "data": {"source": {"rows": [0, 300]}},
        "model": {"params": {"channels": 8}},
        "pretrained": {"training": {"epochs": 1}, "locked": []},
        "training": {"epochs": 2},
    },
    "preffect": {
        "data": {"source": {"rows": [0, 500]}},
        "pretrained": {"training": {"epochs": 3}},
        "training": {"epochs": 3},
    },
    "scarches": {
        "data": {"source": {"rows": [0, 600]}},
        "pretrained": {"training": {"epochs": 3}},
        "training": {"epochs": 3},
    },
    "plugin": {"pretrained": {"training": {"epochs": 2}}, "training": {"epochs": 2}},
    "physicsml": {"training": {"epochs": 3}},
}


def init(name: str, folder: Path) -> Path:
    assert cli.main(["init", "--example", name, str(folder)]) == 0
    return folder


def run_example(name: str, folder: Path) -> Path:
    """init, then the same config with the reduced-size override, then the whole workflow."""
    init(name, folder)
    path = folder / "config.yaml"
    raw = config.deep_merge(config.deep_merge(yaml.safe_load(path.read_text()), OVERRIDES[name]), FAST)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    snakemake(folder)
    return folder / "results"


def metrics_table(results: Path) -> pd.DataFrame:
    return pd.read_csv(results / "metrics.tsv", sep="\t").set_index("experiment")


def stage(results: Path, folder: str) -> dict:
    return json.loads((results / folder / "stage.json").read_text())


def test_every_example_config_is_valid_and_init_copies_it(tmp_path):
    names = sorted(p.stem for p in (REPO / "config" / "examples").glob("*.yaml"))
    assert names == ["dnnbrain", "openspliceai", "physicsml", "plugin", "preffect", "scarches"]
    for name in names:
        config.load(REPO / "config" / "examples" / f"{name}.yaml")
    folder = init("plugin", tmp_path / "plugin")
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "my_models.py"]
    assert cli.main(["init", "--example", "plugin", str(folder)]) == 1  # never overwrites
    assert cli.main(["init", "--example", "alexnet", str(tmp_path / "x")]) == 1


def test_generated_data_is_deterministic(tmp_path):
    first, second = init("openspliceai", tmp_path / "a"), init("openspliceai", tmp_path / "b")
    for name in ("species_a.fa", "species_a.gff3", "species_b.fa", "species_b.gff3"):
        assert (first / "data" / name).read_bytes() == (second / "data" / name).read_bytes()


def test_regression_targets_are_prepared_as_numbers(tmp_path):
    from stagewise.steps import prepare

    spec = config.validate(
        {
            "data": {"target": {"train": str(tmp_path / "t.csv"), "label": "energy"}},
            "model": {"task": "regression"},
            "pretrained": {"checkpoint": "x.pt"},
            "experiments": {"e": {"stages": [{"name": "s"}]}},
        }
    )
    outputs = {k: str(tmp_path / f"{k}.h5") for k in ("train", "val", "test")} | {"summary": str(tmp_path / "s.json")}
    rows = "\n".join(f"{i * 0.1},{i * 0.5 - 3.25}" for i in range(40))
    (tmp_path / "t.csv").write_text("d0,energy\n" + rows + "\n")
    prepare.run({}, outputs, {"dataset": spec["data"]["target"], "name": "target", "task": "regression"})
    split = split_files.read(outputs["train"])
    assert split.y.dtype == np.float32 and split.label_names == ["energy"]
    assert np.allclose(split.y, split.X[:, 0] * 5 - 3.25, atol=1e-5)  # each row keeps its own target
    (tmp_path / "t.csv").write_text("d0,energy\n1,high\n2,low\n")
    with pytest.raises(StagewiseError, match="regression needs numeric labels; found \\['high', 'low'\\]"):
        prepare.run({}, outputs, {"dataset": spec["data"]["target"], "name": "target", "task": "regression"})


def test_dnnbrain_new_head_finetune_vs_fixed_extractor(tmp_path):
    results = run_example("dnnbrain", tmp_path)
    table = metrics_table(results)
    assert set(table.index) == {"finetune", "fixed_extractor", "scratch"}
    assert table["accuracy"].between(0, 1).all()
    fixed = stage(results, "fixed_extractor/stages/1_head")["freeze_audit"]["modules"]
    assert all(fixed[block]["trainable"] == 0 for block in ("features.0", "features.1", "fc"))
    assert fixed["head"]["frozen"] == 0 and fixed["head"]["trainable"] == 64 * 3 + 3
    everything = stage(results, "finetune/stages/1_all")
    assert everything["frozen_parameters"] == 0
    report = json.loads((results / "compatibility.json").read_text())
    assert report["mappings"]["head"]["new_label_names"] == ["curves", "loops", "straight"]


def test_openspliceai_per_position_focal_unfreeze_last_2(tmp_path):
    results = run_example("openspliceai", tmp_path)
    last2 = stage(results, "unfreeze_last_2/stages/1_last2")
    modules = last2["freeze_audit"]["modules"]
    assert {m for m in modules if modules[m]["trainable"]} == {"units.2", "units.3", "head"}
    training = last2["effective_config"]["training"]
    assert training["loss"]["name"] == "focal" and training["optimizer"] == {"lr": 1.0e-4, "name": "AdamW"}
    assert training["scheduler"]["name"] == "CosineAnnealingWarmRestarts"
    tested = json.loads((results / "data/target/summary.json").read_text())["samples"]["test"]
    with h5py.File(results / "unfreeze_all/stages/1_all/test_predictions.h5") as h5:
        assert h5["probabilities"].shape == (tested, 100, 3) and h5["labels"].shape == (tested, 100)
        assert np.allclose(h5["probabilities"][()].sum(-1), 1, atol=1e-5)
    scores = json.loads((results / "unfreeze_all/stages/1_all/test_metrics.json").read_text())["metrics"]
    assert {"top_k", "auprc", "top_k_acceptor", "top_k_donor", "auprc_acceptor", "auprc_donor"} <= set(scores)
    history = pd.read_csv(results / "baselines/scratch/history.tsv", sep="\t")
    assert {"val_top_k", "val_auprc"} <= set(history.columns)


def test_preffect_continued_training_and_locked_hyperparameters(tmp_path, monkeypatch, capsys):
    results = run_example("preffect", tmp_path)
    table = metrics_table(results)
    assert set(table.index) == {"continue", "pretrained", "scratch"}
    assert table.loc["continue", "nll"] < table.loc["scratch", "nll"]
    with h5py.File(results / "continue/stages/1_all/test_predictions.h5") as h5:
        assert h5["latent"].shape == (200, 10) and h5["nll"].shape == (200,)
    checks = {c["check"]: c["status"] for c in json.loads((results / "compatibility.json").read_text())["checks"]}
    assert checks["features"] == "ok" and checks["locked"] == "ok"
    path = tmp_path / "config.yaml"
    edited = yaml.safe_load(path.read_text())  # continue the trained model, with a locked hyperparameter changed
    edited["pretrained"]["checkpoint"] = str(results / "continue/stages/1_all/model_best.pt")
    edited["model"]["params"]["n_latent"] = 12
    path.write_text(yaml.safe_dump(edited))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["check", "--config", str(path)]) == 1
    assert "model.params.n_latent is 12 but the checkpoint was trained with 10" in capsys.readouterr().out


def test_scarches_surgery_trains_only_new_columns_and_keeps_the_reference_latent(tmp_path):
    results = run_example("scarches", tmp_path)
    start = checkpoints.load(results / "start/model.pt")
    after = checkpoints.load(results / "surgery/stages/1_new/model_best.pt")
    assert after.meta.categories == {"batch": ["ref_1", "ref_2", "ref_3", "query_1", "query_2"]}
    for name in ("encoder.0.linear.weight", "decoder.0.linear.weight"):
        old, new = start.state_dict[name], after.state_dict[name]
        assert torch.equal(old[:, :-2], new[:, :-2]) and not torch.equal(old[:, -2:], new[:, -2:])
    others = [k for k in start.state_dict if not k.endswith(("0.linear.weight", "num_batches_tracked"))]
    assert all(torch.equal(start.state_dict[k], after.state_dict[k]) for k in others)
    latents = []
    for ckpt in (start, after):
        reference = evaluate.batches(str(results / "data/source/train.h5"), ckpt.meta)
        latents.append(trainer.predict(checkpoints.build_model(ckpt), reference)[0]["z_mean"])
        reference.close()
    assert torch.equal(*latents)  # the reference atlas does not move
    scores = json.loads((results / "surgery/stages/1_new/test_metrics.json").read_text())["metrics"]
    assert 0 <= scores["knn_accuracy"] <= 1 and scores["nll"] > 0


def test_plugin_example_class_from_the_project_folder(tmp_path):
    results = run_example("plugin", tmp_path)
    table = metrics_table(results)
    assert set(table.index) == {"head_then_all", "scratch"}
    second = stage(results, "head_then_all/stages/2_all")["freeze_audit"]["modules"]
    assert set(second) == {"conv1", "conv2", "classifier"}
    assert checkpoints.load(results / "start/model.pt").meta.architecture == "my_models:SmallConvNet"


def test_physicsml_match_renamed_modules_then_stages_with_own_optimizer(tmp_path):
    results = run_example("physicsml", tmp_path)
    report = json.loads((results / "compatibility.json").read_text())
    assert report["format"].startswith("Lightning checkpoint") and report["mappings"]["match"] == {
        "backbone": "encoder"
    }
    start = checkpoints.load(results / "start/model.pt")
    foreign = torch.load(tmp_path / "data/dft_model.ckpt", weights_only=True)["state_dict"]
    assert torch.equal(start.state_dict["encoder.1.linear.weight"], foreign["model.backbone.1.linear.weight"])
    first = stage(results, "frozen_then_all/stages/1_frozen_backbone")["freeze_audit"]["modules"]
    assert first["encoder.0"]["trainable"] == first["encoder.1"]["trainable"] == 0 and first["head"]["frozen"] == 0
    second = stage(results, "frozen_then_all/stages/2_all")["effective_config"]["training"]
    assert second["optimizer"] == {"lr": 3.0e-4, "name": "Adam"} and second["scheduler"]["name"] == "MultiStepLR"
    with h5py.File(results / "frozen_then_all/stages/2_all/test_predictions.h5") as h5:
        assert h5["labels"].dtype == np.float32 and h5["predictions"].shape == h5["labels"].shape == (150, 1)
    assert {"mae", "rmse", "r2", "pearson", "spearman"} <= set(metrics_table(results).columns)
