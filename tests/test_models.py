"""Model families, plug-ins, count likelihoods and task definitions, on tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from stagewise import likelihoods, models, tasks
from stagewise.errors import StagewiseError

BUILT_IN = {
    "mlp": ({"in_features": 12, "out_features": 3}, (5, 12)),
    "cnn1d": ({"in_features": 4, "out_features": 3, "channels": 8}, (5, 100, 4)),
    "cnn2d": ({"in_features": 64, "out_features": 10}, (5, 64)),
    "cvae": ({"in_features": 30, "out_features": 30, "hidden": [16, 8]}, (5, 30)),
}


def one_hot_sequences(n: int, length: int, seed: int = 0) -> torch.Tensor:
    codes = torch.randint(0, 4, (n, length), generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.one_hot(codes, 4).float()


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_blocks_and_head_partition_the_parameters(name):
    params, shape = BUILT_IN[name]
    model = models.build(name, params)
    owners = {}
    for group in [*model.block_names, model.head_name]:
        for param, _ in model.get_submodule(group).named_parameters(prefix=group):
            owners.setdefault(param, []).append(group)
    # every parameter in exactly one block or the head: `unfreeze_last: len(blocks)` is everything
    assert sorted(owners) == sorted(n for n, _ in model.named_parameters())
    assert all(len(groups) == 1 for groups in owners.values())
    x = torch.poisson(torch.rand(shape) * 4) if name == "cvae" else torch.rand(shape)
    out = model.eval()(x)
    assert (out["z_mean"] if name == "cvae" else out).shape[0] == 5


def test_cnn1d_crops_the_flanking_context_and_sees_exactly_it():
    model = models.build("cnn1d", {"in_features": 4, "out_features": 3, "channels": 8}).eval()
    assert model.flank == 40  # SpliceAI-80nt: 4 units of W=11, AR=1
    x = one_hot_sequences(3, 100)
    out = model(x)
    assert out.shape == (3, 100 - 80, 3)
    exact = model.double()
    for position in (0, 19):  # output j sees input bases j .. j + 80, no other
        inputs = x[:1].double().requires_grad_()
        exact(inputs)[0, position].sum().backward()
        seen = torch.nonzero(inputs.grad[0].abs().sum(-1)).flatten()
        assert seen.tolist() == list(range(position, position + 81))
    model.float()
    flat = model(x.reshape(3, -1))
    assert torch.equal(flat, out)


def test_cnn1d_per_sequence_output_and_errors():
    model = models.build(
        "cnn1d",
        {
            "in_features": 4,
            "out_features": 2,
            "channels": 8,
            "output": "per_sequence",
            "kernels": [11, 11],
            "dilations": [1, 4],
            "skip_every": 1,
        },
    )
    assert model.flank == 50 and model.block_names == ["stem", "units.0", "units.1"]
    assert model(one_hot_sequences(2, 120)).shape == (2, 2)
    with pytest.raises(StagewiseError, match="not longer than the model's context"):
        model(one_hot_sequences(2, 100))
    with pytest.raises(StagewiseError, match="must be odd"):
        models.build("cnn1d", {"in_features": 4, "out_features": 2, "kernels": [10], "dilations": [1]})
    with pytest.raises(StagewiseError, match="per_position or per_sequence"):
        models.build("cnn1d", {"in_features": 4, "out_features": 2, "output": "pooled"})


def test_cnn2d_reads_flat_and_nchw_images_alike():
    model = models.build("cnn2d", {"in_features": 64, "out_features": 10}).eval()
    x = torch.rand(4, 64)
    assert torch.equal(model(x), model(x.reshape(4, 1, 8, 8)))
    rgb = models.build("cnn2d", {"in_features": 3 * 16 * 16, "out_features": 2, "image_shape": [3, 16, 16]})
    assert rgb(torch.rand(2, 3, 16, 16)).shape == (2, 2)
    with pytest.raises(StagewiseError, match="not a square image"):
        models.build("cnn2d", {"in_features": 60, "out_features": 2})


def counts(n: int = 6, genes: int = 20, seed: int = 0) -> torch.Tensor:
    return torch.poisson(torch.rand(n, genes, generator=torch.Generator().manual_seed(seed)) * 5)


def test_cvae_outputs_and_covariate_layers_take_the_last_columns():
    torch.manual_seed(0)
    model = models.build("cvae", {"in_features": 20, "n_covariates": 3, "likelihood": "zinb", "hidden": [16]}).eval()
    assert model.covariate_layers == ["encoder.0.linear", "decoder.0.linear"]
    x, batch = counts(), torch.eye(3)[[0, 1, 2, 0, 1, 2]]
    out = model(x, batch)
    assert set(out) == {"mean", "theta", "dropout_logits", "z_mean", "z_logvar", "z"}
    assert torch.equal(out["z"], out["z_mean"])  # eval mode: the posterior mean
    assert torch.allclose(out["mean"].sum(1), x.sum(1))  # NB means add up to the library size
    assert not torch.equal(model(x, torch.eye(3)[[1] * 6])["mean"], out["mean"])
    with torch.no_grad():  # zero the covariate columns: the covariates stop mattering
        for name in model.covariate_layers:
            model.get_submodule(name).weight[:, -3:] = 0
    assert torch.equal(model(x, batch)["mean"], model(x, torch.eye(3)[[1] * 6])["mean"])
    with pytest.raises(StagewiseError, match=r"one-hot covariates of shape \(6, 3\)"):
        model(x)
    deep = models.build(
        "cvae", {"in_features": 20, "n_covariates": 2, "hidden": [16, 8], "deeply_inject_covariates": True}
    )
    assert deep.covariate_layers == ["encoder.0.linear", "encoder.1.linear", "decoder.0.linear", "decoder.1.linear"]
    assert "dropout_logits" not in deep(x, torch.eye(2)[[0, 1] * 3])


def test_cvae_rejects_bad_params():
    with pytest.raises(StagewiseError, match="likelihood"):
        models.build("cvae", {"in_features": 20, "likelihood": "poisson"})
    with pytest.raises(StagewiseError, match="out_features 5 must equal"):
        models.build("cvae", {"in_features": 20, "out_features": 5})


def test_nb_and_zinb_log_probabilities_match_scipy():
    x = torch.tensor([0.0, 1.0, 3.0, 12.0])
    mean, theta = torch.tensor([0.5, 2.0, 5.0, 9.0]), torch.tensor([1.5, 0.7, 3.0, 10.0])
    nb = stats.nbinom.logpmf(x.numpy(), theta.numpy(), (theta / (theta + mean)).numpy())
    assert np.allclose(likelihoods.nb_log_prob(x, mean, theta).numpy(), nb, atol=1e-5)
    logits = torch.tensor([-1.0, 0.0, 0.5, 2.0])
    pi = torch.sigmoid(logits).numpy()
    zinb = np.where(x.numpy() == 0, np.log(pi + (1 - pi) * np.exp(nb)), np.log(1 - pi) + nb)
    assert np.allclose(likelihoods.zinb_log_prob(x, mean, theta, logits).numpy(), zinb, atol=1e-5)


def test_kl_and_warmup():
    z_mean, z_logvar = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.2, -0.3]])
    closed = 0.5 * (z_logvar.exp() + z_mean**2 - 1 - z_logvar).sum()
    assert torch.allclose(likelihoods.kl_standard_normal(z_mean, z_logvar), closed)
    assert [likelihoods.warmup_weight(e, 4) for e in (1, 2, 4, 9, None)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    assert likelihoods.warmup_weight(1, 0) == 1.0


def test_count_loss_trains_a_cvae_and_warms_up_the_kl():
    torch.manual_seed(0)
    model = models.build("cvae", {"in_features": 20, "hidden": [32], "n_latent": 4})
    x = counts(64, seed=1)
    loss_fn = tasks.get("counts").loss(
        {"name": "auto", "kl_warmup": 5}, np.zeros(64), 0, torch.device("cpu"), model.likelihood
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.eval()
    out = model(x)
    assert loss_fn(out, None, x, 1) < loss_fn(out, None, x, None)  # epoch 1 of 5: a fifth of the KL
    first = float(loss_fn(out, None, x, None).detach())
    model.train()
    for epoch in range(1, 31):
        optimizer.zero_grad()
        loss_fn(model(x), None, x, epoch).backward()
        optimizer.step()
    assert float(loss_fn(model.eval()(x), None, x, None).detach()) < first
    with pytest.raises(StagewiseError, match="kl_warmup"):
        tasks.get("counts").loss({"name": "nb", "beta": 2}, np.zeros(1), 0, torch.device("cpu"))
    with pytest.raises(StagewiseError, match="no dropout_logits"):
        tasks.get("counts").loss({"name": "zinb"}, np.zeros(1), 0, torch.device("cpu"))(out, None, x, None)


def test_task_defaults_and_mismatched_losses():
    assert [
        tasks.get(t).loss_name({"name": "auto"})
        for t in ("classification", "regression", "sequence_labeling", "counts")
    ] == ["cross_entropy", "mse", "cross_entropy", "nb"]
    assert tasks.get("counts").loss_name({"name": "auto"}, "zinb") == "zinb"
    with pytest.raises(StagewiseError, match="does not fit model.task 'counts'"):
        tasks.get("counts").loss_name({"name": "focal"})
    with pytest.raises(StagewiseError, match="unknown 'segmentation'"):
        tasks.get("segmentation")
    assert tasks.get("counts").out_features(100, 4) == 100 and tasks.get("classification").out_features(100, 4) == 4


def test_sequence_labeling_loss_and_predictions_use_the_cropped_centre():
    logits = torch.zeros(2, 4, 3)
    logits[..., 2] = 5.0  # every output position says "donor"
    y = torch.zeros(2, 8, dtype=torch.long)
    y[:, 2:6] = 2  # the centre 4 positions are donors, the 2 flanking positions each side are not
    loss_fn = tasks.get("sequence_labeling").loss({"name": "focal", "gamma": 2.0}, y.numpy(), 3, torch.device("cpu"))
    assert float(loss_fn(logits, y, None, 1)) < 1e-4
    fields = tasks.get("sequence_labeling").predictions(logits)
    assert fields["probabilities"].shape == (2, 4, 3) and (fields["predictions"] == 2).all()
    assert (tasks.get("sequence_labeling").labels(logits, y.numpy()) == 2).all()
    with pytest.raises(StagewiseError, match="cannot be centred"):
        tasks.crop(y[:, :7], 4)


def test_counts_predictions_hold_the_latent_space():
    torch.manual_seed(0)
    model = models.build("cvae", {"in_features": 20, "hidden": [16], "n_latent": 3}).eval()
    x = counts(5)
    out = tasks.collect(
        [tasks.apply(model(x[:2]), torch.Tensor.detach), tasks.apply(model(x[2:]), torch.Tensor.detach)]
    )
    fields = tasks.get("counts").predictions(out, x.numpy())
    assert fields["latent"].shape == (5, 3) and fields["nll"].shape == fields["kl"].shape == (5,)
    assert np.allclose(fields["latent"], model(x)["z_mean"].detach().numpy(), atol=1e-6)
    assert (fields["nll"] > 0).all() and (fields["kl"] >= 0).all()


def test_plugin_without_declarations_gets_children_as_blocks_and_head():
    model = models.build("plugin_model:TwoLayerNet", {"in_features": 6, "out_features": 2})
    assert model.block_names == ["body", "middle"] and model.head_name == "out"


def test_plugin_with_covariates_is_checked():
    model = models.build("plugin_model:BatchAware", {"in_features": 6, "out_features": 2, "n_covariates": 2})
    assert model.covariate_layers == ["trunk"] and model(torch.rand(3, 6), torch.eye(2)[[0, 1, 0]]).shape == (3, 2)


@pytest.mark.parametrize(
    "architecture, message",
    [
        ("plugin_model:BadBlocks", "has no submodule 'missing'"),
        ("plugin_model:NotAModule", "not a torch.nn.Module subclass"),
        ("plugin_model:Missing", "cannot import 'plugin_model:Missing'"),
        ("no_such_module:Net", "must be installed or in the folder"),
        ("resnet", "unknown 'resnet'; built-in: \\['cnn1d', 'cnn2d', 'cvae', 'mlp'\\]"),
    ],
)
def test_plugin_errors_name_the_architecture(architecture, message):
    with pytest.raises(StagewiseError, match=message):
        models.build(architecture, {"in_features": 6, "out_features": 2})


def test_plugin_module_in_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "my_lab_models.py").write_text(
        "from torch import nn\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, in_features, out_features):\n"
        "        super().__init__()\n"
        "        self.features, self.fc = nn.Linear(in_features, 4), nn.Linear(4, out_features)\n"
        "    def forward(self, x):\n"
        "        return self.fc(self.features(x))\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", str(tmp_path))])
    model = models.build("my_lab_models:Net", {"in_features": 3, "out_features": 2})
    assert model.head_name == "fc" and model.block_names == ["features"]
