"""Sampling time of the tokens variant, with and without the key/value cache, in the same process.

    python benchmarks/tokens_speed.py --model runs/tokens-pipe          # a composed tokens pipeline
    python benchmarks/tokens_speed.py                                  # the small preset, random weights

Times N images (default 4) of the full call (text encoding, 64 tokens, VQ decoding), guidance on (a batched
forward of 2N per token), median of R calls, alternating cached and uncached calls so that load from other
processes hits both alike. The issue's target: 4 images of an 8×8 grid in under 1 s on 2 CPU cores with the
cache. Absolute times need a quiet machine; the ratio is meaningful under load too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def random_pipeline(preset: str):
    """A tokens pipeline of the given transformer preset and the small VQ, random weights, MiniLM text."""
    import torch

    from t2i.text import load_text_encoder
    from t2i.tokens.model import TOKEN_GENERATOR_PRESETS, build_token_generator
    from t2i.tokens.pipeline import TokensPipeline
    from t2i.tokens.vq import VQ_PRESETS, build_vq

    torch.manual_seed(0)
    vq_cfg = VQ_PRESETS["small"](32)
    vq = build_vq(vq_cfg)
    text = load_text_encoder(max_length=16)
    model = build_token_generator(TOKEN_GENERATOR_PRESETS[preset](), codebook_size=vq_cfg.codebook_size,
                                  num_tokens=vq_cfg.grid_size**2, text_width=text.hidden_size)
    return TokensPipeline(text, model.eval(), vq, {"fill_code": 0})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=None, help="tokens pipeline folder (default: random weights)")
    p.add_argument("--preset", default="small", help="transformer preset when no --model is given")
    p.add_argument("--n", type=int, default=4, help="images per call")
    p.add_argument("--calls", type=int, default=5, help="timed calls per setting")
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import t2i

    pipe = t2i.load(args.model) if args.model else random_pipeline(args.preset)
    prompt = "a red circle"
    for kv in (True, False):  # warm-up
        pipe(prompt, num_images=args.n, seed=0, guidance=args.guidance, kv_cache=kv)
    times: dict[str, list[float]] = {"kv cache": [], "no cache": []}
    cpu: dict[str, list[float]] = {"kv cache": [], "no cache": []}
    for r in range(args.calls):
        for name, kv in (("kv cache", True), ("no cache", False)):
            t, c = time.perf_counter(), time.process_time()
            pipe(prompt, num_images=args.n, seed=r, guidance=args.guidance, kv_cache=kv)
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    tokens = pipe.grid_size**2
    print(f"model {args.model or f'random {args.preset}'}: {args.n} images of {pipe.grid_size}×{pipe.grid_size} tokens, "
          f"guidance {args.guidance} (batch {2 * args.n}), {args.threads} threads, {args.calls} calls each")
    print(f"{'setting':<12}{'min s':>9}{'median s':>10}{'max s':>9}{'CPU s':>9}{'ms/token':>10}")
    for name in times:
        med = statistics.median(times[name])
        print(f"{name:<12}{min(times[name]):>9.3f}{med:>10.3f}{max(times[name]):>9.3f}"
              f"{statistics.median(cpu[name]):>9.3f}{1000 * med / tokens:>10.2f}")
    ratio = statistics.median(times["no cache"]) / statistics.median(times["kv cache"])
    print(f"speed-up of the cache (median wall-clock): {ratio:.2f}×")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "seconds": times,
                                         "cpu_seconds": cpu, "speedup": ratio}, indent=2))


if __name__ == "__main__":
    main()
