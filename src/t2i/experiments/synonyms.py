"""Prompts in words no training caption uses: does the text encoder carry meaning the image pairs never taught?

Imagen's claim (Saharia et al. 2022, §4.4): a text encoder pretrained on text alone understands words that
never occur in the image–caption pairs. Shapes captions use fixed words ("red", "circle"), so synonyms are
held out by construction; `check_held_out` makes sure of it on the captions a run actually trained on.

Each synonym prompt names one object in the bare form ("a crimson circle", "a red ball"); its meaning is
the spec with the trained words, which the shapes classifier checks. The same specs worded with the
trained words ("a red circle") are the control: the accuracy a model reaches when it knows every word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from t2i.data.shapes import COLOURS, SHAPES
from t2i.evaluation import compositional as comp

# Held-out colour words → the palette colour they mean. Each is a single WordPiece token of MiniLM's
# vocabulary except "tangerine" (tang ##erine); none is a shapes caption word.
COLOUR_SYNONYMS: dict[str, str] = {
    "crimson": "red",
    "scarlet": "red",
    "azure": "blue",
    "navy": "blue",
    "emerald": "green",
    "lime": "green",
    "golden": "yellow",
    "lemon": "yellow",
    "violet": "purple",
    "plum": "purple",
    "tangerine": "orange",
}
# Held-out shape words → the shape they mean ("rhombus" and "lozenge" are several word pieces each).
SHAPE_SYNONYMS: dict[str, str] = {
    "ball": "circle",
    "disc": "circle",
    "box": "square",
    "block": "square",
    "pyramid": "triangle",
    "wedge": "triangle",
    "rhombus": "diamond",
    "lozenge": "diamond",
}
SHAPES_PER_COLOUR_SYNONYM = 2  # "a crimson circle", "a crimson square": shapes taken in rotation
COLOURS_PER_SHAPE_SYNONYM = 3  # "a red ball", "an orange ball", "a yellow ball": colours taken in rotation


@dataclass(frozen=True)
class SynonymPrompt:
    text: str  # the prompt as given to the model
    spec: comp.PromptSpec  # what it means, in the trained words (what the classifier checks)
    kind: str  # "colour" (a colour synonym), "shape" (a shape synonym) or "control" (trained words only)
    word: str | None  # the held-out word it uses (None for a control)


def _article(words: str) -> str:
    return ("an " if words[0] in "aeiou" else "a ") + words


def synonym_prompts() -> list[SynonymPrompt]:
    """The fixed prompt set: colour synonyms with a trained shape word, shape synonyms with a trained colour
    word, then the 24 controls "a red circle" ... (every colour × shape, in trained words)."""
    prompts = []
    colours = list(COLOURS)
    for i, (word, colour) in enumerate(COLOUR_SYNONYMS.items()):
        for j in range(SHAPES_PER_COLOUR_SYNONYM):
            shape = SHAPES[(i * SHAPES_PER_COLOUR_SYNONYM + j) % len(SHAPES)]
            spec = comp.PromptSpec((comp.ObjectSpec(colour, shape),))
            prompts.append(SynonymPrompt(_article(f"{word} {shape}"), spec, "colour", word))
    for i, (word, shape) in enumerate(SHAPE_SYNONYMS.items()):
        for j in range(COLOURS_PER_SHAPE_SYNONYM):
            colour = colours[(i * COLOURS_PER_SHAPE_SYNONYM + j) % len(colours)]
            spec = comp.PromptSpec((comp.ObjectSpec(colour, shape),))
            prompts.append(SynonymPrompt(_article(f"{colour} {word}"), spec, "shape", word))
    for colour in colours:
        for shape in SHAPES:
            spec = comp.PromptSpec((comp.ObjectSpec(colour, shape),))
            prompts.append(SynonymPrompt(spec.text, spec, "control", None))
    return prompts


def held_out_words() -> list[str]:
    return [*COLOUR_SYNONYMS, *SHAPE_SYNONYMS]


def caption_words(captions) -> set[str]:
    """Every lower-case word of the captions (letters only: "left," → "left")."""
    words = set()
    for caption in captions:
        words.update(re.findall(r"[a-z]+", caption.lower()))
    return words


def check_held_out(captions) -> dict:
    """Refuse data whose captions use a held-out word; otherwise return what was checked, for the record."""
    vocabulary = caption_words(captions)
    found = sorted(set(held_out_words()) & vocabulary)
    if found:
        raise ValueError(f"the training captions use held-out words ({', '.join(found)}): prompts with them would "
                         "not test unseen words; use data without them")
    return {"colour_synonyms": dict(COLOUR_SYNONYMS), "shape_synonyms": dict(SHAPE_SYNONYMS),
            "training_caption_vocabulary": sorted(vocabulary), "captions_checked": len(captions),
            "held_out_words_found_in_captions": found}


def word_pieces(tokenizer, captions) -> dict:
    """For each held-out word, its word pieces and those that also occur in training captions' tokens (a
    piece such as "##ure" could carry a little meaning over; whole words never do)."""
    seen = set()
    for caption in sorted(set(captions)):
        seen.update(tokenizer.tokenize(caption))
    pieces = {w: tokenizer.tokenize(w) for w in held_out_words()}
    return {w: {"pieces": p, "pieces_in_training_captions": sorted(set(p) & seen)} for w, p in pieces.items()}


def score(readings: list[list[dict]], prompts: list[SynonymPrompt]) -> dict:
    """Accuracy per kind: colour-synonym prompts are scored on the colour (is the meant colour drawn?), shape-synonym
    prompts on the shape (does the object of the named colour have the meant shape?), controls on both; "exact"
    (every named attribute right, count included) for all; and each held-out word's accuracy on its attribute."""
    checks = [comp.check(reading, prompt.spec) for reading, prompt in zip(readings, prompts, strict=True)]

    def acc(kind: str, name: str, word: str | None = None) -> dict:
        values = [c[name] for c, p in zip(checks, prompts) if p.kind == kind and (word is None or p.word == word)]
        return {"accuracy": sum(values) / len(values) if values else float("nan"), "n": len(values)}

    return {"colour_synonyms": {"colour": acc("colour", "colour"), "exact": acc("colour", "exact")},
            "shape_synonyms": {"shape": acc("shape", "shape"), "exact": acc("shape", "exact")},
            "trained_words": {"colour": acc("control", "colour"), "shape": acc("control", "shape"),
                              "exact": acc("control", "exact")},
            "per_word": {**{w: acc("colour", "colour", w) for w in COLOUR_SYNONYMS},
                         **{w: acc("shape", "shape", w) for w in SHAPE_SYNONYMS}}}
