"""Does a generated shapes image have the prompted colour? A pixel-counting check, no learned model."""

from __future__ import annotations

import numpy as np
from PIL import Image

from t2i.data.shapes import BACKGROUND, COLOURS


def dominant_colour(img: Image.Image, *, palette: dict[str, tuple[int, int, int]] = COLOURS,
                    background: tuple[int, int, int] = BACKGROUND, min_distance: float = 80.0) -> str | None:
    """The palette colour nearest to most foreground pixels (those at least `min_distance` in RGB from the
    background); None when the image has no foreground."""
    pixels = np.asarray(img.convert("RGB"), dtype=np.float32).reshape(-1, 3)  # (H·W, 3)
    fg = pixels[np.linalg.norm(pixels - np.asarray(background, np.float32), axis=1) >= min_distance]
    if len(fg) == 0:
        return None
    names = list(palette)
    centres = np.asarray([palette[n] for n in names], np.float32)  # (K, 3)
    nearest = np.linalg.norm(fg[:, None, :] - centres[None], axis=2).argmin(1)  # (P,)
    return names[int(np.bincount(nearest, minlength=len(names)).argmax())]


def colour_accuracy(images: list[Image.Image], colours: list[str]) -> float:
    """Share of images whose dominant colour is the expected one."""
    if len(images) != len(colours):
        raise ValueError(f"{len(images)} images but {len(colours)} expected colours")
    return sum(dominant_colour(img) == c for img, c in zip(images, colours)) / len(images)
