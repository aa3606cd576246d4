"""Held-out words and held-out concepts on a corpus (`t2i data emoji-sets`): is the prompted concept drawn?

The shapes experiments test unseen words with synonyms read by a shapes classifier. On the emoji corpus the
unseen words come with the data: `held_out_words.json` lists every word of a held-out caption (name, alias,
keyword) that no training caption contains, with the held-out names it comes from ("aww" → "face holding
back tears"). A text encoder pretrained on text alone may know what such a word means; the generator never
saw it beside an image.

Prompts:

- **held-out words**: the word alone (`WORD_TEMPLATE`). Alone, because the training captions include bare
  keyword lists ("keycap, zero"), so a one-word prompt is in the captions' own form and adds no words of
  its own that could carry the meaning instead; its targets are the concepts of every held-out name the word
  comes from (any of them counts);
- **held-out concepts**: each held-out concept's own name ("face holding back tears"): concept families the
  generator never drew, in words it may have seen elsewhere.

Scoring: a generated image is *recognised* when one of its prompt's target concepts is among the k concepts
whose nearest corpus image is nearest to it in the in-domain CLIP's image features (`concept_ranks` of
`t2i.evaluation.compare`, over every corpus image, training and held-out, so a drawing of a seen concept
counts as that concept, not as the held-out one). Chance is reported beside it: with M concepts, t targets
and k guesses, 1 − C(M−t, k) / C(M, k).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from t2i.data.families import HELD_OUT, TRAIN

WORDS_FILE = "held_out_words.json"  # written beside the corpus by t2i data emoji-sets
CONCEPT_FIELD = "codepoints"  # the metadata field naming an image's concept (the same emoji in every style)
NAME_FIELD = "name"  # the concept's plain name, shared by its rows in every style
WORD_TEMPLATE = "{word}"  # the prompt made of a held-out word: the word alone (see the module's docstring)
TOP_K = (1, 5)


@dataclass(frozen=True)
class RecognitionPrompt:
    text: str  # the prompt as given to the model
    targets: tuple[str, ...]  # concepts (codepoints) any of which counts as the prompt recognised
    kind: str  # "word" (a held-out word) or "concept" (a held-out concept's name)
    key: str  # the held-out word, or the concept's name


def has_recognition_data(data_dir: Path, records) -> bool:
    """Whether a data folder can be scored this way: held_out_words.json beside it, and concept names per row."""
    extra = records[0].extra if records else {}
    return (Path(data_dir) / WORDS_FILE).is_file() and CONCEPT_FIELD in extra and NAME_FIELD in extra


def load_words(data_dir: Path) -> dict[str, list[str]]:
    path = Path(data_dir) / WORDS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: held-out words come with a corpus from t2i data emoji-sets")
    return json.loads(path.read_text())


def _captions(record) -> list[str]:
    return list(record.extra.get("captions") or [record.caption])


def unseen_words(words: dict[str, list[str]], records) -> dict[str, list[str]]:
    """`words` checked against the data as it is used: each must occur in a held-out caption of one of its names and
    in no training caption (the rule of `t2i.data.emoji_sets.held_out_words`, applied to these records). A folder
    whose list does not match its rows (edited, or copied from another build) is refused, not silently scored."""
    from t2i.data.emoji_sets import held_out_words

    rows = [{"captions": _captions(r), "split": r.extra.get("split", TRAIN), NAME_FIELD: r.extra[NAME_FIELD]}
            for r in records]
    truth = held_out_words(rows)
    wrong = sorted(w for w, names in words.items() if not set(names) <= set(truth.get(w, ())))
    if wrong:
        raise ValueError(f"{len(wrong)} held-out words do not match the data ({', '.join(wrong[:5])}...): they occur "
                         f"in a training caption or not in their names' held-out captions; rebuild the corpus")
    return words


def word_prompts(words: dict[str, list[str]], records) -> list[RecognitionPrompt]:
    """One prompt per held-out word, its targets the concepts of the names it comes from."""
    concepts: dict[str, set[str]] = {}
    for r in records:
        concepts.setdefault(r.extra[NAME_FIELD], set()).add(str(r.extra[CONCEPT_FIELD]))
    prompts = []
    for word, names in sorted(words.items()):
        missing = [n for n in names if n not in concepts]
        if missing:
            raise ValueError(f"held-out word {word!r} comes from {missing}, which no row of the data names")
        targets = tuple(sorted({c for n in names for c in concepts[n]}))
        prompts.append(RecognitionPrompt(WORD_TEMPLATE.format(word=word), targets, "word", word))
    return prompts


def concept_prompts(records) -> list[RecognitionPrompt]:
    """One prompt per held-out concept: its name, its target itself."""
    names = {}
    for r in records:
        if r.extra.get("split") == HELD_OUT:
            names.setdefault(str(r.extra[CONCEPT_FIELD]), r.extra[NAME_FIELD])
    return [RecognitionPrompt(name, (concept,), "concept", name)
            for concept, name in sorted(names.items(), key=lambda item: item[1])]


def recognised(ranked: list[list[str]], targets: list[tuple[str, ...]], k: int) -> list[bool]:
    """Per query: is one of its targets among its first k concepts?"""
    if len(ranked) != len(targets):
        raise ValueError(f"{len(ranked)} rankings for {len(targets)} target sets")
    return [bool(set(r[:k]) & set(t)) for r, t in zip(ranked, targets)]


def chance(n_concepts: int, n_targets: int, k: int) -> float:
    """The chance that k concepts drawn at random from n_concepts include one of n_targets."""
    k = min(k, n_concepts)
    return 1 - math.comb(n_concepts - n_targets, k) / math.comb(n_concepts, k)


def score(ranked: list[list[str]], prompts: list[RecognitionPrompt], n_concepts: int) -> dict:
    """Top-1 and top-5 recognition per kind of prompt (with chance beside it), and top-5 per held-out word.
    `ranked[i]`, `prompts[i]`: one generated image and the prompt it was drawn for (a prompt repeats per image)."""
    out = {}
    for kind in ("word", "concept"):
        picked = [(r, p) for r, p in zip(ranked, prompts) if p.kind == kind]
        if not picked:
            continue
        entry = {"n": len(picked), "prompts": len({p.key for _, p in picked})}
        for k in TOP_K:
            hits = recognised([r for r, _ in picked], [p.targets for _, p in picked], k)
            entry[f"top{k}"] = sum(hits) / len(hits)
            entry[f"chance_top{k}"] = sum(chance(n_concepts, len(p.targets), k) for _, p in picked) / len(picked)
        out[kind + "s"] = entry
    top5 = recognised(ranked, [p.targets for p in prompts], 5)
    per_word: dict[str, list[bool]] = {}
    for hit, p in zip(top5, prompts):
        if p.kind == "word":
            per_word.setdefault(p.key, []).append(hit)
    out["per_word_top5"] = {w: sum(v) / len(v) for w, v in per_word.items()}
    return out


@dataclass
class RecognitionSet:
    """What every run of an experiment is scored against: the prompts, and every corpus image's features."""

    prompts: list[RecognitionPrompt]
    bank: object  # torch.Tensor (M, D): the in-domain CLIP's features of every corpus image
    bank_concepts: list[str]  # the concept of each bank row
    info: dict  # counts, the template, the real images' ceiling (for results.json)


