"""One corpus from several published emoji sets: the same ~3,700 concepts drawn in several real styles.

Each set is an Iconify JSON package on npm (`@iconify-json/noto`, ...): every SVG body in one `icons.json`,
and for most sets a `chars.json` mapping code points to icon names. Sets without one are named by icon name,
through the other sets' maps and the CLDR names (`_resolver`). Captions come from the `emoji` package
(CLDR short names, aliases, Unicode names) and from `emojibase-data` (CLDR keywords, group, subgroup).
The split is by concept family (`t2i.data.families`), so a held-out concept is held out in every style and
variant; the words of held-out captions that no training caption contains are listed beside the data.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from PIL import Image

from t2i.data.emoji import emoji_captions, square_glyph
from t2i.data.families import HELD_OUT, HELD_OUT_FRACTION, TRAIN, family_key, family_split
from t2i.data.layout import DataError, INFO, write_layout
from t2i.data.npm_packages import Package, default_cache_dir, find_package
from t2i.data.svg import SvgError, iconify_svg, render_svg

CORPUS_FORMAT = 1  # bump when the rows this module writes change for the same inputs


@dataclass(frozen=True)
class EmojiSet:
    """A published emoji set and what using it obliges."""

    package: str  # the npm package holding it (Iconify JSON: icons.json, chars.json, info.json)
    version: str  # the version fetched by default (a --from folder may hold another; info.json records it)
    style: str  # how captions name its drawing style: "grinning face, twemoji style"
    license: str  # SPDX identifier
    attribution: str  # the credit line a model trained on it must carry
    url: str  # where the designs and their licence live


EMOJI_SETS = {
    "noto": EmojiSet("@iconify-json/noto", "1.2.9", "noto style", "Apache-2.0",
                     "Noto Emoji by Google Inc., Apache License 2.0", "https://github.com/googlefonts/noto-emoji"),
    "noto-v1": EmojiSet("@iconify-json/noto-v1", "1.2.5", "old noto style", "Apache-2.0",
                        "Noto Emoji (version 1) by Google Inc., Apache License 2.0",
                        "https://github.com/googlefonts/noto-emoji"),
    "twemoji": EmojiSet("@iconify-json/twemoji", "1.2.5", "twemoji style", "CC-BY-4.0",
                        "Twemoji by Twitter, Inc. and other contributors, CC BY 4.0",
                        "https://github.com/jdecked/twemoji"),
    "fluent-flat": EmojiSet("@iconify-json/fluent-emoji-flat", "1.2.6", "fluent flat style", "MIT",
                            "Fluent Emoji (flat) by Microsoft Corporation, MIT License",
                            "https://github.com/microsoft/fluentui-emoji"),
    "fluent": EmojiSet("@iconify-json/fluent-emoji", "1.2.7", "fluent color style", "MIT",
                       "Fluent Emoji (color) by Microsoft Corporation, MIT License",
                       "https://github.com/microsoft/fluentui-emoji"),
    "emojione": EmojiSet("@iconify-json/emojione", "1.2.3", "emojione style", "CC-BY-4.0",
                         "EmojiOne 2 by Emoji One (Emojitwo), CC BY 4.0", "https://github.com/EmojiTwo/emojitwo"),
    "openmoji": EmojiSet("@iconify-json/openmoji", "1.2.29", "openmoji style", "CC-BY-SA-4.0",
                         "OpenMoji by the OpenMoji project (HfG Schwäbisch Gmünd), CC BY-SA 4.0",
                         "https://github.com/hfg-gmuend/openmoji"),
    "streamline": EmojiSet("@iconify-json/streamline-emojis", "1.2.4", "streamline style", "CC-BY-4.0",
                           "Streamline Emojis by Webalys (Streamline), CC BY 4.0",
                           "https://github.com/webalys-hq/streamline-vectors"),
}
# No ShareAlike set by default: weights trained on them may have to be shared alike (docs/corpus.md).
DEFAULT_SETS = ("noto", "noto-v1", "twemoji", "fluent-flat", "fluent", "emojione")
ANNOTATIONS = ("emojibase-data", "17.0.0")  # CLDR keywords, groups and subgroups (MIT; CLDR: Unicode License v3)
ANNOTATIONS_CREDIT = "emojibase-data by Miles Johnson (MIT), from Unicode CLDR annotations (Unicode License v3)"


@dataclass
class EmojiSetsConfig:
    """What `write_emoji_sets` builds."""

    sets: tuple[str, ...] = DEFAULT_SETS  # names of EMOJI_SETS, in output order
    size: int = 64  # image side in pixels
    supersample: int = 2  # SVGs are drawn at size × this, cropped to their ink, then resized like font glyphs
    held_out_fraction: float = HELD_OUT_FRACTION  # share of concept families held out (fixed salt: see families.py)
    limit: int | None = None  # at most this many images per set (None: all)
    max_failure_rate: float = 0.05  # abort when more than this share of a set's entries fails to render


@dataclass
class _Concept:
    """What the annotations say about one emoji (one code-point sequence)."""

    name: str  # CLDR short name in plain words: "thumbs up, medium skin tone"
    captions: list[str]  # name, Unicode name, aliases (emoji_captions)
    keywords: list[str] = field(default_factory=list)  # CLDR keywords (emojibase "tags")
    group: str | None = None  # "people and body"
    subgroup: str | None = None  # "hand fingers closed"


def _codepoints(hexcode: str) -> tuple[int, ...]:
    """"1F44D-1F3FD" or "1f44d-fe0f" -> (0x1F44D, 0x1F3FD) / (0x1F44D,): U+FE0F is dropped everywhere."""
    return tuple(cp for cp in (int(h, 16) for h in re.split(r"[-_ ]", hexcode.strip()) if h) if cp != 0xFE0F)


def _slug(text: str) -> str:
    """"Man: Red Hair" -> "man-red-hair", the way Iconify names icons."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower().replace("’", "").replace("'", "")).strip("-")


