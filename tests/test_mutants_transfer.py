"""transfer (check_compatibility's tensor matching): the param that breaks a tensor's shape, named exactly.

Written for the mutation score of issue 21 (benchmarks/mutation.sh): mutants of these survived every fast test.
"""

from __future__ import annotations

from test_compatibility import MODEL, errors, run_check, write_checkpoint

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
