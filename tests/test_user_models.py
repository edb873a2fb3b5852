"""A user's own model as they have it (issue 14): a lab's class with its own argument names and label order, a
library's class (OpenSpliceAI's `SpliceAI`) with no subclass, a factory, a dict output, and every way such code
can fail at the check; through `stagewise check` and the real `snakemake`.

The lab's code below is written as a lab would write it, knowing nothing of stagewise; each test writes it
into its working directory as a module (the workflow imports plug-ins from the folder it runs in).
"""

from __future__ import annotations

import inspect
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import snakemake, write_config
from stagewise import checkpoints, cli
from stagewise.synthetic import sequences
from torch import nn

HEADER = "import torch\nfrom torch import nn\n\n\n"
DIGITS_TARGET = {
    "train": "sklearn:digits",
    "rows": [600, 1000],
    "label_map": {d: ("even" if d % 2 == 0 else "odd") for d in range(10)},
    "test_fraction": 0.4,
    "val_fraction": 0.25,
    "train_per_class": 10,
}
PIXELS = [f"pixel_{i // 8}_{i % 8}" for i in range(64)]  # the names prepare gives sklearn:digits' columns
FAST = {"training": {"epochs": 2, "batch_size": 16, "optimizer": {"lr": 1.0e-3}}, "report": {"title": "user model"}}


# --- a lab's code, as the lab wrote it ------------------------------------------------------------


class ExprNet(nn.Module):
    """The lab's classifier: its own argument names, no stagewise attributes."""

    def __init__(self, n_features, n_hidden, n_classes):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(n_features, n_hidden), nn.ReLU())
        self.hidden = nn.Sequential(nn.Linear(n_hidden, n_hidden), nn.ReLU())
        self.classifier = nn.Linear(n_hidden, n_classes)

    def forward(self, x):
        return self.classifier(self.hidden(self.encoder(x)))


def make_net(n_in, n_out, width=8) -> nn.Module:
    """A factory, as model zoos have them."""
    return nn.Sequential(nn.Linear(n_in, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, n_out))


class DictNet(nn.Module):
    """Returns its logits and its embedding in a dict."""

    def __init__(self, n_inputs, n_labels, width=8):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(n_inputs, width), nn.ReLU())
        self.classifier = nn.Linear(width, n_labels)

    def forward(self, x):
        embedding = self.trunk(x)
        return {"logits": self.classifier(embedding), "embedding": embedding}


class Base(nn.Module):
    """The structure of every broken class below: one checkpoint fits them all."""

    def __init__(self, n_in, n_out, width=8):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_in, width), nn.ReLU())
        self.out = nn.Linear(width, n_out)

    def forward(self, x):
        return self.out(self.body(x))


class Explodes(Base):
    def __init__(self, n_in, n_out, width=8):
        raise RuntimeError("CUDA driver not found on this login node")


class BadForward(Base):
    def forward(self, x):
        return self.out(x)  # forgot the body: (2, 64) @ (8, 2)


class Pair(Base):
    def forward(self, x):
        hidden = self.body(x)
        return self.out(hidden), hidden


class Unsqueezed(Base):
    def forward(self, x):
        return self.out(self.body(x))[:, None, :]


class PerPosition(nn.Module):
    """Takes (N, L, 4) sequences, returns channels-first (N, 3, L - 80) like most sequence CNNs."""

    def __init__(self, n_out):
        super().__init__()
        self.conv = nn.Conv1d(4, 8, 81)
        self.out = nn.Conv1d(8, n_out, 1)

    def forward(self, x):
        return self.out(torch.relu(self.conv(x.transpose(1, 2))))


@dataclass
class NetConfig:
    width: int
    activation: str = "relu"