def _words(text: str) -> str:
    return " ".join(text.replace("&", "and").split())


def load_concepts(annotations: Package | None) -> dict[tuple[int, ...], _Concept]:
    """Every emoji the `emoji` package or the annotations name, keyed by code points (without U+FE0F)."""
    from t2i.data.emoji import _emoji_list

    concepts = {cps: _Concept("", emoji_captions(cps, name, aliases)) for cps, name, aliases in _emoji_list()}
    for concept in concepts.values():
        concept.name = concept.captions[0]
    if annotations is None:
        return concepts
    data, messages = annotations.read_json("en/data.json"), annotations.read_json("en/messages.json")
    groups = {g["order"]: _words(g["message"]) for g in messages["groups"]}
    subgroups = {g["order"]: _words(g["message"]) for g in messages["subgroups"]}
    for entry in data:
        for item in [entry, *entry.get("skins", [])]:
            cps = _codepoints(item["hexcode"])
            if cps not in concepts:
                name = _words(item["label"].replace(":", ",").lower())
                concepts[cps] = _Concept(name, emoji_captions(cps, name, []))
            c = concepts[cps]
            c.keywords = [k for k in entry.get("tags", []) if sum(ch.isalpha() for ch in k) > 2]
            c.group, c.subgroup = groups.get(entry.get("group")), subgroups.get(entry.get("subgroup"))
    return concepts


def _resolver(concepts: dict, packages: dict[str, Package]) -> dict[str, tuple[int, ...]]:
    """Icon name -> code points, from every set's chars.json, then the slugs of CLDR names. Private-use code
    points (a set's own extras) lose to real emoji of the same name."""
    names: dict[str, tuple[int, ...]] = {}
    for package in packages.values():
        for hexcode, icon in (_chars(package) or {}).items():
            cps = _codepoints(hexcode)
            if icon not in names or (names[icon] and 0xE000 <= names[icon][0] <= 0xF8FF):
                names[icon] = cps
    for cps, concept in concepts.items():
        names.setdefault(_slug(concept.name), cps)
    for cps, concept in concepts.items():  # aliases and Unicode names: "blond-haired-person"
        for caption in concept.captions:
            names.setdefault(_slug(caption), cps)
    return names


