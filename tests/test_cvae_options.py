"""cvae's scArches options: layer norm / batch norm placement, covariates into the encoder, dispersion; surgery on
them."""

from __future__ import annotations

import numpy as np
import pytest
import split_files
import torch
from stagewise import checkpoints, config, freezing, metrics, trainer
from stagewise.errors import StagewiseError
from stagewise.io.batches import Batches
from stagewise.metadata import CheckpointMeta
from stagewise.models.cvae import CVAE
from stagewise.steps import compatibility
from torch import nn

GENES = 12


def norms(model: CVAE, part: str) -> set[type]:
    return {type(m) for layer in getattr(model, part) for m in layer.rest}


@pytest.mark.parametrize(
    "layer_norm, batch_norm, encoder, decoder",
    [
        ("none", "both", {nn.BatchNorm1d}, {nn.BatchNorm1d}),
        ("both", "none", {nn.LayerNorm}, {nn.LayerNorm}),
        ("encoder", "decoder", {nn.LayerNorm}, {nn.BatchNorm1d}),
        ("decoder", "encoder", {nn.BatchNorm1d}, {nn.LayerNorm}),
        ("none", "none", set(), set()),
    ],
)
def test_layer_norm_and_batch_norm_where_configured(layer_norm, batch_norm, encoder, decoder):
    model = CVAE(GENES, hidden=[16, 8], n_covariates=2, use_layer_norm=layer_norm, use_batch_norm=batch_norm)
    kinds = {nn.BatchNorm1d, nn.LayerNorm}
    assert norms(model, "encoder") & kinds == encoder and norms(model, "decoder") & kinds == decoder
    assert all(
        not m.elementwise_affine for m in model.modules() if isinstance(m, nn.LayerNorm)
    )  # scvi-tools': no parameters
    out = model.eval()(torch.ones(3, GENES), torch.eye(2)[[0, 1, 0]])
    assert out["mean"].shape == (3, GENES) and out["z_mean"].shape == (3, 10)


def test_decoder_dropout_defaults_to_dropout():
    rates = lambda m, part: {l.rest.dropout.p for l in getattr(m, part)}  # noqa: E731, E741
    same, zero = CVAE(GENES, hidden=[16, 8], dropout=0.2), CVAE(GENES, hidden=[16, 8], dropout=0.2, decoder_dropout=0.0)
    assert rates(same, "encoder") == rates(same, "decoder") == rates(zero, "encoder") == {0.2} and rates(
        zero, "decoder"
    ) == {0.0}


def test_batch_norm_false_is_none_everywhere_and_bad_values_are_errors():
    assert not norms(CVAE(GENES, batch_norm=False, use_batch_norm="both"), "encoder") & {nn.BatchNorm1d}
    with pytest.raises(StagewiseError, match="use_layer_norm: 'all' is not one of both, encoder, decoder, none"):
        CVAE(GENES, use_layer_norm="all")
    with pytest.raises(StagewiseError, match="dispersion: 'gene-label' is not one of gene, gene-batch, gene-cell"):
        CVAE(GENES, dispersion="gene-label")
    with pytest.raises(StagewiseError, match="gene-batch needs covariates"):
        CVAE(GENES, dispersion="gene-batch")


def test_encode_covariates_sets_the_encoder_input_width():
    with_cov = CVAE(GENES, hidden=[16], n_covariates=3)
    without = CVAE(GENES, hidden=[16], n_covariates=3, encode_covariates=False)
    assert with_cov.encoder[0].linear.in_features == GENES + 3 and without.encoder[0].linear.in_features == GENES
    assert with_cov.covariate_layers == ["encoder.0.linear", "decoder.0.linear"]
    assert without.covariate_layers == ["decoder.0.linear"]
    x = torch.poisson(torch.full((4, GENES), 3.0))
    cov = torch.eye(3)[[0, 1, 2, 0]]
    without.eval()
    assert torch.equal(
        without.encode(x, cov)[0], without.encode(x, torch.eye(3)[[2, 2, 2, 2]])[0]
    )  # the latent ignores batch
    assert not torch.equal(with_cov.eval().encode(x, cov)[0], with_cov.encode(x, torch.eye(3)[[2, 2, 2, 2]])[0])


def test_dispersion_per_gene_per_category_per_cell():
    x, cov = torch.poisson(torch.full((4, GENES), 3.0)), torch.eye(2)[[0, 1, 0, 1]]
    gene = CVAE(GENES, n_covariates=2).eval()(x, cov)["theta"]
    assert torch.equal(gene, torch.ones(4, GENES))  # log_theta starts at 0, as before
    batch_model = CVAE(GENES, n_covariates=2, dispersion="gene-batch")
    assert batch_model.covariate_layers[-1] == "head.theta_covariates" and not hasattr(batch_model.head, "log_theta")
    with torch.no_grad():
        batch_model.head.theta_covariates.weight.copy_(torch.stack([torch.zeros(GENES), torch.ones(GENES)], 1))
    theta = batch_model.eval()(x, cov)["theta"]
    assert torch.allclose(theta[0], torch.ones(GENES)) and torch.allclose(theta[1], torch.full((GENES,), np.e))
    cell = CVAE(GENES, n_covariates=2, dispersion="gene-cell").eval()(x, cov)["theta"]
    assert cell.shape == (4, GENES) and not torch.equal(cell[0], cell[1])


