"""The rules' one entry: an unexpected exception is one paragraph on the terminal, its traceback in the rule's log."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
from stagewise.entry import run_step


def _rule(tmp_path) -> SimpleNamespace:
    return SimpleNamespace(threads=1, input={}, output={}, params={}, log=[str(tmp_path / "rule.log")], rule="finetune")


def test_an_unexpected_exception_is_one_paragraph_and_the_traceback_goes_to_the_log(tmp_path, monkeypatch, capsys):
    def step(inputs, outputs, params):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(sys, "__stderr__", sys.stderr)  # capsys captures sys.stderr
    with pytest.raises(SystemExit) as exit_:
        run_step(step, _rule(tmp_path))
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert (
        "unexpected RuntimeError in rule finetune: mat1 and mat2" in err
        and "rule.log" in err
        and "Traceback" not in err
    )
    assert "Traceback" in (tmp_path / "rule.log").read_text()
