"""Compositional accuracy on shapes: does each image show what its prompt names? (a small GenEval)

A prompt is a spec: the objects it names (colour, shape, optionally size) and a position (one object)
or a relation (two). The shapes classifier reads what an image shows; each attribute the prompt names
is checked on its own, and an image is an exact match when every one is right:

- count: as many objects as the prompt names;
- colour: every named colour is drawn;
- shape, size: the object of that colour has that shape / size;
- position: the object's centre lies in the named part (centre: within 0.12 of the middle on both
  axes; else the side its centre is farthest towards);
- relation: the displacement between the two centres points the named way along its larger axis.

The held-out prompt set is fixed: every colour × shape in the bare form ("a red circle", a form no
shapes caption has), single objects with size and position, and pairs in a relation. Each prompt is
marked seen or unseen by whether any training image has that combination of attributes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from t2i.data.shapes import COLOURS, POSITIONS, RELATIONS, SHAPES, SIZES

ATTRIBUTES = ("count", "colour", "shape", "size", "position", "relation")
CENTRE_RADIUS = 0.12  # a centre within this fraction of the side from the middle (on both axes) is "in the center"
PROMPT_SEED = 7  # the held-out prompt set's draws; fixed, so every report uses the same prompts


@dataclass(frozen=True)
class ObjectSpec:
    colour: str
    shape: str
    size: str | None = None  # None: the prompt does not name a size


@dataclass(frozen=True)
class PromptSpec:
    objects: tuple[ObjectSpec, ...]
    position: str | None = None  # one object: "left", "right", "top", "bottom", "center"
    relation: str | None = None  # two objects: "above", "below", "to the left of", "to the right of"

    @property
    def text(self) -> str:
        """The prompt, worded as shapes captions are ("a small red circle on the left")."""
        phrases = []
        for o in self.objects:
            words = " ".join(w for w in (o.size, o.colour, o.shape) if w)
            phrases.append(("an " if words[0] in "aeiou" else "a ") + words)
        if self.relation:
            return f"{phrases[0]} {self.relation} {phrases[1]}"
        return phrases[0] + (f" {POSITIONS[self.position]}" if self.position else "")

    def attributes(self) -> tuple[str, ...]:
        """The attributes this prompt names, and so the ones checked."""
        named = ["count", "colour", "shape"]
        if any(o.size for o in self.objects):
            named.append("size")
        if self.position:
            named.append("position")
        if self.relation:
            named.append("relation")
        return tuple(named)

    def key(self) -> tuple:
        """The combination of named attributes, to tell whether training data holds it."""
        return (tuple((o.colour, o.shape, o.size) for o in self.objects), self.position, self.relation)


def held_out_prompts() -> list[PromptSpec]:
    """The fixed prompt set: 24 bare colour × shape, 12 single objects with size and position, 24 pairs."""
    rng = np.random.default_rng(PROMPT_SEED)
    colours = list(COLOURS)
    specs = [PromptSpec((ObjectSpec(c, s),)) for c in colours for s in SHAPES]
    for _ in range(12):
        o = ObjectSpec(colours[rng.integers(6)], SHAPES[rng.integers(4)], SIZES[rng.integers(2)])
        specs.append(PromptSpec((o,), position=list(POSITIONS)[rng.integers(len(POSITIONS))]))
    for _ in range(24):
        c1, c2 = rng.choice(len(colours), size=2, replace=False)
        objects = (ObjectSpec(colours[c1], SHAPES[rng.integers(4)]), ObjectSpec(colours[c2], SHAPES[rng.integers(4)]))
        specs.append(PromptSpec(objects, relation=list(RELATIONS)[rng.integers(len(RELATIONS))]))
    return specs


def position_of(cx: float, cy: float) -> str:
    """The named part of the image a centre (fractions of the side) lies in."""
    dx, dy = cx - 0.5, cy - 0.5
    if max(abs(dx), abs(dy)) < CENTRE_RADIUS:
        return "center"
    if abs(dx) >= abs(dy):
        return "left" if dx < 0 else "right"
    return "top" if dy < 0 else "bottom"


def relation_of(a: dict, b: dict) -> str:
    """How object a lies relative to object b, along the axis of their larger separation (y grows down)."""
    dx, dy = a["cx"] - b["cx"], a["cy"] - b["cy"]
    if abs(dx) >= abs(dy):
        return "to the left of" if dx < 0 else "to the right of"
    return "above" if dy < 0 else "below"


def check(reading: list[dict], spec: PromptSpec) -> dict[str, bool]:
    """Each attribute the prompt names → whether the reading shows it; plus "exact" (all of them)."""
    by_colour = {o["colour"]: o for o in reading}
    found = [by_colour.get(o.colour) for o in spec.objects]
    result = {"count": len(reading) == len(spec.objects),
              "colour": all(f is not None for f in found),
              "shape": all(f is not None and f["shape"] == o.shape for f, o in zip(found, spec.objects))}
    if "size" in spec.attributes():
        result["size"] = all(f is not None and (o.size is None or f["size"] == o.size)
                             for f, o in zip(found, spec.objects))
    if spec.position:
        result["position"] = found[0] is not None and position_of(found[0]["cx"], found[0]["cy"]) == spec.position
    if spec.relation:
        result["relation"] = None not in found and relation_of(found[0], found[1]) == spec.relation
    result["exact"] = all(result.values())
    return result


def spec_from_attributes(attributes: dict) -> PromptSpec:
    """The full spec of a rendered image (every attribute named) from its ground truth."""
    objects = tuple(ObjectSpec(s["colour"], s["shape"], s["size"]) for s in attributes["shapes"])
    return PromptSpec(objects, position=attributes.get("position"), relation=attributes.get("relation"))


def training_keys(records) -> set[tuple]:
    """Every attribute combination in a shapes data folder's records, at each level of detail a prompt can name."""
    keys = set()
    for r in records:
        a = r.extra.get("attributes")
        if not a:
            continue
        full = spec_from_attributes(a)
        bare = tuple(ObjectSpec(o.colour, o.shape) for o in full.objects)
        for objects in (full.objects, bare):
            for position, relation in ((full.position, full.relation), (None, None)):
                keys.add(PromptSpec(objects, position, relation).key())
    return keys


def summarise(checks: list[dict[str, bool]]) -> dict:
    """Per-attribute accuracy (over the images whose prompt names it) and exact-match accuracy, with counts."""
    out = {}
    for name in (*ATTRIBUTES, "exact"):
        values = [c[name] for c in checks if name in c]
        if values:
            out[name] = {"accuracy": float(np.mean(values)), "n": len(values)}
    return out


def reading_accuracy(classifier, images, attributes: list[dict]) -> dict[str, float]:
    """The classifier checked against ground truth: per attribute and exact match, on rendered images."""
    readings = classifier.read(images)
    checks = [check(r, spec_from_attributes(a)) for r, a in zip(readings, attributes)]
    return {name: v["accuracy"] for name, v in summarise(checks).items()}
