"""Real images no one here drew: the glyphs of a colour-emoji font, captioned with their Unicode names.

Single code points ("grinning face"), flags ("flag of france") and skin-tone variants
("thumbs up sign, medium skin tone"), each kept only if the font draws it as one non-empty image.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import unicodedata
from pathlib import Path
from typing import Iterator

import PIL
from fontTools.ttLib import TTFont
from PIL import Image, ImageDraw, ImageFont

from t2i.data.layout import DataError, fit_square, write_layout

# Noto Color Emoji is a bitmap (CBDT) font whose strikes exist only at 109 px; FreeType refuses other sizes.
FONT_PIXELS = 109
SKIN_TONES = {  # Fitzpatrick modifiers, named as in Unicode's CLDR short names
    0x1F3FB: "light skin tone",
    0x1F3FC: "medium-light skin tone",
    0x1F3FD: "medium skin tone",
    0x1F3FE: "medium-dark skin tone",
    0x1F3FF: "dark skin tone",
}
_REGIONAL_A, _REGIONAL_Z = 0x1F1E6, 0x1F1FF
# Code points that are parts of sequences, not images by themselves.
_NOT_EMOJI = {0x200D, 0x20E3, 0xFE0E, 0xFE0F}  # ZWJ, combining keycap, variation selectors
_HAIR_COMPONENTS = range(0x1F9B0, 0x1F9B4)  # red, curly, bald, white hair: only meaningful inside a ZWJ sequence
_TAGS = range(0xE0000, 0xE0080)
# Regions that have a flag emoji but no ISO 3166-1 entry (Unicode's CLDR names).
_EXTRA_REGIONS = {
    "AC": "Ascension Island",
    "CP": "Clipperton Island",
    "DG": "Diego Garcia",
    "EA": "Ceuta and Melilla",
    "EU": "European Union",
    "IC": "Canary Islands",
    "TA": "Tristan da Cunha",
    "UN": "United Nations",
    "XK": "Kosovo",
}
_COUNTRY_FILES = (Path("/usr/share/iso-codes/json/iso_3166-1.json"), Path("/usr/share/zoneinfo/iso3166.tab"))


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


def _is_single_emoji(cp: int) -> bool:
    if cp < 0x80 or cp in _NOT_EMOJI or cp in SKIN_TONES or cp in _HAIR_COMPONENTS or cp in _TAGS:
        return False
    if _REGIONAL_A <= cp <= _REGIONAL_Z:
        return False
    return unicodedata.category(chr(cp)) != "Co"  # private-use glyphs have no meaning to caption


def _country_names() -> dict[str, str]:
    """ISO 3166 alpha-2 code -> country name, from Debian's iso-codes or tzdata if installed."""
    names = {}
    iso_codes, tzdata = _COUNTRY_FILES
    if iso_codes.is_file():
        for row in json.loads(iso_codes.read_text(encoding="utf-8"))["3166-1"]:
            names[row["alpha_2"]] = row.get("common_name", row["name"])
    elif tzdata.is_file():
        for line in tzdata.read_text(encoding="utf-8").splitlines():
            if line and not line.startswith("#"):
                code, name = line.split("\t", 1)
                names[code] = name
    return {**names, **_EXTRA_REGIONS}


