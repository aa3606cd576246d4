"""Procedural shapes: coloured shapes on a plain background, with captions and ground-truth attributes.

One shape: "a small red circle on the left". Two shapes: "a red circle above a large blue square".
The size word is optional (`p_size_word`); the position or relation phrase is always there, so the
bare form "a red circle" never occurs in training data and can be held out to test generalisation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw

from t2i.data.layout import write_layout

# Saturated colours far apart in RGB and in hue, and all far from the white background.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 135, 0),
    "yellow": (235, 200, 0),
    "green": (30, 160, 50),
    "blue": (30, 80, 220),
    "purple": (140, 50, 190),
}
SHAPES = ("circle", "square", "triangle", "diamond")
SIZES = ("small", "large")
BACKGROUND = (255, 255, 255)
# Side of a shape's bounding box as a fraction of the image side: clearly different at any resolution.
EXTENT = {"small": 0.30, "large": 0.55}
# Single-shape positions and their caption phrases.
POSITIONS = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the center",
}
# Two-shape relations: caption phrase -> (axis, sign): the first shape's centre is smaller (-1) or
# larger (+1) than the second's along axis 0 (x) or 1 (y). Image y grows downwards.
RELATIONS = {
    "above": (1, -1),
    "below": (1, +1),
    "to the left of": (0, -1),
    "to the right of": (0, +1),
}
# Two large shapes (2 × 0.55 of the side) cannot sit apart in one image, so that pair is not drawn.
PAIR_SIZES = (("small", "small"), ("small", "large"), ("large", "small"))

_SUPERSAMPLE = 4  # drawn at 4× and box-filtered down: anti-aliased edges, bit-exact across runs
_MARGIN = 0.03  # minimum gap between a shape and the image border (fraction of the side)
_GAP = 0.06  # minimum gap between two shapes along their relation's axis (fraction of the side)


@dataclass
class ShapesConfig:
    """A procedural shapes data set."""

    n: int = 4000  # number of images
    size: int = 32  # image side in pixels (>= 16)
    seed: int = 0  # image i is drawn from np.random.default_rng([seed, i])
    p_two: float = 0.5  # probability that an image holds two shapes in a spatial relation, else one
    p_size_word: float = 0.5  # probability that a shape's description names its size ("a small red circle"
    # vs "a red circle"). Always naming it taught the generator the colour words only right after a size
    # word: "a small orange square in the center" drew orange 8/8, "an orange square" 0/8 (yellow).
    p_position_first: float = 0.5  # probability that a single shape's caption leads with its position ("on
    # the left, a red circle"), so a colour-and-shape phrase also ends a caption, as in short prompts

    def __post_init__(self):
        if self.size < 16:
            raise ValueError(f"shapes need size >= 16 pixels, got {self.size}")
        if self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}")
        if self.seed < 0:
            raise ValueError(f"seed must be non-negative, got {self.seed}")
        if not 0.0 <= self.p_two <= 1.0:
            raise ValueError(f"p_two must be in [0, 1], got {self.p_two}")
        if not 0.0 <= self.p_position_first <= 1.0:
            raise ValueError(f"p_position_first must be in [0, 1], got {self.p_position_first}")
        if not 0.0 <= self.p_size_word <= 1.0:
            raise ValueError(f"p_size_word must be in [0, 1], got {self.p_size_word}")


def _quantise(v: float) -> float:
    """Snap to the supersampling grid, so the recorded geometry is exactly the geometry drawn."""
    return round(v * _SUPERSAMPLE) / _SUPERSAMPLE


def _shape(kind: str, colour: str, size: str, cx: float, cy: float, side: int) -> dict:
    """A shape's attributes, in pixels of the final image; (cx, cy) is the centre of its bounding box."""
    cx, cy = _quantise(cx * side), _quantise(cy * side)
    half = _quantise(EXTENT[size] * side / 2)
    return {
        "shape": kind,
        "colour": colour,
        "size": size,
        "cx": cx,
        "cy": cy,
        "bbox": [cx - half, cy - half, cx + half, cy + half],
    }


def _draw(draw: ImageDraw.ImageDraw, shape: dict) -> None:
    x0, y0, x1, y1 = (v * _SUPERSAMPLE for v in shape["bbox"])
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    fill = COLOURS[shape["colour"]]
    # PIL's x1, y1 are inclusive: draw up to the last pixel inside the box.
    if shape["shape"] == "circle":
        draw.ellipse([x0, y0, x1 - 1, y1 - 1], fill=fill)
    elif shape["shape"] == "square":
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=fill)
    elif shape["shape"] == "triangle":
        draw.polygon([(cx, y0), (x1 - 1, y1 - 1), (x0, y1 - 1)], fill=fill)
    elif shape["shape"] == "diamond":
        draw.polygon([(cx, y0), (x1 - 1, cy), (cx, y1 - 1), (x0, cy)], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape['shape']!r}")


def _render(shapes: list[dict], side: int) -> Image.Image:
    big = Image.new("RGB", (side * _SUPERSAMPLE, side * _SUPERSAMPLE), BACKGROUND)
    draw = ImageDraw.Draw(big)
    for shape in shapes:
        _draw(draw, shape)
    return big.reduce(_SUPERSAMPLE)  # box filter


