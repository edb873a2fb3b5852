"""One image file as a float32 (C, H, W) array: decoded with Pillow, converted to the configured channels,
resized and/or centre-cropped, scaled and, with given statistics, normalised (`data.*.images`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import StagewiseError

_WIDE = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}  # more than 8 bits per pixel: converted to float
_GREY = _WIDE | {"1", "L", "LA", "La"}


def _pair(value, key: str) -> tuple[int, int] | int | None:
    if value is None or isinstance(value, int):
        return value
    if len(value) != 2:
        raise StagewiseError(f"data.*.images.{key} must be an integer or [height, width], not {value}")
    return int(value[0]), int(value[1])


@dataclass
class Pipeline:
    """Decode one image file into a float32 (C, H, W) array, as configured."""

    channels: int  # 1 grey, 3 RGB
    resize: tuple[int, int] | int | None
    crop: tuple[int, int] | None
    scale: float | None  # None: by the image's mode
    resample: int
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    auto_channels: bool = False

    def resized(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after resize: [H, W] exactly, or the shorter side to an integer (torchvision's
        Resize(int))."""
        if isinstance(self.resize, int):
            short = min(width, height)
            return round(width * self.resize / short), round(height * self.resize / short)
        if self.resize is not None:
            return self.resize[1], self.resize[0]
        return width, height

    def size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after resize and crop."""
        return (self.crop[1], self.crop[0]) if self.crop is not None else self.resized(width, height)

    def load(self, path: Path) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                image.load()
                return self._convert(image, path)
        except (OSError, ValueError, SyntaxError, UnidentifiedImageError, Image.DecompressionBombError) as error:
            raise StagewiseError(f"{path}: cannot read the image ({error}); replace or remove the file") from None

    def _convert(self, image, path: Path) -> np.ndarray:
        grey = image.mode in _GREY
        if self.auto_channels and self.channels == 1 and not grey:
            raise StagewiseError(
                f"{path}: a colour image ({image.mode}) among grey ones; "
                "set data.*.images.channels to rgb (or grey) to convert them all"
            )
        scale = self.scale or _mode_scale(image.mode)
        if grey or self.channels == 1:  # one channel, at the file's precision (8 bits, 16 bits or float)
            image = image.convert("F" if image.mode in _WIDE else "L")
        else:
            image = image.convert("RGB")
        size = self.resized(*image.size)
        if size != image.size:
            image = image.resize(size, self.resample)
        if self.crop is not None:
            height, width = self.crop
            if width > image.size[0] or height > image.size[1]:
                raise StagewiseError(
                    f"{path}: {image.size[0]}x{image.size[1]} (width x height, after resize) is "
                    f"smaller than data.*.images.crop {list(self.crop)}"
                )
            left, top = (image.size[0] - width) // 2, (image.size[1] - height) // 2
            image = image.crop((left, top, left + width, top + height))
        pixels = np.asarray(image, dtype=np.float32)
        pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
        if pixels.shape[0] != self.channels:  # a grey image where RGB is asked for
            pixels = np.repeat(pixels, self.channels, axis=0)
        pixels = pixels / scale
        if self.mean is not None:
            pixels = (pixels - self.mean[:, None, None]) / self.std[:, None, None]
        return pixels


def _mode_scale(mode: str) -> float:
    """The value that maps the mode's full range to 1: 255 (8-bit), 65535 (16-bit), 1 (float)."""
    if mode in _WIDE:
        return 1.0 if mode == "F" else 65535.0
    return 255.0


def pipeline(first_mode: str, options: dict) -> Pipeline:
    """The decoding pipeline of `data.*.images`; `channels: auto` takes the first image's (its mode)."""
    from PIL import Image

    resamplers = {
        "nearest": Image.Resampling.NEAREST,
        "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC,
        "lanczos": Image.Resampling.LANCZOS,
    }
    crop = _pair(options["crop"], "crop")
    channels, auto = {"grey": 1, "rgb": 3}.get(options["channels"]), options["channels"] == "auto"
    if auto:
        channels = 1 if first_mode in _GREY else 3
    scale = None if options["scale"] == "auto" else float(options["scale"])
    mean = std = None
    normalize = options["normalize"]
    if isinstance(normalize, dict):
        mean, std = (np.asarray(normalize[k], np.float32) for k in ("mean", "std"))
        if len(mean) != channels or len(std) != channels:
            raise StagewiseError(
                f"data.*.images.normalize: mean and std need {channels} values (one per channel), "
                f"got {len(mean)} and {len(std)}"
            )
        if (std <= 0).any():
            raise StagewiseError("data.*.images.normalize.std must be positive")
    return Pipeline(
        channels,
        _pair(options["resize"], "resize"),
        None if crop is None else (crop, crop) if isinstance(crop, int) else crop,
        scale,
        resamplers[options["resample"]],
        mean,
        std,
        auto,
    )


def header(path: Path) -> tuple[str, tuple[int, int]]:
    """(mode, (width, height)) from the file's header, without decoding the pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.mode, image.size
    except (OSError, ValueError, SyntaxError, UnidentifiedImageError) as error:
        raise StagewiseError(f"{path}: cannot read the image ({error}); replace or remove the file") from None