def counts_split(path, categories: dict, n: int = 48) -> split_files.Split:
    rng = np.random.default_rng(0)
    X = rng.poisson(5.0, (n, GENES)).astype(np.float32)
    names = list(categories["batch"])
    split = split_files.Split(
        X,
        np.arange(n) % 2,
        [f"g{i}" for i in range(GENES)],
        ["a", "b"],
        [f"s{i}" for i in range(n)],
        {"batch": np.arange(n) % len(names)},
        {"batch": names},
    )
    split_files.write(path, split, "train", "0" * 64)
    return split


@pytest.mark.parametrize(
    "params",
    [
        {"use_layer_norm": "both", "use_batch_norm": "none"},
        {"use_layer_norm": "both", "use_batch_norm": "none", "encode_covariates": False},
        {"use_layer_norm": "encoder", "dispersion": "gene-batch"},
    ],
)
def test_surgery_widens_exactly_the_covariate_columns_and_the_reference_latent_stays(tmp_path, params):
    params = {"in_features": GENES, "n_latent": 4, "hidden": [16], "n_covariates": 2} | params
    torch.manual_seed(1)
    reference = CVAE(**params)
    checkpoints.save(
        tmp_path / "ck.pt",
        reference.state_dict(),
        CheckpointMeta(
            architecture="cvae",
            params=params,
            task="counts",
            feature_names=[f"g{i}" for i in range(GENES)],
            label_names=["a", "b"],
            categories={"batch": ["r1", "r2"]},
        ),
    )
    query = counts_split(tmp_path / "train.h5", {"batch": ["r1", "r2", "q1"]})
    pre = {
        "checkpoint": None,
        "locked": [],
        "match": {},
        "head": None,
        "features": "strict",
        "feature_names": None,
        "label_names": None,
        "categories": {},
        "new_categories": {"batch": ["q1"]},
    }
    report, start = compatibility.check(
        str(tmp_path / "ck.pt"),
        str(tmp_path / "train.h5"),
        {"architecture": "cvae", "params": {}, "task": "counts"},
        pre,
        0,
    )
    assert start is not None, compatibility.render(report)
    widened = {f"{layer}.weight" for layer in reference.covariate_layers}
    assert set(start.meta.new_parameters) == widened
    for key in widened:
        width = reference.state_dict()[key].shape[1]
        assert start.meta.new_parameter_masks[key] == [[width, width + 1]]
    model = checkpoints.build_model(start)
    raw = {
        "data": {"target": {"train": "x"}},
        "model": {},
        "pretrained": {"checkpoint": "x"},
        "experiments": {"e": {"stages": [{"name": "s"}]}},
        "training": {"epochs": 2, "batch_size": 16, "device": "cpu", "optimizer": {"lr": 0.05}},
    }
    settings = config.stage_config(config.validate(raw), "e", 0)["training"]
    masks = freezing.entry_masks(model, start.meta.new_parameter_masks)
    selection = freezing.select(model, {"train": ["new"], "freeze": ["head"]}, [], masks, "s")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    served = {"feature_names": query.feature_names, "categories": {"batch": ["r1", "r2", "q1"]}}
    train = Batches(str(tmp_path / "train.h5"), 16, shuffle=True, **served)
    trainer.fit(
        model, train, Batches(str(tmp_path / "train.h5"), 16, **served), settings, selection, "s", task="counts"
    )
    after = model.state_dict()
    for key in before:
        if key in widened and not key.startswith("head."):  # freeze: [head] keeps gene-batch's new column too
            assert torch.equal(before[key][:, :-1], after[key][:, :-1]) and not torch.equal(
                before[key][:, -1], after[key][:, -1]
            ), key
        else:
            assert torch.equal(before[key], after[key]), key
    x = torch.from_numpy(query.X[:10])
    old_cov = torch.eye(2)[np.arange(10) % 2]
    new_cov = torch.cat([old_cov, torch.zeros(10, 1)], 1)
    assert torch.equal(
        reference.eval().encode(x, old_cov)[0], model.eval().encode(x, new_cov)[0]
    )  # the reference latent


def test_knn_k_and_knn_reference_are_config_keys():
    base = {
        "data": {"target": {"train": "x"}},
        "model": {},
        "pretrained": {"checkpoint": "x"},
        "experiments": {"e": {"stages": [{"name": "s"}]}},
    }
    evaluation = config.validate(base)["evaluation"]
    assert (evaluation["knn_k"], evaluation["knn_reference"]) == (15, None)
    assert config.validate(base | {"evaluation": {"knn_k": 5, "knn_reference": "target"}})["evaluation"]["knn_k"] == 5
    for bad in ({"knn_k": 0}, {"knn_reference": "query"}):
        with pytest.raises(StagewiseError, match="evaluation"):
            config.validate(base | {"evaluation": bad})
    reference = np.array([[0.0], [1.0], [1.1], [1.2]])
    hits = lambda k: metrics.knn_hits(reference, np.array(["a", "b", "b", "b"]), np.array([[0.1]]), np.array(["a"]), k)  # noqa: E731
    assert hits(1).all() and not hits(3).any()
