"""How often does a generated image have the prompted colour? (issue: demo target ≥ 95 %)

Prompts are single shapes in a form never used in training ("a red circle", "an orange square":
every training caption has a position or relation phrase): every colour × every shape, `--seeds` images each, seeds 0..n-1. An image
counts as right when its dominant foreground colour (t2i.evaluation.dominant_colour) is the prompted one.

    python benchmarks/colour_accuracy.py --model outputs/demo/pipeline
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import t2i
from t2i.data import COLOURS, SHAPES
from t2i.evaluation import dominant_colour


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=Path("outputs/demo/pipeline"), help="pipeline folder")
    p.add_argument("--seeds", type=int, default=4, help="images per (colour, shape) prompt")
    p.add_argument("--guidance", type=float, nargs="+", default=[1.0, 2.0, 4.0, 6.0], help="guidance scales")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the pipeline's)")
    p.add_argument("--sampler", default=None, help="sampler (default: the pipeline's)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (set deliberately: 2-core machines stall)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    pipe = t2i.load(args.model)
    args.steps, args.sampler = args.steps or pipe.defaults["steps"], args.sampler or pipe.defaults["sampler"]
    prompts = [(c, f"{'an' if c[0] in 'aeiou' else 'a'} {c} {s}") for c in COLOURS for s in SHAPES]
    rows = []
    for g in args.guidance:
        start = time.perf_counter()
        per_colour = {c: [0, 0] for c in COLOURS}
        images = pipe([p for _, p in prompts], num_images=args.seeds, seed=0, guidance=g, steps=args.steps,
                      sampler=args.sampler)
        for k, img in enumerate(images):
            colour = prompts[k // args.seeds][0]
            per_colour[colour][0] += dominant_colour(img) == colour
            per_colour[colour][1] += 1
        right = sum(v[0] for v in per_colour.values())
        total = sum(v[1] for v in per_colour.values())
        rows.append({"guidance": g, "accuracy": right / total, "images": total,
                     "per_colour": {c: v[0] / v[1] for c, v in per_colour.items()},
                     "seconds": round(time.perf_counter() - start, 1)})
    header = f"{'guidance':>8} {'accuracy':>8} {'images':>6}  " + " ".join(f"{c[:6]:>6}" for c in COLOURS)
    print(f"model {args.model}, {args.sampler} {args.steps} steps, seeds 0..{args.seeds - 1}")
    print(header)
    for r in rows:
        print(f"{r['guidance']:>8.1f} {r['accuracy']:>8.1%} {r['images']:>6}  "
              + " ".join(f"{r['per_colour'][c]:>6.0%}" for c in COLOURS))
    if args.json:
        args.json.write_text(json.dumps({"model": str(args.model), "steps": args.steps, "sampler": args.sampler,
                                         "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
