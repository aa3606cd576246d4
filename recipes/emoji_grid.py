"""A grid of held-out emoji prompts: the real emoji, then what the model draws for its name (seeds 0..n-1).

Held-out emoji are never seen in training (`t2i data emoji` marks them, `--split train` leaves them out),
so each row asks the model for something it has only seen described in other emoji's names.

    python recipes/emoji_grid.py --model outputs/emoji/pipeline --data outputs/emoji/data \
        --out docs/images/emoji_held_out.png --rows 16 --n 6
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image, ImageDraw

CELL = 96  # pixels per image in the grid (32-px images enlarged 3×, nearest neighbour)
LABEL = 300  # pixels of caption text on the left
GAP = 8  # pixels between the real emoji and the generated ones


def held_out_rows(data: Path, rows: int) -> list[dict]:
    """The first `rows` held-out emoji in a fixed spread: single emoji first (one per group, in code-point order,
    every k-th), then flags and sequences, so the grid is not all one kind."""
    lines = [json.loads(line) for line in (data / "metadata.jsonl").read_text(encoding="utf-8").splitlines()]
    held = [r for r in lines if r.get("split") == "held_out"]
    singles = [r for r in held if r["kind"] == "single"]
    others = [r for r in held if r["kind"] in ("flag", "sequence", "keycap")]
    n_others = rows // 4
    pick = lambda xs, k: [xs[round(i * len(xs) / k)] for i in range(k)] if k and xs else []  # noqa: E731
    return pick(singles, rows - min(n_others, len(others))) + pick(others, min(n_others, len(others)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=None, help="pipeline folder (default: the shipped emoji model)")
    p.add_argument("--data", type=Path, required=True, help="the emoji data folder (t2i data emoji)")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--rows", type=int, default=16, help="held-out prompts")
    p.add_argument("--n", type=int, default=6, help="generated images per prompt (seeds 0..n-1)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the pipeline's)")
    p.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the pipeline's)")
    args = p.parse_args()

    import t2i

    pipe = t2i.load(args.model)
    rows = held_out_rows(args.data, args.rows)
    width = LABEL + CELL + GAP + args.n * CELL
    grid = Image.new("RGB", (width, CELL * len(rows)), "white")
    draw = ImageDraw.Draw(grid)
    for i, row in enumerate(rows):
        y = i * CELL
        draw.text((6, y + CELL // 2 - 6), row["text"][:46], fill="black")
        real = Image.open(args.data / row["file_name"]).convert("RGB")
        grid.paste(real.resize((CELL, CELL), Image.Resampling.NEAREST), (LABEL, y))
        images = pipe(row["text"], num_images=args.n, seed=0, steps=args.steps, guidance=args.guidance)
        for k, img in enumerate(images):
            grid.paste(img.resize((CELL, CELL), Image.Resampling.NEAREST), (LABEL + CELL + GAP + k * CELL, y))
        print(f"{row['text']}: done", flush=True)
    draw.line([(LABEL + CELL + GAP // 2, 0), (LABEL + CELL + GAP // 2, grid.height)], fill=(160, 160, 160), width=2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out)
    print(f"wrote {args.out}: {len(rows)} held-out prompts × (real + {args.n} generated)")


if __name__ == "__main__":
    main()
