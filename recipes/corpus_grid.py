"""The same concepts in every style of a `t2i data emoji-sets` folder, one row per concept, one column per set.

    python recipes/corpus_grid.py CORPUS docs/images/corpus_styles.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw

# Eight concepts that every default set draws: a face, a hand with a skin tone, a symbol, an animal,
# food, a vehicle, a drink and an object. (Fluent and Iconify's Noto draw no country flags; Noto v1 and
# EmojiOne 2 lack some neutral people.)
CONCEPTS = ["1F600", "1F44D 1F3FD", "2764", "1F98A", "1F34E", "1F680", "2615", "1F3B8"]


def main(corpus: Path, out: Path, cell: int = 64, label: int = 176) -> None:
    rows = [json.loads(line) for line in (corpus / "metadata.jsonl").read_text(encoding="utf-8").splitlines()]
    sets = list(dict.fromkeys(r["set"] for r in rows))
    found = {(r["codepoints"], r["set"]): r for r in rows if r["codepoints"] in CONCEPTS}
    grid = Image.new("RGB", (label + cell * len(sets), 16 + cell * len(CONCEPTS)), "white")
    draw = ImageDraw.Draw(grid)
    for j, name in enumerate(sets):
        draw.text((label + j * cell + 2, 2), name, fill="black")
    for i, cps in enumerate(CONCEPTS):
        names = [r["name"] for (c, _), r in found.items() if c == cps]
        draw.text((2, 16 + i * cell + cell // 2 - 6), (names or [cps])[0][:29], fill="black")
        for j, name in enumerate(sets):
            if (cps, name) in found:
                with Image.open(corpus / found[cps, name]["file_name"]) as im:
                    grid.paste(im.convert("RGB").resize((cell, cell)), (label + j * cell, 16 + i * cell))
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    print(f"wrote {out} ({len(CONCEPTS)} concepts × {len(sets)} sets)")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