def _one_shape(rng: np.random.Generator, side: int) -> tuple[list[dict], str]:
    size = SIZES[rng.integers(len(SIZES))]
    colour = list(COLOURS)[rng.integers(len(COLOURS))]
    kind = SHAPES[rng.integers(len(SHAPES))]
    position = list(POSITIONS)[rng.integers(len(POSITIONS))]
    lo = EXTENT[size] / 2 + _MARGIN  # centre range that keeps the shape inside the image
    hi = 1 - lo
    # Off-centre positions put the centre in the outer third on their axis, and near the middle on
    # the other, so "on the left" never looks like "at the top".
    outer = rng.uniform(lo, max(lo, 0.34))
    across = float(np.clip(0.5 + rng.uniform(-0.1, 0.1), lo, hi))
    cx, cy = {
        "left": (outer, across),
        "right": (1 - outer, across),
        "top": (across, outer),
        "bottom": (across, 1 - outer),
        "center": (0.5 + rng.uniform(-0.06, 0.06), 0.5 + rng.uniform(-0.06, 0.06)),
    }[position]
    return [_shape(kind, colour, size, cx, cy, side)], position


def _two_shapes(rng: np.random.Generator, side: int) -> tuple[list[dict], str]:
    sizes = PAIR_SIZES[rng.integers(len(PAIR_SIZES))]
    colours = [list(COLOURS)[i] for i in rng.choice(len(COLOURS), size=2, replace=False)]
    kinds = [SHAPES[i] for i in rng.integers(len(SHAPES), size=2)]
    relation = list(RELATIONS)[rng.integers(len(RELATIONS))]
    axis, sign = RELATIONS[relation]
    halves = [EXTENT[s] / 2 for s in sizes]
    # Along the relation's axis: first-placed shape, gap, second shape, with the slack split at random.
    order = (0, 1) if sign < 0 else (1, 0)  # which shape comes first (smaller coordinate)
    slack = 1 - 2 * _MARGIN - _GAP - 2 * sum(halves)
    cuts = np.sort(rng.uniform(0, slack, size=2))
    a, b = order
    along = [0.0, 0.0]
    along[a] = _MARGIN + cuts[0] + halves[a]
    along[b] = along[a] + halves[a] + _GAP + (cuts[1] - cuts[0]) + halves[b]
    # Across the axis both centres stay close, so the relation reads unambiguously.
    lo = max(halves) + _MARGIN
    middle = rng.uniform(lo, 1 - lo)
    across = [float(np.clip(middle + rng.uniform(-0.05, 0.05), h + _MARGIN, 1 - h - _MARGIN)) for h in halves]
    shapes = []
    for i in range(2):
        cx, cy = (along[i], across[i]) if axis == 0 else (across[i], along[i])
        shapes.append(_shape(kinds[i], colours[i], sizes[i], cx, cy, side))
    return shapes, relation


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _caption(shapes: list[dict], position: str | None, relation: str | None, words: np.random.Generator,
             config: ShapesConfig) -> str:
    """"a small red circle on the left", "on the left, a red circle", "a red circle above a large blue
    square". The position or relation phrase is always there, so the bare form "a red circle" never
    occurs in training captions."""
    phrases = [_article(" ".join([*([s["size"]] if words.random() < config.p_size_word else []), s["colour"],
                                 s["shape"]])) for s in shapes]
    if relation is not None:
        return f"{phrases[0]} {relation} {phrases[1]}"
    if words.random() < config.p_position_first:
        return f"{POSITIONS[position]}, {phrases[0]}"
    return f"{phrases[0]} {POSITIONS[position]}"


def render_shapes(config: ShapesConfig) -> Iterator[tuple[Image.Image, str, dict]]:
    """Yield (image, caption, extra) for images 0..n-1; image i depends only on (seed, i, size, p_two), its
    caption's wording also on p_size_word and p_position_first.

    extra is {"attributes": {"shapes": [{"shape", "colour", "size", "cx", "cy", "bbox"}, ...],
    "position": "left" | ... | None, "relation": "above" | ... | None}}, in pixels of the image.
    """
    for i in range(config.n):
        rng = np.random.default_rng([config.seed, i])
        words = np.random.default_rng([config.seed, i, 1])  # wording only: images do not depend on it
        if rng.random() < config.p_two:
            (shapes, relation), position = _two_shapes(rng, config.size), None
        else:
            (shapes, position), relation = _one_shape(rng, config.size), None
        caption = _caption(shapes, position, relation, words, config)
        attributes = {"shapes": shapes, "position": position, "relation": relation}
        yield _render(shapes, config.size), caption, {"attributes": attributes}


def write_shapes(out_dir: str | Path, config: ShapesConfig) -> Path:
    """Render a shapes data set into `out_dir` (imagefolder layout); same config → identical bytes."""
    return write_layout(out_dir, render_shapes(config), {"source": "shapes", **asdict(config)})
