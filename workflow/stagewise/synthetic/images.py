"""Image folders: scikit-learn's digits as PNG files, one folder per class."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_digit_images(folder: Path, rows: range, label_of, size: int = 32) -> None:
    """scikit-learn's 8x8 digits as `size` x `size` 8-bit grey PNGs (bicubic upscaling), one folder per label."""
    from PIL import Image
    from sklearn import datasets

    bunch = datasets.load_digits()
    for i in rows:
        target = folder / str(label_of(int(bunch.target[i])))
        target.mkdir(parents=True, exist_ok=True)
        pixels = Image.fromarray(np.round(bunch.images[i] * 255 / 16).astype(np.uint8), mode="L")
        pixels.resize((size, size), Image.Resampling.BICUBIC).save(target / f"digit_{i:04d}.png", optimize=False)