def _draw(font: ImageFont.FreeTypeFont, text: str) -> Image.Image | None:
    """The text drawn in colour, cropped to its visible pixels (RGBA); None if nothing is visible."""
    left, top, right, bottom = font.getbbox(text)
    pad = FONT_PIXELS // 4  # some glyphs draw a little outside their advance box
    canvas = Image.new("RGBA", (right - left + 2 * pad, bottom - top + 2 * pad), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((pad - left, pad - top), text, font=font, embedded_color=True)
    box = canvas.getchannel("A").getbbox()
    return canvas.crop(box) if box else None


def _square(glyph: Image.Image, size: int) -> Image.Image:
    """Pad to a centred transparent square, then composite on white and resize (see `fit_square`)."""
    side = max(glyph.size)
    square = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    square.paste(glyph, ((side - glyph.width) // 2, (side - glyph.height) // 2))
    return fit_square(square, size)


def _candidates(cmap: dict[int, str], font: ImageFont.FreeTypeFont) -> list[tuple[tuple[int, ...], str, str]]:
    """(code points, caption, kind) for every sequence to try, sorted by code points."""
    one_glyph = font.getlength("\U0001F600") * 1.5  # a ligature is one advance wide, two glyphs are two
    out = []
    singles = [cp for cp in sorted(cmap) if _is_single_emoji(cp)]
    for cp in singles:
        name = unicodedata.name(chr(cp), "")
        if not name:  # newer than Python's Unicode database: no caption to give it
            continue
        out.append(((cp,), name.lower(), "single"))
        for tone, tone_name in SKIN_TONES.items():
            if tone in cmap and font.getlength(chr(cp) + chr(tone)) < one_glyph:
                out.append(((cp, tone), f"{name.lower()}, {tone_name}", "skin_tone"))
    countries = _country_names()
    letters = [cp for cp in range(_REGIONAL_A, _REGIONAL_Z + 1) if cp in cmap]
    for first in letters:
        for second in letters:
            code = chr(ord("A") + first - _REGIONAL_A) + chr(ord("A") + second - _REGIONAL_A)
            if font.getlength(chr(first) + chr(second)) < one_glyph:
                name = countries.get(code)
                caption = f"flag of {name.lower()}" if name else f"flag {code}"
                out.append(((first, second), caption, "flag"))
    return sorted(out)


def render_emoji(
    font_path: str | Path, size: int, *, limit: int | None = None
) -> Iterator[tuple[Image.Image, str, dict]]:
    """Yield (image, caption, extra) for each emoji the font draws, in code-point order, at size×size RGB.

    Each glyph is drawn at the font's 109-px strike, cropped to its visible pixels, padded to a square,
    composited on white and resized. Skipped: components that are not images by themselves, code points
    Python's Unicode database cannot name, glyphs that draw nothing, flags the font draws as its
    unknown-region placeholder, and skin-tone variants it draws like the base. extra is
    {"codepoints": "1F44D 1F3FD", "name": caption, "kind": "single" | "skin_tone" | "flag"}.
    """
    try:
        font = ImageFont.truetype(str(font_path), FONT_PIXELS)
    except OSError as e:
        raise DataError(f"cannot load emoji font {font_path} at {FONT_PIXELS} px: {e}") from None
    cmap = TTFont(str(font_path), lazy=True).getBestCmap()
    # ZZ is a user-assigned code, never a country: whatever the font draws for it is its placeholder.
    unknown_flag = _draw(font, chr(_REGIONAL_Z) * 2)
    unknown_flag = unknown_flag.tobytes() if unknown_flag else None
    bases: dict[int, bytes] = {}
    n = 0
    for codepoints, caption, kind in _candidates(cmap, font):
        if limit is not None and n >= limit:
            return
        glyph = _draw(font, "".join(map(chr, codepoints)))
        if glyph is None:
            continue
        if kind == "single":
            bases[codepoints[0]] = glyph.tobytes()
        elif kind == "flag" and glyph.tobytes() == unknown_flag:
            continue
        elif kind == "skin_tone" and glyph.tobytes() == bases.get(codepoints[0]):
            continue
        extra = {"codepoints": " ".join(f"{cp:04X}" for cp in codepoints), "name": caption, "kind": kind}
        yield _square(glyph, size), caption, extra
        n += 1


def write_emoji(out_dir: str | Path, size: int, *, font: str | Path | None = None, limit: int | None = None) -> Path:
    """Render the emoji of `font` (default: `find_emoji_font()`) into `out_dir` (imagefolder layout)."""
    font_path = Path(font) if font is not None else find_emoji_font()
    if not font_path.is_file():
        raise DataError(f"emoji font {font_path} does not exist")
    info = {
        "source": "emoji",
        "size": size,
        "limit": limit,
        "font": str(font_path),
        "font_sha256": hashlib.sha256(font_path.read_bytes()).hexdigest(),
        # Captions come from Python's Unicode database and pixels from Pillow's renderer: both can change.
        "unicode_version": unicodedata.unidata_version,
        "pillow_version": PIL.__version__,
    }
    return write_layout(out_dir, render_emoji(font_path, size, limit=limit), info)