_TONE_SUFFIX = re.compile(r"-(light|medium-light|medium|medium-dark|dark)-skin-tone$")
_TONE_CODES = {"light": 0x1F3FB, "medium-light": 0x1F3FC, "medium": 0x1F3FD, "medium-dark": 0x1F3FE, "dark": 0x1F3FF}


def _lookup(icon_name: str, names: dict[str, tuple[int, ...]]) -> tuple[int, ...] | None:
    """The code points an icon name stands for; "x-dark-skin-tone" is x with the tone after its first code point."""
    if icon_name in names:
        return names[icon_name]
    tone = _TONE_SUFFIX.search(icon_name)
    base = names.get(icon_name[: tone.start()]) if tone else None
    return (base[0], _TONE_CODES[tone.group(1)], *base[1:]) if base else None


def _chars(package: Package) -> dict | None:
    return package.read_json("chars.json") if package.has("chars.json") else None


def caption_set(concept: _Concept, style: str) -> list[str]:
    """Every caption of an image, best first: its name with the set's style, then its name, Unicode name and
    aliases, its CLDR keywords in one caption, and its name with its subgroup and group."""
    out = [f"{concept.name}, {style}", *concept.captions]
    keywords = [k for k in concept.keywords if k != concept.name]
    if keywords:
        out.append(", ".join(keywords))
    if concept.group:
        out.append(", ".join(x for x in (concept.name, concept.subgroup, concept.group) if x))
    return list(dict.fromkeys(out))  # order kept, repeats dropped


def _set_entries(name: str, package: Package, concepts: dict, names: dict, skipped: Counter, limit: int | None):
    """(code points, icon name, svg document) of each usable icon of a set, in code-point order."""
    icons = package.read_json("icons.json")
    width, height = icons.get("width", 16), icons.get("height", 16)
    chars = _chars(package)
    own = {}
    for hexcode, icon in (chars or {}).items():
        own.setdefault(icon, _codepoints(hexcode))
    by_cps: dict[tuple[int, ...], tuple[str, dict]] = {}
    for icon_name, icon in icons.get("icons", {}).items():
        if icon.get("hidden"):  # kept by Iconify for old links only: a renamed or older drawing
            skipped[f"{name}: hidden"] += 1
            continue
        cps = own.get(icon_name) or (_lookup(icon_name, names) if icon_name.strip() else None)
        if not cps or cps not in concepts:  # no name, a name no emoji has, or the set's own extra
            skipped[f"{name}: " + ("no_name" if not icon_name.strip() else "unmatched" if not cps else "not_an_emoji")] += 1
            continue
        if cps in by_cps:
            skipped[f"{name}: duplicate"] += 1
            continue
        by_cps[cps] = (icon_name, icon)
    out = []
    for cps in sorted(by_cps):
        if limit is not None and len(out) >= limit:
            break
        icon_name, icon = by_cps[cps]
        try:
            out.append((cps, icon_name, iconify_svg(icon, width, height)))
        except SvgError:
            skipped[f"{name}: no_body"] += 1
    return out


def _ink(svg: str, cfg: EmojiSetsConfig) -> Image.Image:
    """The SVG drawn at size × supersample, cropped to its visible pixels, squared and composited on white
    exactly as the font source does its glyphs (`t2i.data.emoji.square_glyph`)."""
    glyph = render_svg(svg, cfg.size * cfg.supersample)
    box = glyph.getchannel("A").getbbox()
    if box is None:
        raise SvgError("draws nothing")
    return square_glyph(glyph.crop(box), cfg.size)