def prepare(data_dir: Path, records, clip, *, cache_dir: Path) -> RecognitionSet:
    """Prompts from held_out_words.json (checked against `records`, every row of the data) and the held-out
    concepts, and the features of every corpus image (cached like any reference features)."""
    from t2i.data import dataset_fingerprint
    from t2i.evaluation.compare import concept_ranks
    from t2i.evaluation.reference import data_image_size, evaluation_subset, reference_features

    words = unseen_words(load_words(data_dir), records)
    prompts = word_prompts(words, records) + concept_prompts(records)
    bank_rows = evaluation_subset(records, len(records))  # the order reference_features returns them in
    bank = reference_features(data_dir, clip, resolution=data_image_size(records)[0], n=len(records),
                              cache_dir=cache_dir, records=records, fingerprint=dataset_fingerprint(data_dir)).features
    concepts = [str(r.extra[CONCEPT_FIELD]) for r in bank_rows]
    # The ceiling: each real held-out image, left out of the bank, recognised as its own concept.
    held = [i for i, r in enumerate(bank_rows) if r.extra.get("split") == HELD_OUT]
    ranked = concept_ranks(bank[held], bank, concepts, exclude=held, k=max(TOP_K))
    ceiling = {f"top{k}": sum(recognised(ranked, [(concepts[i],) for i in held], k)) / max(1, len(held))
               for k in TOP_K}
    info = {"word_template": WORD_TEMPLATE, "held_out_words": len(words),
            "held_out_concepts": sum(p.kind == "concept" for p in prompts), "concepts": len(set(concepts)),
            "corpus_images": len(records), "real_held_out_images_recognised": {"n": len(held), **ceiling}}
    return RecognitionSet(prompts, bank, concepts, info)


def measure(pipe, rs: RecognitionSet, setting: dict, *, clip, images_per_prompt: int, seed: int,
            batch_size: int) -> dict:
    """Generate `images_per_prompt` images per recognition prompt (image j of a prompt: seed + j) and score them."""
    from t2i.evaluation.compare import concept_ranks
    from t2i.evaluation.evaluate import generate

    prompts = [p for p in rs.prompts for _ in range(images_per_prompt)]
    seeds = [seed + j for _ in rs.prompts for j in range(images_per_prompt)]
    images = generate(pipe, [p.text for p in prompts], seeds, setting, batch_size=batch_size,
                      desc="held-out words and concepts")
    ranked = concept_ranks(clip(images), rs.bank, rs.bank_concepts, k=max(TOP_K))
    return {"images_per_prompt": images_per_prompt, **score(ranked, prompts, len(set(rs.bank_concepts)))}
