"""A model folder as the evaluate step leaves it, for tests of the report step."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd


def write_evaluated(folder: Path, result: dict, arrays: dict[str, np.ndarray], history: dict | None = None) -> None:
    """test_metrics.json (`result`), test_predictions.h5 (`arrays` and sample ids s0, s1, ...) and, if given,
    history.tsv (`history`: column -> values)."""
    folder.mkdir(parents=True)
    (folder / "test_metrics.json").write_text(json.dumps(result))
    with h5py.File(folder / "test_predictions.h5", "w") as h5:
        for key, value in arrays.items():
            h5[key] = value
        n = len(arrays["labels"])
        h5.create_dataset("sample_ids", data=[f"s{i}" for i in range(n)], dtype=h5py.string_dtype())
    if history is not None:
        pd.DataFrame(history).to_csv(folder / "history.tsv", sep="\t", index=False)