def held_out_words(rows: list[dict]) -> dict[str, list[str]]:
    """Words of held-out captions (names, aliases, keywords) that occur in no training caption, each with the
    held-out names it comes from: prompts in these words test meaning the captions never taught."""
    def words(row):
        return {w for c in row["captions"] for w in re.findall(r"[a-z][a-z'’-]*[a-z]", c.lower())}

    seen = set().union(*(words(r) for r in rows if r["split"] == TRAIN))
    out: dict[str, set[str]] = {}
    for row in rows:
        if row["split"] == HELD_OUT:
            for w in words(row) - seen:
                out.setdefault(w, set()).add(row["name"])
    return {w: sorted(names) for w, names in sorted(out.items())}


def licenses_markdown(sets: dict[str, EmojiSet], versions: dict[str, str]) -> str:
    """LICENSES.md: each set's licence and the attribution anything made from it must carry."""
    lines = ["# Licences of this corpus", "",
             "Every row of metadata.jsonl names its `set`, `license` and `attribution`. A model trained on these "
             "images should carry, in its card, every attribution line below of the sets it used.", "",
             "| set | package | licence | attribution | designs |", "|---|---|---|---|---|"]
    for name, s in sets.items():
        lines.append(f"| {name} | {s.package}@{versions[name]} | {s.license} | {s.attribution} | {s.url} |")
    lines += ["", f"Captions: names and aliases from the `emoji` Python package (BSD), Unicode names from Python's "
              f"unicodedata, keywords, groups and subgroups from {ANNOTATIONS_CREDIT}.", "",
              "Apache-2.0 and MIT: keep the copyright and licence notice. CC-BY-4.0: credit the creator, link the "
              "licence, say that the images were changed (rasterised, cropped, resized, composited on white). "
              "CC-BY-SA-4.0 also requires material adapted from the images to be shared under the same licence.", ""]
    return "\n".join(lines)


def _check_sets(names: tuple[str, ...]) -> None:
    unknown = [s for s in names if s not in EMOJI_SETS]
    if unknown or not names:
        raise DataError(f"unknown emoji set(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(EMOJI_SETS)}")


def fetch_emoji_sets(names: tuple[str, ...] = DEFAULT_SETS, *, source: Path | None = None,
                     cache_dir: Path | None = None, download: bool = True) -> list[str]:
    """Make sure the packages of `names` (and the annotations) are at hand; one line per package saying where."""
    _check_sets(names)
    wanted = [(EMOJI_SETS[n].package, EMOJI_SETS[n].version) for n in names] + [ANNOTATIONS]
    found = [find_package(p, v, source=source, cache_dir=cache_dir or default_cache_dir(), download=download)
             for p, v in wanted]
    return [f"{p.name}@{p.version}: {p.path}" for p in found]


