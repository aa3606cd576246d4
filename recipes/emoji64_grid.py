"""The 64-px model's grid: 8 seen and 8 held-out prompts of the emoji-sets corpus, the real image beside each.

One row per prompt ("cat face, twemoji style"): the real emoji of that set, then what the model draws
(seeds 0..n-1). Prompts cover faces, people, animals, food, places, activities, objects and symbols: per
corpus group one concept the model trained on and one from the held-out families (never drawn in any style),
each in a different set's style, picked by a fixed rule (no cherry-picking).

    python recipes/emoji64_grid.py --model outputs/emoji64/pipeline --data outputs/emoji64/data \
        --out docs/images/emoji64_grid.png --n 6
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image, ImageDraw

CELL = 64  # the images at their own size: no enlargement that would hide or invent detail
LABEL = 250  # pixels of caption text on the left
GAP = 8  # pixels between the real emoji and the generated ones
GROUPS = ["smileys and emotion", "people and body", "animals and nature", "food and drink", "travel and places",
          "activities", "objects", "symbols"]


def pick_rows(data: Path) -> list[dict]:
    """Per group, one seen and one held-out concept: of the single-code-point concepts that every set draws, the
    one in the middle of code-point order; its set rotates with the group so that every style shows."""
    rows = [json.loads(line) for line in (data / "metadata.jsonl").read_text(encoding="utf-8").splitlines()]
    sets = list(dict.fromkeys(r["set"] for r in rows))
    by_concept: dict[str, dict[str, dict]] = {}
    for r in rows:
        by_concept.setdefault(r["codepoints"], {})[r["set"]] = r
    seen, held = [], []
    for i, group in enumerate(GROUPS):
        for split, out, shift in (("train", seen, 0), ("held_out", held, len(sets) // 2)):
            full = sorted(c for c, per_set in by_concept.items() if len(per_set) == len(sets) and " " not in c
                          and next(iter(per_set.values())).get("group") == group
                          and next(iter(per_set.values())).get("split", "train") == split)
            if full:
                out.append(by_concept[full[len(full) // 2]][sets[(i + shift) % len(sets)]])
    return [dict(r, shown_as="seen") for r in seen] + [dict(r, shown_as="held out") for r in held]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=None, help="pipeline folder (default: the shipped model)")
    p.add_argument("--data", type=Path, required=True, help="the corpus (t2i data emoji-sets)")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--n", type=int, default=6, help="generated images per prompt (seeds 0..n-1)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the pipeline's)")
    p.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the pipeline's)")
    args = p.parse_args()

    import t2i

    pipe = t2i.load(args.model)
    rows = pick_rows(args.data)
    cell = max(CELL, pipe.image_size)
    grid = Image.new("RGB", (LABEL + cell + GAP + args.n * cell, cell * len(rows)), "white")
    draw = ImageDraw.Draw(grid)
    for i, row in enumerate(rows):
        y = i * cell
        draw.text((6, y + cell // 2 - 12), row["text"][:40], fill="black")
        draw.text((6, y + cell // 2 + 2), f"({row['shown_as']})", fill=(110, 110, 110))
        with Image.open(args.data / row["file_name"]) as real:
            grid.paste(real.convert("RGB").resize((cell, cell), Image.Resampling.BICUBIC), (LABEL, y))
        images = pipe(row["text"], num_images=args.n, seed=0, steps=args.steps, guidance=args.guidance)
        for k, img in enumerate(images):
            grid.paste(img.resize((cell, cell), Image.Resampling.BICUBIC), (LABEL + cell + GAP + k * cell, y))
        print(f"{row['text']} ({row['shown_as']}): done", flush=True)
    draw.line([(LABEL + cell + GAP // 2, 0), (LABEL + cell + GAP // 2, grid.height)], fill=(160, 160, 160), width=2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out)
    print(f"wrote {args.out}: {len(rows)} prompts × (real + {args.n} generated)")


if __name__ == "__main__":
    main()
