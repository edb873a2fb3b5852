"""checkpoints: how a file is recognised (format sniffing at its boundaries), every refusal's message, and the
versions a saved checkpoint records, asserted exactly.

Written for the mutation score of issue 21 (benchmarks/mutation.sh): mutants of these survived every fast test.
"""

from __future__ import annotations

import json
import platform

import pytest
import safetensors
import stagewise
import torch
from stagewise import checkpoints
from stagewise.errors import StagewiseError
from stagewise.metadata import CheckpointMeta

NOT_TORCH = (
    "wrong format: not a PyTorch file (.pt/.pth/.ckpt, a zip archive or pickle) nor .safetensors; point "
    "pretrained.checkpoint at the saved weights"
)


def _refusal(path) -> str:
    with pytest.raises(StagewiseError) as error:
        checkpoints.load(path)
    return str(error.value)


@pytest.mark.parametrize(
    "content,message",
    [
        (
            b"\x89HDF\r\n\x1a\n" + bytes(20),
            "wrong format: this is an HDF5 file, not a checkpoint; expected a PyTorch "
            "file (.pt/.pth/.ckpt) or .safetensors",
        ),
        (b"hello world, not weights", NOT_TORCH),
        (bytes(8) + b"{}" + bytes(10), NOT_TORCH),  # a header length of 0: not safetensors
        ((100_000_001).to_bytes(8, "little") + b"{" + bytes(7), NOT_TORCH),  # over safetensors' 100 MB header cap
        (
            (1).to_bytes(8, "little") + b"{",
            "corrupt or truncated safetensors file (Error while deserializing header: "
            "invalid JSON in header: EOF while parsing an object at line 1 column 1); copy or save it again",
        ),
        (
            (100_000_000).to_bytes(8, "little") + b"{" + bytes(7),
            "corrupt or truncated safetensors file (Error while "
            "deserializing header: invalid header length); copy or save it again",
        ),
    ],
)
def test_a_file_is_sniffed_by_its_first_bytes(tmp_path, content, message):
    path = tmp_path / "file.bin"
    path.write_bytes(content)
    assert _refusal(path) == f"{path}: {message}"


def test_a_truncated_checkpoint_names_the_error_in_one_line_of_200_characters(tmp_path):
    path = tmp_path / "cut.pt"
    torch.save({"w": torch.ones(2)}, path)
    path.write_bytes(path.read_bytes()[:200])
    message = _refusal(path)
    prefix, detail = (
        f"{path}: corrupt or truncated checkpoint, cannot be read (RuntimeError: ",
        message.split(": ", 2)[2],
    )
    assert message.startswith(prefix) and message.endswith("); copy or save it again") and "\n" not in message
    assert len(detail.removesuffix("); copy or save it again")) == 200


def test_a_dict_without_weights_lists_its_first_ten_keys(tmp_path):
    path = tmp_path / "d.pt"
    torch.save({f"k{i}": i for i in range(12)}, path)
    assert _refusal(path) == (
        f"{path}: wrong format: no state_dict found (top-level keys {[f'k{i}' for i in range(10)]}); expected a "
        "state_dict or a dict holding one under ['state_dict', 'model_state_dict', 'model']; re-save it with "
        "torch.save(model.state_dict(), 'model.pt')"
    )


def test_wrapped_and_lightning_state_dicts(tmp_path):
    weights = {"layer.weight": torch.ones(2, 2)}
    torch.save({"model_state_dict": {f"module.{k}": v for k, v in weights.items()}}, tmp_path / "w.pt")
    loaded = checkpoints.load(tmp_path / "w.pt")
    assert loaded.origin == "state_dict under 'model_state_dict', prefix 'module.' stripped"
    assert loaded.state_dict.keys() == weights.keys() and loaded.meta.to_dict() == {}
    torch.save(
        {"state_dict": {"net.layer.weight": weights["layer.weight"]}, "hyper_parameters": {"lr": 1}}, tmp_path / "l.pt"
    )
    loaded = checkpoints.load(tmp_path / "l.pt")  # hyper_parameters alone mark a Lightning checkpoint
    assert loaded.origin == "Lightning checkpoint, prefix 'net.' stripped"
    assert loaded.meta.hyper_parameters == {"lr": 1} and loaded.state_dict.keys() == weights.keys()


@pytest.mark.parametrize("name", ["m.pt", "m.safetensors"])
def test_a_saved_checkpoint_records_the_versions_that_wrote_it(tmp_path, name):
    checkpoints.save(tmp_path / name, {"w": torch.ones(2)}, CheckpointMeta(architecture="mlp", task="classification"))
    meta = checkpoints.load(tmp_path / name).meta
    assert (meta.format_version, meta.stagewise_version, meta.torch_version, meta.python_version) == (
        checkpoints.FORMAT,
        stagewise.__version__,
        str(torch.__version__),
        platform.python_version(),
    )
    if name.endswith(".safetensors"):
        with safetensors.safe_open(tmp_path / name, framework="pt") as handle:
            written = handle.metadata()["stagewise"]
        assert written == json.dumps(json.loads(written), sort_keys=True)  # keys sorted: the same bytes every time
