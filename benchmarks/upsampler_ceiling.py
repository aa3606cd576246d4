"""Where a cascade loses what `t2i compare` measures: in the small image, or in the upsampler?

The real images of `t2i compare`'s prompts (the same seeded subsets of the seen and the held-out split) are
judged three ways by the compare's own judges (the evaluator CLIP for recognition and FID, the pixel style
judge): as they are; shrunk to the base's size and enlarged bicubic; shrunk and enlarged by each pipeline's
first upsampler (its recorded noise level, the folder's upsampler steps and, for a text-conditioned one, the
prompt and the folder's upsampler guidance).
A generated image can at best reach the row of its upsampler on real small images: the gap between that row
and the model's own figures in compare.md is the base's.

    python benchmarks/upsampler_ceiling.py --data DATA --clip CLIP --model PIPE [--model PIPE2 ...] [--n 500]

Recognition leaves each image's own real image out of the search, as compare does for real images. FID is
against every held-out real image, the judged ones among them (so the real row's FID is not 0 but a floor).
The style judge and the corpus features come from compare's cache (trained or computed there on a miss).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import t2i
from t2i.cascade.model import upsample
from t2i.cascade.sample import super_resolve
from t2i.cli.evaluate import default_cache_dir
from t2i.data.layout import TRAIN
from t2i.evaluation import compare as C
from t2i.evaluation.metrics import frechet_distance
from t2i.evaluation.reference import evaluation_subset
from t2i.images import load_image, to_pil, to_tensor
from t2i.sampling import NoiseScheduleConfig, alphas_cumprod, spaced_timesteps


def enlarge_with(pipe, low: torch.Tensor, captions: list[str], *, batch_size: int = 64) -> list:
    """`low` (N, 3, h, w) in [−1, 1] enlarged by the pipeline's first upsampler as its call would; image k seed k."""
    stage, unet = pipe.stages[0], pipe.upsamplers[0]
    ac = alphas_cumprod(NoiseScheduleConfig(**stage["schedule"]))
    steps = spaced_timesteps(ac.shape[0], pipe.defaults["upsampler_steps"])
    out = []
    for i in range(0, len(low), batch_size):
        generators = [torch.Generator().manual_seed(k) for k in range(i, min(i + batch_size, len(low)))]
        text = pipe.encode_prompts(captions[i : i + batch_size]) if stage.get("text_conditioned") else None
        scale = pipe.defaults["upsampler_guidance"] if text is not None else 1.0
        out.append(super_resolve(unet, low[i : i + batch_size], factor=stage["image_size"] // stage["low_size"],
                                 alphas_cumprod=ac, prediction_type=stage["prediction_type"],
                                 noise_level=stage["noise_level"], timesteps=steps, sampler="dpmpp_2m",
                                 generators=generators, text=text, guidance=scale,
                                 uncond_text=pipe.unconditional(("",)) if scale != 1 else None,
                                 autocast_dtype=torch.bfloat16 if pipe.bf16 else None).clamp(-1, 1))
    return [to_pil(x) for x in torch.cat(out)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, type=Path, help="the corpus t2i compare judges on (t2i data emoji-sets)")
    p.add_argument("--clip", required=True, type=Path, help="the evaluator CLIP (t2i train clip)")
    p.add_argument("--model", action="append", required=True, help="a cascade pipeline folder (repeatable)")
    p.add_argument("--n", type=int, default=500, help="images per split (compare's --n and --n-seen)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache-dir", type=Path, default=None, help="compare's cache (default: t2i's)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cache = args.cache_dir or default_cache_dir()
    cfg = C.CompareConfig(n_held_out=args.n, n_seen=args.n)
    pipes = {m: t2i.load(m) for m in args.model}
    lows = {pipe.stages[0]["low_size"] for pipe in pipes.values()}
    if len(lows) != 1 or any(type(pipe).__name__ != "CascadePipeline" for pipe in pipes.values()):
        raise SystemExit("every --model must be a cascade whose first upsampler takes the same size")
    low_size = lows.pop()

    j = C.Judges.build(args.data, args.clip, cfg, cache_dir=cache)
    records, size, bank, judge, judge_info = j.records, j.size, j.bank, j.classifier, j.judge
    concepts = [r.extra[cfg.concept_field] for r in j.bank_rows]
    splits = {"seen": [r for r in records if r.extra.get("split", TRAIN) == TRAIN],
              "held_out": [r for r in records if r.extra.get("split") == C.HELD_OUT]}

    result = {"data": str(args.data), "clip": str(args.clip), "n": args.n, "low_size": low_size,
              "style_judge_held_out_real_accuracy": judge_info["held_out_real_accuracy"], "rows": {}}
    for part, rows in splits.items():
        rows = evaluation_subset(rows, args.n, seed=cfg.seed)
        captions = [r.caption for r in rows]
        low = torch.stack([to_tensor(load_image(r.path, low_size)) for r in rows])  # the base's size, same resize
        ways = {"real": [load_image(r.path, size) for r in rows],
                f"{low_size} px, bicubic": [to_pil(x) for x in upsample(low, size // low_size).clamp(-1, 1)]}
        for name, pipe in pipes.items():
            start = time.perf_counter()
            ways[f"{low_size} px, upsampler of {Path(name).name}"] = enlarge_with(pipe, low, captions)
            print(f"{part}: {Path(name).name} enlarged {len(rows)} images in {time.perf_counter() - start:.0f} s",
                  flush=True)
        styles = [r.extra[cfg.style_field] for r in rows]
        wanted = [r.extra[cfg.concept_field] for r in rows]
        for way, images in ways.items():
            features = j.clip(images)
            ranked = C.concept_ranks(features, bank, concepts, exclude=[j.where[str(r.path)] for r in rows])
            predicted = judge.predict(images)
            row = result["rows"].setdefault(way, {})
            row[part] = {"top5": C.top_k_rate(ranked, wanted, 5), "style": C.accuracy(predicted, styles),
                         "style_per_set": C.per_group([a == b for a, b in zip(predicted, styles)], styles)}
            if part == "held_out":
                row[part]["fid"] = frechet_distance(bank[j.held_mask], features)

    print(f"\nstyle judge: {judge_info['held_out_real_accuracy']:.1%} of the held-out real images named right\n")
    print("| images | seen top-5 | seen style ✓ | held-out top-5 | held-out style ✓ | held-out FID ↓ |")
    print("|---|---|---|---|---|---|")
    for way, row in result["rows"].items():
        s, h = row["seen"], row["held_out"]
        print(f"| {way} | {s['top5']:.1%} | {s['style']:.1%} | {h['top5']:.1%} | {h['style']:.1%} | {h['fid']:.2f} |")
    sets = sorted(next(iter(result["rows"].values()))["seen"]["style_per_set"])
    print("\nSeen style per set:\n\n| images | " + " | ".join(sets) + " |\n|---|" + "---|" * len(sets))
    for way, row in result["rows"].items():
        print(f"| {way} | " + " | ".join(f"{row['seen']['style_per_set'][s]:.0%}" for s in sets) + " |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
