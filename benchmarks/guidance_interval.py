"""Guidance in a limited interval (Kynkäänniemi et al. 2024) on a cascade's base, judged by `t2i compare`.

The paper guides only the middle of the noise range: guidance at the noisiest steps costs diversity and FID.
Here each run samples the base with classifier-free guidance at timesteps lo ≤ t ≤ hi only (the other steps run
the conditional pass alone: t2i.sampling.guided's `interval`), and judges the pipeline exactly as `t2i compare`
does (the same prompts, seeds, evaluator CLIP and style judge), so its rows read beside compare.md's.

    python benchmarks/guidance_interval.py --model src/t2i/models/emoji64 --data DATA --clip CLIP \
        --interval 0 850 --interval 250 1000 [--guidance 3] [--n 500]

The base's 10 timesteps at its default are 999, 899, …, 99: `--interval 0 850` leaves 999 and 899 unguided,
`--interval 250 1000` the last three. Each interval is its own comparison (OUT/LO-HI/compare.md); the script
prints one table of them all. The interval is applied by wrapping the function the cascade guides with, for
the length of a run: it is a measurement, not a pipeline option.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import torch

import t2i.cascade.pipeline as cascade_pipeline
from t2i.cli.evaluate import default_cache_dir
from t2i.evaluation.compare import CompareConfig, compare_pipelines
from t2i.sampling import guided


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a cascade pipeline folder")
    p.add_argument("--data", required=True, type=Path, help="the corpus t2i compare judges on (t2i data emoji-sets)")
    p.add_argument("--clip", required=True, type=Path, help="the evaluator CLIP (t2i train clip)")
    p.add_argument("--interval", nargs=2, type=float, action="append", required=True, metavar=("LO", "HI"),
                   help="guide the base only at timesteps LO ≤ t ≤ HI (repeatable: one comparison each)")
    p.add_argument("--guidance", type=float, default=None, help="the base's guidance scale (default: the model's)")
    p.add_argument("--n", type=int, default=500, help="images per split (compare's --n and --n-seen)")
    p.add_argument("--out", type=Path, default=Path("outputs/guidance_interval"))
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if cascade_pipeline.guided is not guided:
        raise SystemExit("t2i.cascade.pipeline no longer guides with t2i.sampling.guided: update this script")
    cfg = CompareConfig(n_held_out=args.n, n_seen=args.n, guidance=args.guidance)
    rows = []
    for lo, hi in args.interval:
        out = args.out / f"{lo:g}-{hi:g}"
        cascade_pipeline.guided = functools.partial(guided, interval=(lo, hi))
        try:
            result = compare_pipelines([args.model], args.data, args.clip, out, cfg, cache_dir=default_cache_dir(),
                                       command=f"benchmarks/guidance_interval.py --interval {lo:g} {hi:g}")
        finally:
            cascade_pipeline.guided = guided
        (entry,) = result["models"].values()
        rows.append((f"{lo:g}–{hi:g}", entry))
        print(f"interval {lo:g}–{hi:g}: held-out FID {entry['held_out']['fid']:.2f}, seen top-5 "
              f"{entry['seen']['top5']:.1%}, style {entry['seen']['style_accuracy']:.1%} ({out / 'compare.md'})",
              flush=True)
    print(f"\n{Path(args.model).name}, base guidance {rows[0][1]['guidance']}, N = {args.n} per split\n")
    print("| guided at t in | held-out FID ↓ | KID ↓ | CLIP score ↑ | held-out top-5 | seen top-5 | "
          "seen style ✓ |")
    print("|---|---|---|---|---|---|---|")
    for name, m in rows:
        h, s = m["held_out"], m["seen"]
        print(f"| {name} | {h['fid']:.2f} | {h['kid']:.3f} | {h['clip_score']:.2f} | {h['top5']:.1%} | "
              f"{s['top5']:.1%} | {s['style_accuracy']:.1%} |")
    (args.out / "intervals.json").write_text(json.dumps({name: m for name, m in rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