def write_emoji_sets(out_dir: str | Path, cfg: EmojiSetsConfig = EmojiSetsConfig(), *, source: Path | None = None,
                     cache_dir: Path | None = None, download: bool = True) -> Path:
    """Build the corpus into `out_dir` (imagefolder layout + LICENSES.md + held_out_words.json).

    Packages come from `source` (a folder or tarball) or the cache (`default_cache_dir()`), fetched with npm
    when missing and `download`. A folder built before from the same packages, settings, library versions and
    CORPUS_FORMAT (its info.json's `build_key`) is left as it is: a cache hit.
    """
    _check_sets(cfg.sets)
    start = time.perf_counter()
    cache_dir = cache_dir or default_cache_dir()
    sets = {name: EMOJI_SETS[name] for name in cfg.sets}

    def get(package, version):
        return find_package(package, version, source=source, cache_dir=cache_dir, download=download)

    packages = {name: get(s.package, s.version) for name, s in sets.items()}
    annotations = get(*ANNOTATIONS)
    info = _info(cfg, packages, annotations)
    out_dir = Path(out_dir)
    if (out_dir / INFO).is_file() and json.loads((out_dir / INFO).read_text()).get("build_key") == info["build_key"]:
        print(f"{out_dir} is up to date (same packages, settings and versions): nothing to do")
        return out_dir

    concepts = load_concepts(annotations)
    names = _resolver(concepts, packages)
    skipped: Counter = Counter()
    rows = []  # metadata of every image, before rendering
    for name, s in sets.items():
        entries = _set_entries(name, packages[name], concepts, names, skipped, cfg.limit)
        bodies = Counter(svg for _, _, svg in entries)
        for cps, icon_name, svg in entries:
            c = concepts[cps]
            split = family_split(cps, cfg.held_out_fraction)
            if bodies[svg] > 1:  # one drawing under two names: never held out under one, trained on under the other
                split = TRAIN
            rows.append({"set": name, "style": s.style, "license": s.license, "attribution": s.attribution,
                         "icon": icon_name, "codepoints": " ".join(f"{cp:04X}" for cp in cps), "name": c.name,
                         "captions": caption_set(c, s.style), "family": family_key(cps), "group": c.group,
                         "subgroup": c.subgroup, "split": split, "_svg": svg})
    words = held_out_words(rows)
    info.update(_stats(rows, words))
    info["skipped"] = skipped  # render failures are added while writing; write_layout saves info last
    files = {"LICENSES.md": licenses_markdown(sets, {n: p.version for n, p in packages.items()}),
             "held_out_words.json": json.dumps(words, indent=1, sort_keys=True) + "\n"}

    def items() -> Iterator[tuple[Image.Image, str, dict]]:
        failed = Counter()
        for row in rows:
            row = dict(row)
            svg = row.pop("_svg")
            try:
                image = _ink(svg, cfg)
            except SvgError:
                failed[row["set"]] += 1
                skipped[f"{row['set']}: render_failed"] += 1
                if failed[row["set"]] > cfg.max_failure_rate * info["images_per_set"][row["set"]]:
                    raise DataError(f"more than {cfg.max_failure_rate:.0%} of set {row['set']} failed to render")
                continue
            yield image, row["captions"][0], row
        info["images_per_set"] = {k: v - failed[k] for k, v in info["images_per_set"].items()}
        info["skipped"] = dict(sorted(skipped.items()))
        info["build_seconds"] = round(time.perf_counter() - start, 1)

    return write_layout(out_dir, items(), info, files=files)


def _info(cfg: EmojiSetsConfig, packages: dict[str, Package], annotations: Package) -> dict:
    import emoji
    import resvg_py

    info = {"source": "emoji-sets", "config": asdict(cfg), "format": CORPUS_FORMAT,
            "packages": {n: {"package": p.name, "version": p.version, "sha256": p.sha256, "path": str(p.path)}
                         for n, p in {**packages, "annotations": annotations}.items()},
            "emoji_package_version": emoji.__version__, "resvg_py_version": resvg_py.__version__,
            "split_rule": "family v2 (t2i.data.families)"}
    # The same packages (by content; a folder by path), settings and code: the same corpus.
    key = json.dumps(info, sort_keys=True, default=str)
    info["build_key"] = hashlib.sha256(key.encode()).hexdigest()[:16]
    return info


def _stats(rows: list[dict], words: dict) -> dict:
    vocabulary = {w for r in rows for c in r["captions"] for w in re.findall(r"[a-z0-9][a-z0-9'’-]*", c.lower())}
    held = [r for r in rows if r["split"] == HELD_OUT]
    return {"images_per_set": dict(Counter(r["set"] for r in rows)),
            "captions_per_image": round(sum(len(r["captions"]) for r in rows) / max(1, len(rows)), 2),
            "vocabulary": len(vocabulary), "concepts": len({r["codepoints"] for r in rows}),
            "families": len({r["family"] for r in rows}), "held_out_families": len({r["family"] for r in held}),
            "held_out_images": len(held), "held_out_words": len(words)}