class PositionalOnly(nn.Module):
    """Sizes positional-only, a tuple that must be a tuple, and a config object."""

    def __init__(self, n_in, n_out, /, widths, *, config):
        super().__init__()
        assert isinstance(widths, tuple) and isinstance(config, NetConfig), (type(widths), type(config))
        self.body = nn.Sequential(nn.Linear(n_in, widths[0]), nn.ReLU(), nn.Linear(widths[0], config.width), nn.ReLU())
        self.out = nn.Linear(config.width, n_out)

    def forward(self, x):
        return self.out(self.body(x))


BROKEN_IMPORT = HEADER + "class Net(nn.Module):\n    pass\n\n\nDEFAULT_WIDTH = WIDTH * 2  # NameError at import\n"


def write_module(folder: Path, name: str, *objects) -> None:
    (folder / f"{name}.py").write_text(HEADER + "\n\n".join(inspect.getsource(o) for o in objects))


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """`tmp_path` as the working directory; plug-in modules imported in it are forgotten afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if getattr(sys.modules[name], "__file__", "") and str(tmp_path) in sys.modules[name].__file__:
            del sys.modules[name]


def digits(rows: slice, order: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels scaled as stagewise reads them and even/odd labels coded in `order`."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    y = [order.index("even" if d % 2 == 0 else "odd") for d in bunch.target[rows]]
    return torch.tensor(bunch.data[rows] / 16.0, dtype=torch.float32), torch.tensor(y)


def write_lines(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n")
    return path.name


def read_split(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    with h5py.File(path) as h5:
        return h5["X"][:], h5["y"][:], [n.decode() if isinstance(n, bytes) else n for n in h5["label_names"][:]]


def metrics(folder: Path) -> dict:
    return json.loads((folder / "test_metrics.json").read_text())["metrics"]


# --- a lab's class, its plain state_dict and its own label order -----------------------------------


LAB_ORDER = ["odd", "even"]  # the lab's pandas category order: output 0 is "odd"


def lab_project(folder: Path) -> dict:
    """The lab trains ExprNet with plain torch on digits 0-599 (even/odd, its own order) and saves a plain
    state_dict."""
    write_module(folder, "labnet", ExprNet)
    X, y = digits(slice(0, 600), LAB_ORDER)
    torch.manual_seed(0)
    model = ExprNet(64, 16, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(X), y).backward()
        optimizer.step()
    torch.save(model.state_dict(), folder / "lab.pt")
    return {
        "data": {"target": DIGITS_TARGET},
        "model": {
            "architecture": "labnet:ExprNet",
            "params": {"n_hidden": 16},
            "from_data": {"n_features": "n_features", "n_classes": "n_labels"},
        },
        "pretrained": {
            "checkpoint": "lab.pt",
            "label_names": write_lines(folder / "labels.txt", LAB_ORDER),
            "feature_names": write_lines(folder / "features.txt", PIXELS),
        },
        **FAST,
        "experiments": {
            "gradual": {
                "stages": [
                    {"name": "head", "train": ["head"], "optimizer": {"lr": 3.0e-3}},
                    {"name": "all", "unfreeze_all": True},
                ]
            }
        },
        "evaluation": {"baselines": ["pretrained"], "bootstrap": 20},
    }


@pytest.mark.e2e
def test_lab_class_with_its_own_label_order_scores_as_the_labs_own_code(tmp_path):
    config = lab_project(tmp_path)
    write_config(tmp_path, config)
    snakemake(tmp_path)
    results = tmp_path / "results"
    assert (results / "report.html").is_file()
    for stage in ("gradual/stages/1_head", "gradual/stages/2_all"):
        assert 0 <= metrics(results / stage)["accuracy"] <= 1
    report = json.loads((results / "compatibility.json").read_text())
    assert report["mappings"]["labels"]["old"] == LAB_ORDER and report["parameters"]["new"] == 0
    assert "the head's output rows are reordered" in (results / "compatibility.txt").read_text()

    # the lab's weights, applied by plain torch to the test split stagewise scored
    X, y, names = read_split(results / "data/target/test.h5")
    assert names == ["even", "odd"]  # the target's order is not the lab's
    model = ExprNet(64, 16, 2)
    model.load_state_dict(torch.load(tmp_path / "lab.pt"))
    with torch.no_grad():
        outputs = model.eval()(torch.as_tensor(X, dtype=torch.float32)).argmax(1).numpy()
    predicted = np.array([names.index(LAB_ORDER[i]) for i in outputs])
    reference = float(np.mean(predicted == y))
    start = metrics(results / "start")
    print(f"untouched pretrained model: stagewise {start['accuracy']!r}, plain torch {reference!r}, n={len(y)}")
    assert reference > 0.8  # a scrambled head would score 1 - reference
    assert start["accuracy"] == reference

    # without the label file, the order of a plain state_dict's outputs is unknown: the check refuses it
    del config["pretrained"]["label_names"]
    write_config(tmp_path, config)
    done = snakemake(tmp_path, check=False)
    assert done.returncode != 0
    assert "Error in rule check_compatibility" in done.stdout + done.stderr
    assert "records no label names" in done.stderr and "pretrained.label_names: FILE" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "pretrained.label_names" in (tmp_path / "logs/check_compatibility/check_compatibility.log").read_text()
    assert not (results / "start/model.pt").exists()


# --- a library's class, as its package ships it ----------------------------------------------------


SPLICE_LABELS = ["none", "acceptor", "donor"]  # OpenSpliceAI's output channels: non-splice, acceptor, donor
OPENSPLICEAI = {
    "architecture": "openspliceai.train_base.openspliceai:SpliceAI",
    "task": "sequence_labeling",
    "params": {"L": 32, "W": [11, 11, 11, 11], "AR": [1, 1, 1, 1]},
    "convert": {"W": "array", "AR": "array"},  # SpliceAI computes its context from numpy arrays
    "channels_first": True,  # takes (N, 4, L) and returns (N, 3, L'); stagewise's data and labels are (N, L, ...)
    "returns": "probabilities",  # apply_softmax=True, its default
    "blocks": ["initial_conv", "initial_skip", "residual_units.*"],
    "head": "final_conv",
}


@pytest.mark.e2e
def test_openspliceai_class_as_shipped_no_subclass(tmp_path):
    osai = pytest.importorskip(
        "openspliceai.train_base.openspliceai",
        reason="openspliceai==0.0.7 not installed (pip install --no-deps openspliceai==0.0.7)",
    )
    assert sequences.SPLICE_CLASSES == SPLICE_LABELS
    (tmp_path / "data").mkdir()
    sequences.write_splice(tmp_path / "data/b_train.h5", 40, "target", seed=1)
    sequences.write_splice(tmp_path / "data/b_test.h5", 40, "target", seed=2)
    source = sequences.splice_sites(64, "source", seed=0)
    torch.manual_seed(0)
    model = osai.SpliceAI(
        32, np.array([11] * 4), np.array([1] * 4)
    )  # an OpenSpliceAI model object, trained a few steps
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.as_tensor(source["X"], dtype=torch.float32).transpose(1, 2)
    for _ in range(5):
        optimizer.zero_grad()
        nn.functional.nll_loss(model(x).clamp_min(1e-8).log(), torch.as_tensor(source["y"])).backward()
        optimizer.step()
    torch.save(model.state_dict(), tmp_path / "spliceai.pt")
    config = {
        "data": {"target": {"train": "data/b_train.h5", "test": "data/b_test.h5", "val_fraction": 0.25}},
        "model": OPENSPLICEAI,
        "pretrained": {"checkpoint": "spliceai.pt", "label_names": write_lines(tmp_path / "labels.txt", SPLICE_LABELS)},
        **FAST,
        "experiments": {"unfreeze_last_2": {"stages": [{"name": "last2", "unfreeze_last": 2}]}},
        "evaluation": {"metrics": ["top_k", "auprc"], "baselines": ["pretrained"], "bootstrap": 20},
    }
    write_config(tmp_path, config)
    snakemake(tmp_path)
    results = tmp_path / "results"
    text = (results / "compatibility.txt").read_text()
    assert "labels: 3 labels, same names in the same order" in text and "64 tensors matched" in text and "0 new" in text
    assert json.loads((results / "compatibility.json").read_text())["mappings"]["head"] is None  # its head reused
    for folder in ("start", "unfreeze_last_2/stages/1_last2"):
        scores = metrics(results / folder)
        assert set(scores) >= {"top_k", "auprc", "top_k_acceptor", "auprc_donor"} and all(
            np.isfinite(list(scores.values()))
        )
    audit = json.loads((results / "unfreeze_last_2/stages/1_last2/stage.json").read_text())["freeze_audit"]["modules"]
    # residual_units holds 4 ResidualUnits and, after the 4th, a Skip: the last two blocks are units 3 and 4
    assert {m for m in audit if audit[m]["trainable"]} == {"residual_units.3", "residual_units.4", "final_conv"}
    # the untouched checkpoint's probabilities are OpenSpliceAI's own, position for position
    X, _, _ = read_split(results / "data/target/test.h5")
    with torch.no_grad():
        own = model.eval()(torch.as_tensor(X, dtype=torch.float32).transpose(1, 2)).transpose(1, 2).numpy()
    with h5py.File(results / "start/test_predictions.h5") as h5:
        np.testing.assert_allclose(h5["probabilities"][:], own, atol=1e-5)


# --- a factory, a dict output ------------------------------------------------------------------------


def digits_project(folder: Path, model: dict, module: str = "labzoo") -> dict:
    write_module(folder, module, make_net, DictNet, Base, Explodes, BadForward, Pair, Unsqueezed)
    return {
        "data": {"target": DIGITS_TARGET},
        "model": model,
        "pretrained": {
            "checkpoint": "ck.pt",
            "label_names": write_lines(folder / "labels.txt", ["even", "odd"]),
            "feature_names": write_lines(folder / "features.txt", PIXELS),
        },
        **FAST,
        "experiments": {"one": {"stages": [{"name": "all", "unfreeze_all": True}]}},
        "evaluation": {"baselines": [], "bootstrap": 0},
    }


def check(capsys) -> tuple[int, str]:
    rc = cli.main(["check", "--config", "config.yaml"])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out + err


def test_factory_and_dict_output_pass_the_check(project, capsys):
    torch.manual_seed(0)
    torch.save(make_net(64, 2).state_dict(), project / "ck.pt")
    write_config(
        project,
        digits_project(
            project,
            {
                "architecture": "labzoo:make_net",
                "params": {"width": 8},
                "from_data": {"n_in": "n_features", "n_out": "n_labels"},
            },
        ),
    )
    rc, out = check(capsys)
    assert rc == 0, out
    assert "6 tensors matched" in out and "stages: 1 of 1 valid" in out
    torch.save(DictNet(64, 2).state_dict(), project / "ck.pt")
    config = digits_project(
        project,
        {
            "architecture": "labzoo:DictNet",
            "from_data": {"n_inputs": "n_features", "n_labels": "n_labels"},
            "output": "logits",
        },
    )
    write_config(project, config)
    rc, out = check(capsys)
    assert rc == 0, out
    del config["model"]["output"]
    write_config(project, config)
    rc, out = check(capsys)
    assert rc == 1 and "expected one tensor, got a dict" in out and "model.output" in out


def test_positional_only_sizes_a_tuple_and_a_config_object(project, capsys):
    (project / "posonly.py").write_text(
        "from dataclasses import dataclass\n\n"
        + HEADER
        + "\n\n".join(inspect.getsource(o) for o in (NetConfig, PositionalOnly))
    )
    torch.save(PositionalOnly(64, 2, (8,), config=NetConfig(4)).state_dict(), project / "ck.pt")
    config = digits_project(
        project,
        {
            "architecture": "posonly:PositionalOnly",
            "from_data": {"n_in": "n_features", "n_out": "n_labels"},
            "params": {"widths": [8], "config": {"width": 4}},
            "convert": {"widths": "tuple", "config": "posonly:NetConfig"},
        },
    )
    write_config(project, config)
    rc, out = check(capsys)
    assert rc == 0, out
    config["model"]["convert"] = {"config": "posonly:NetConfig"}  # a list where the class asserts a tuple
    write_config(project, config)
    rc, out = check(capsys)
    assert rc == 1 and "posonly:PositionalOnly: the constructor failed (AssertionError: (<class 'list'>" in out, out
    assert "does not accept" not in out  # every argument was accepted


@pytest.mark.e2e
def test_dict_output_with_a_new_head_through_the_workflow(tmp_path):
    """A 10-digit checkpoint of DictNet to even/odd: built with 10 outputs as the checkpoint was, its head replaced."""
    torch.manual_seed(0)
    torch.save(DictNet(64, 10).state_dict(), tmp_path / "ck.pt")
    config = digits_project(
        tmp_path,
        {
            "architecture": "labzoo:DictNet",
            "output": "logits",
            "head": "classifier",
            "from_data": {"n_inputs": "n_features", "n_labels": "n_labels"},
        },
    )
    config["pretrained"] = {"checkpoint": "ck.pt", "feature_names": "features.txt", "head": {"module": None}}
    write_config(tmp_path, config)
    snakemake(tmp_path)
    assert (
        "'classifier' (10 outputs) replaced by a new seeded Linear with 2 outputs"
        in (tmp_path / "results/compatibility.txt").read_text()
    )
    final = tmp_path / "results/one/stages/1_all"
    assert 0 <= metrics(final)["accuracy"] <= 1
    meta = checkpoints.load(final / "model_best.pt").meta
    assert meta.replaced_head == {"layer": "classifier", "out_features": 2} and meta.params["n_labels"] == 10
    assert meta.interface["output"] == "logits"


# --- everything a user's code can do wrong, found at the check ----------------------------------------


BAD = {  # name: (model keys, what the message must say)
    "import": (
        {"architecture": "broken:Net"},
        ["model.architecture: cannot import 'broken:Net'", "NameError", "name 'WIDTH' is not defined"],
    ),
    "constructor": (
        {"architecture": "labzoo:Explodes"},
        ["model.architecture: labzoo:Explodes: the constructor failed", "RuntimeError: CUDA driver not found"],
    ),
    "rejected": (
        {"architecture": "labzoo:Base", "params": {"width": 8, "depth": 3, "colour": "red"}},
        ["labzoo:Base: the constructor failed", "TypeError", "it does not accept ['colour', 'depth']"],
    ),
    "forward": (
        {"architecture": "labzoo:BadForward"},
        [
            "labzoo:BadForward: the first forward pass on 2 samples of shape (64,) failed",
            "RuntimeError",
            "mat1 and mat2",
        ],
    ),
    "tuple": ({"architecture": "labzoo:Pair"}, ["expected one tensor, got a tuple of 2", "model.output"]),
    "shape": ({"architecture": "labzoo:Unsqueezed"}, ["expected logits (2, 2) for classification, got (2, 1, 2)"]),
}
SIZES = {"n_in": "n_features", "n_out": "n_labels"}


def bad_config(folder: Path, case: str) -> dict:
    torch.manual_seed(0)
    torch.save(Base(64, 2).state_dict(), folder / "ck.pt")
    (folder / "broken.py").write_text(BROKEN_IMPORT)
    model, _ = BAD[case]
    return digits_project(folder, {"from_data": SIZES} | model)


@pytest.mark.parametrize("case", list(BAD))
def test_bad_user_code_is_a_clean_error_at_stagewise_check(project, capsys, case):
    write_config(project, bad_config(project, case))
    rc, out = check(capsys)
    assert rc == 1
    for part in BAD[case][1]:
        assert part in out, out
    if case == "rejected":
        assert "'width'" not in out.split("does not accept")[1].split("]")[0]  # only the ones it rejects


def test_without_a_checkpoint_stagewise_check_builds_the_model_pretrain_would(project, capsys):
    """pretrained.checkpoint null: the class is built and run on data.source's shape by `stagewise check`, not first in
    the pretrain job."""
    config = digits_project(project, {"architecture": "labzoo:make_net", "from_data": SIZES})
    config["data"]["source"] = {"train": "sklearn:digits", "rows": [0, 600], "val_fraction": 0.2}
    config["pretrained"] = {"checkpoint": None, "head": {"module": None}}
    write_config(project, config)
    rc, out = check(capsys)
    assert rc == 0 and "pretrained.checkpoint is null: checked with the model `pretrain` builds" in out, out
    assert "(10 outputs) replaced by a new seeded Linear with 2 outputs" in out and "stages: 2 of 2 valid" in out
    for case in ("constructor", "tuple"):
        config["model"] = {"architecture": BAD[case][0]["architecture"], "from_data": SIZES}
        write_config(project, config)
        rc, out = check(capsys)
        assert rc == 1 and all(part in out for part in BAD[case][1]), out


def test_channels_first_output_without_channels_first_names_both_shapes(project, capsys):
    (project / "data").mkdir()
    sequences.write_splice(project / "data/train.h5", 12, "target")
    write_module(project, "seqnet", PerPosition)
    torch.manual_seed(0)
    torch.save(PerPosition(3).state_dict(), project / "ck.pt")
    config = {
        "data": {"target": {"train": "data/train.h5", "val_fraction": 0.25, "test_fraction": 0.25}},
        "model": {
            "architecture": "seqnet:PerPosition",
            "task": "sequence_labeling",
            "from_data": {"n_out": "n_labels"},
        },
        "pretrained": {"checkpoint": "ck.pt", "label_names": write_lines(project / "labels.txt", SPLICE_LABELS)},
        "experiments": {"one": {"stages": [{"name": "all", "unfreeze_all": True}]}},
    }
    write_config(project, config)
    rc, out = check(capsys)
    assert rc == 1
    assert (
        "expected per-position logits (2, L, 3) with L <= 100 positions, centred (the model returns channels first: "
        "set model.channels_first: true) for sequence_labeling, got (2, 3, 100)" in out
    ), out
    config["model"]["channels_first"] = {"output": True}
    write_config(project, config)
    rc, out = check(capsys)
    assert rc == 0, out


@pytest.mark.e2e
def test_bad_user_code_stops_the_workflow_at_check_compatibility(tmp_path):
    """A failure at each phase (import, constructor, first forward) through the real snakemake in turn: the check fails
    with the message, no training job starts. (Every case of BAD goes through the same check: above, unit-level.)"""
    for case in ("import", "rejected", "shape"):
        expected = BAD[case][1]
        write_config(tmp_path, bad_config(tmp_path, case))
        done = snakemake(tmp_path, check=False)
        output = done.stdout + done.stderr
        assert done.returncode != 0 and "Error in rule check_compatibility" in output, (case, output[-3000:])
        assert all(part in done.stderr for part in expected), (case, done.stderr[-3000:])
        assert "Traceback" not in output, case
        log = (tmp_path / "logs/check_compatibility/check_compatibility.log").read_text()
        assert "Traceback" not in log and expected[0] in log, case
        assert not (tmp_path / "results/start/model.pt").exists() and not (tmp_path / "results/one").exists()
        assert not (tmp_path / "logs/finetune").exists()


def test_a_broken_plugin_is_a_clean_error_of_the_stagewise_command(tmp_path):
    """The real command, not only its main(): no traceback on the terminal."""
    import subprocess

    write_config(tmp_path, bad_config(tmp_path, "import"))
    done = subprocess.run(
        [sys.executable, "-m", "stagewise.cli", "check", "--config", "config.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "name 'WIDTH' is not defined" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
