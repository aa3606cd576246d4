"""Real images no one here drew: the glyphs of a colour-emoji font, captioned with their names in plain words.

Which emoji exist, and their names, come from the PyPI package `emoji` (Unicode's emoji list with CLDR
short names, "thumbs up: medium skin tone", and GitHub/Slack-style aliases, "thumbsup"). Every fully
qualified emoji is tried: single code points, skin-tone variants, flags (region pairs and tag sequences),
keycaps and ZWJ sequences, each kept only if the font draws it as one new non-empty image. Each row gets
several captions (CLDR name, Unicode character name, aliases) and a fixed split (`emoji_split`): by concept
family (rule "v2", `t2i.data.families`, the default), or by the first rule ("v1", `emoji_split_v1`), which
the shipped emoji model was trained and evaluated on and which leaks gender and hair variants.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Iterator

import PIL
import PIL.features
from fontTools.ttLib import TTFont
from PIL import Image, ImageDraw, ImageFont

from t2i.data.families import HELD_OUT, HELD_OUT_FRACTION, family_split
from t2i.data.layout import TRAIN, DataError, write_layout
from t2i.images import fit_square

# Noto Color Emoji is a bitmap (CBDT) font whose strikes exist only at 109 px; FreeType refuses other sizes.
FONT_PIXELS = 109
SKIN_TONES = {  # Fitzpatrick modifiers, named as in Unicode's CLDR short names
    0x1F3FB: "light skin tone",
    0x1F3FC: "medium-light skin tone",
    0x1F3FD: "medium skin tone",
    0x1F3FE: "medium-dark skin tone",
    0x1F3FF: "dark skin tone",
}
_VS16 = 0xFE0F  # emoji presentation selector: in the emoji list's sequences, not in the font's
_ZWJ, _KEYCAP, _BLACK_FLAG = 0x200D, 0x20E3, 0x1F3F4
_REGIONAL_A, _REGIONAL_Z = 0x1F1E6, 0x1F1FF
_TAGS = range(0xE0020, 0xE0080)
_TONE_WORDS = re.compile(r" ((?:medium-)?(?:light|dark)|medium) skin tone")
_SPLIT_SALT = "t2i emoji split v1"  # changing it would reshuffle the held-out set: never change it
DEFAULT_SPLIT_RULE = "v2"


def find_emoji_font() -> Path:
    """The path of a colour-emoji font: Noto Color Emoji under /usr/share/fonts, else what fc-match finds."""
    for root in (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".local/share/fonts"):
        if root.is_dir():
            found = sorted(root.rglob("NotoColorEmoji*.ttf"))
            if found:
                return found[0]
    if shutil.which("fc-match"):
        result = subprocess.run(
            ["fc-match", "--format=%{file}", "Noto Color Emoji"], capture_output=True, text=True, check=False
        )
        # fc-match always answers with some font; only an emoji font will do.
        path = Path(result.stdout.strip())
        if result.returncode == 0 and "emoji" in path.name.lower() and path.is_file():
            return path
    raise DataError(
        "no colour emoji font found: install Debian's fonts-noto-color-emoji "
        "(apt-get install fonts-noto-color-emoji) or pass --font PATH"
    )


def emoji_split_v1(codepoints: tuple[int, ...]) -> str:
    """The first split rule ("v1"): "held_out" for a fixed ~10 % of emoji, else "train".

    The key is the sequence without presentation selectors and skin-tone modifiers, so an emoji and its
    skin-tone variants share a split, but gender and hair variants do not ("man gesturing OK" held out,
    "woman gesturing OK" trained on): kept only because the shipped emoji model was trained and evaluated
    on it (its card says so). New data uses `family_split` ("v2").
    """
    key = " ".join(f"{cp:04X}" for cp in codepoints if cp != _VS16 and cp not in SKIN_TONES)
    digest = hashlib.sha256(f"{_SPLIT_SALT}: {key}".encode()).digest()
    return HELD_OUT if int.from_bytes(digest[:8], "big") < HELD_OUT_FRACTION * 2**64 else TRAIN


SPLIT_RULES = {"v1": emoji_split_v1, "v2": family_split}  # rule name -> split of a code-point sequence


def emoji_split(codepoints: tuple[int, ...], rule: str = DEFAULT_SPLIT_RULE) -> str:
    """"held_out" or "train" for an emoji under a split rule: "v2" (concept families, the default) or "v1"."""
    if rule not in SPLIT_RULES:
        raise DataError(f"unknown split rule {rule!r}; known: {', '.join(SPLIT_RULES)}")
    return SPLIT_RULES[rule](codepoints)


def _kind(codepoints: tuple[int, ...]) -> str:
    if all(_REGIONAL_A <= cp <= _REGIONAL_Z for cp in codepoints) or (
            codepoints[0] == _BLACK_FLAG and len(codepoints) > 1 and codepoints[1] in _TAGS):
        return "flag"
    if _KEYCAP in codepoints:
        return "keycap"
    if any(cp in SKIN_TONES for cp in codepoints):
        return "skin_tone"
    return "sequence" if len(codepoints) > 1 else "single"


def _plain(name: str) -> str:
    """':thumbs_up_medium_skin_tone:' -> 'thumbs up, medium skin tone' (lower case, words, tones set off by commas)."""
    text = name.strip(":").replace("_", " ").replace("’", "'").replace(" & ", " and ").lower()
    text = _TONE_WORDS.sub(r", \1 skin tone,", text).replace(",,", ",").rstrip(",")  # "person, dark skin tone, red hair"
    return " ".join(text.split())


def emoji_captions(codepoints: tuple[int, ...], cldr_name: str, aliases: list[str]) -> list[str]:
    """Every caption of an emoji, best first: its CLDR short name in plain words ("flag of X" for flags), its
    Unicode character name where Python knows it and it differs, then its aliases (other captions of two
    letters or fewer, like "fr", "+1", say nothing and are left out)."""
    name = _plain(cldr_name)
    kind = _kind(codepoints)
    captions = [f"flag of {name}" if kind == "flag" else name]
    if kind == "flag":
        captions.append(name)
    base = [cp for cp in codepoints if cp != _VS16]
    tones = [SKIN_TONES[cp] for cp in base if cp in SKIN_TONES]
    if len(base) - len(tones) == 1:  # one character, perhaps with a skin tone: it has a Unicode name
        unicode_name = unicodedata.name(chr(base[0]), "").lower()
        if unicode_name:
            captions.append(", ".join([unicode_name, *tones]))
    captions += [_plain(a) for a in aliases]
    out = captions[:1]
    for c in captions[1:]:
        if sum(ch.isalpha() for ch in c) > 2 and c not in out:
            out.append(c)
    return out


def _emoji_list() -> list[tuple[tuple[int, ...], str, list[str]]]:
    """(code points without U+FE0F, CLDR name, aliases) of every fully qualified emoji, in code-point order."""
    import emoji

    out, seen = [], set()
    for text, data in emoji.EMOJI_DATA.items():
        if data.get("status") != emoji.STATUS["fully_qualified"]:
            continue
        codepoints = tuple(ord(ch) for ch in text if ord(ch) != _VS16)
        if codepoints not in seen:
            seen.add(codepoints)
            out.append((codepoints, data["en"], list(data.get("alias", []))))
    return sorted(out)


def _draw(font: ImageFont.FreeTypeFont, text: str) -> Image.Image | None:
    """The text drawn in colour, cropped to its visible pixels (RGBA); None if nothing is visible."""
    left, top, right, bottom = font.getbbox(text)
    pad = FONT_PIXELS // 4  # some glyphs draw a little outside their advance box
    canvas = Image.new("RGBA", (right - left + 2 * pad, bottom - top + 2 * pad), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((pad - left, pad - top), text, font=font, embedded_color=True)
    box = canvas.getchannel("A").getbbox()
    return canvas.crop(box) if box else None


def square_glyph(glyph: Image.Image, size: int) -> Image.Image:
    """Pad to a centred transparent square, then composite on white and resize (see `fit_square`)."""
    side = max(glyph.size)
    square = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    square.paste(glyph, ((side - glyph.width) // 2, (side - glyph.height) // 2))
    return fit_square(square, size)


def render_emoji(
    font_path: str | Path, size: int, *, limit: int | None = None, only: set[str] | None = None,
    split_rule: str = DEFAULT_SPLIT_RULE,
) -> Iterator[tuple[Image.Image, str, dict]]:
    """Yield (image, caption, extra) for each emoji the font draws, in code-point order, at size×size RGB.

    Each glyph is drawn at the font's 109-px strike (with Pillow's complex-text layout, which applies the
    font's ligatures), cropped to its visible pixels, padded to a square, composited on white and resized.
    Skipped: emoji with a code point the font lacks; sequences it draws as several glyphs (wider than one
    and a half emoji), as its first code point alone (an unsupported skin tone or tag flag), or as its
    unknown-region placeholder; glyphs that draw nothing. extra is {"codepoints": "1F44D 1F3FD" (as drawn,
    without U+FE0F), "name": caption, "captions": [caption, ...], "kind": "single" | "skin_tone" | "flag" |
    "keycap" | "sequence", "split": "train" | "held_out"}. Images that are identical (a flag two regions
    share, "family" drawn as one of the families) are each kept with their own names, all in "train", so
    that no held-out image is ever trained on under another name. `only`: render just these emoji, given
    as their "codepoints" strings. `split_rule`: "v2" (concept families) or "v1" (see `emoji_split`).
    """
    if split_rule not in SPLIT_RULES:
        raise DataError(f"unknown split rule {split_rule!r}; known: {', '.join(SPLIT_RULES)}")
    try:
        font = ImageFont.truetype(str(font_path), FONT_PIXELS, layout_engine=ImageFont.Layout.RAQM)
    except (OSError, KeyError) as e:
        raise DataError(f"cannot load emoji font {font_path} at {FONT_PIXELS} px: {e}") from None
    if not PIL.features.check("raqm"):
        raise DataError("Pillow was built without libraqm, so it cannot draw emoji sequences as one glyph")
    cmap = TTFont(str(font_path), lazy=True).getBestCmap()
    one_glyph = font.getlength("\U0001F600") * 1.5  # a ligature is one advance wide, two glyphs are two
    # ZZ is a user-assigned code, never a country: whatever the font draws for it is its placeholder.
    placeholder = _draw(font, chr(_REGIONAL_Z) * 2)
    placeholder = _digest(placeholder) if placeholder is not None else None
    singles: dict[int, bytes] = {}
    rows = []  # (image, caption, extra, digest of the full-size glyph)
    for codepoints, cldr_name, aliases in _emoji_list():
        if limit is not None and len(rows) >= limit:
            break
        label = " ".join(f"{cp:04X}" for cp in codepoints)
        if only is not None and label not in only:
            continue
        text = "".join(map(chr, codepoints))
        if not all(cp in cmap for cp in codepoints) or font.getlength(text) > one_glyph:
            continue
        glyph = _draw(font, text)
        if glyph is None:
            continue
        digest = _digest(glyph)
        if len(codepoints) == 1:
            singles[codepoints[0]] = digest
        else:
            if codepoints[0] not in singles:  # a sequence before (or without) its first code point
                base = _draw(font, chr(codepoints[0]))
                singles[codepoints[0]] = _digest(base) if base is not None else b""
            if digest in (singles[codepoints[0]], placeholder):
                continue
        captions = emoji_captions(codepoints, cldr_name, aliases)
        extra = {"codepoints": label, "name": captions[0],
                 "captions": captions, "kind": _kind(codepoints), "split": emoji_split(codepoints, split_rule)}
        rows.append((square_glyph(glyph, size), captions[0], extra, digest))
    copies = Counter(digest for *_, digest in rows)
    for image, caption, extra, digest in rows:
        if copies[digest] > 1:
            extra["split"] = TRAIN
        yield image, caption, extra


def _digest(glyph: Image.Image) -> bytes:
    return hashlib.sha256(glyph.tobytes() + repr(glyph.size).encode()).digest()


def _debian_package_version(path: Path) -> str | None:
    """The version of the Debian package that installed `path` (e.g. fonts-noto-color-emoji 2.042-0+deb12u1)."""
    if not shutil.which("dpkg-query"):
        return None
    owner = subprocess.run(["dpkg-query", "-S", str(path)], capture_output=True, text=True, check=False)
    if owner.returncode or ":" not in owner.stdout:
        return None
    package = owner.stdout.split(":", 1)[0].strip()
    version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True,
                             check=False)
    return f"{package} {version.stdout.strip()}" if version.returncode == 0 else None


def write_emoji(out_dir: str | Path, size: int, *, font: str | Path | None = None, limit: int | None = None,
                split_rule: str = DEFAULT_SPLIT_RULE) -> Path:
    """Render the emoji of `font` (default: `find_emoji_font()`) into `out_dir` (imagefolder layout), split by
    `split_rule` ("v2": concept families; "v1": the shipped model's)."""
    import emoji

    font_path = Path(font) if font is not None else find_emoji_font()
    if not font_path.is_file():
        raise DataError(f"emoji font {font_path} does not exist")
    info = {
        "source": "emoji",
        "size": size,
        "limit": limit,
        "font": str(font_path),
        "font_sha256": hashlib.sha256(font_path.read_bytes()).hexdigest(),
        "font_package": _debian_package_version(font_path),
        # Which emoji exist and their names come from the emoji package, the Unicode names from Python's
        # database, the pixels from Pillow's renderer: any of them can change the data.
        "emoji_package_version": emoji.__version__,
        "unicode_version": unicodedata.unidata_version,
        "pillow_version": PIL.__version__,
        "held_out_fraction": HELD_OUT_FRACTION,
        "split_rule": split_rule,
    }
    return write_layout(out_dir, render_emoji(font_path, size, limit=limit, split_rule=split_rule), info)
