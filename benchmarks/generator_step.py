"""Cost of one generator training step (forward, backward, AdamW) for U-Net variants, as a ratio to the default.

The variants run interleaved in one process, so contention from other processes shifts them alike and the
ratios hold even when absolute times do not (run it alone for absolute times):
    default        the demo's GeneratorConfig
    pooled-text    + the attention-pooled prompt added to the timestep embedding (pooled_text_heads=6)
    channels-last  the default with channels_last memory format
    bf16           the default under bfloat16 autocast, as `--mixed-precision bf16` trains it (pays only on CPUs
                   with native bfloat16: AMX or AVX512-BF16; t2i.pipeline.speed.native_bf16)
    repa           the default plus REPA's alignment term (`--repa-weight 0.5`): the middle block's output through
                   the projector, cosine against a target of the autoencoder's width (--repa-dim) on the same grid
    transformer    the transformer backbone's `small` preset (PixArtTransformer2DModel over 2×2 latent patches)
    transformer-mask-R  it with deferred patch masking (`--patch-mask-ratio R`, one mixer block): the blocks after
                   the first see a share 1 − R of the patches; the loss covers those

Times are CPU time (time.process_time): with one thread it is the step's compute, little moved by other processes.

    python benchmarks/generator_step.py --batch-size 64
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import ExitStack
from pathlib import Path

import torch

from t2i.diffusion import repa
from t2i.diffusion.loss import squared_error
from t2i.diffusion.transformer import (TRANSFORMER_PRESETS, build_transformer, kept_patches, patch_loss_mask,
                                       patch_masking)
from t2i.diffusion.unet import GeneratorConfig, build_unet
from t2i.pipeline.speed import native_bf16


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=64, help="samples per step")
    p.add_argument("--latent-size", type=int, default=8, help="latent side (32 px images, autoencoder factor 4)")
    p.add_argument("--tokens", type=int, default=16, help="prompt length in tokens")
    p.add_argument("--text-width", type=int, default=384, help="text embedding width (MiniLM: 384)")
    p.add_argument("--repa-dim", type=int, default=32, help="REPA target width (the demo autoencoder's last level)")
    p.add_argument("--repeats", type=int, default=6, help="timed rounds; each times 3 steps of every variant")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    def unet(**changes):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return build_unet(GeneratorConfig(**changes), sample_size=args.latent_size, latent_channels=4,
                              cross_attention_dim=args.text_width)

    variants = {"default": unet(), "pooled-text": unet(pooled_text_heads=6),
                "channels-last": unet().to(memory_format=torch.channels_last), "bf16": unet(), "repa": unet()}
    channels, grid = repa.layer_shape(variants["repa"], torch.zeros(1, 4, args.latent_size, args.latent_size),
                                      timestep=torch.zeros(1), encoder_hidden_states=torch.zeros(1, args.tokens,
                                                                                                 args.text_width))
    variants["repa"].add_module(repa.PROJECTOR, repa.make_projector(channels, args.repa_dim))
    masks = {"transformer": 0.0, "transformer-mask-0.5": 0.5, "transformer-mask-0.75": 0.75}
    for name in masks:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            variants[name] = build_transformer(TRANSFORMER_PRESETS["small"](), sample_size=args.latent_size,
                                               latent_channels=4, cross_attention_dim=args.text_width)
    g = torch.Generator().manual_seed(0)
    b = args.batch_size
    x = torch.randn(b, 4, args.latent_size, args.latent_size, generator=g)
    t = torch.randint(0, 1000, (b,), generator=g)
    text = torch.randn(b, args.tokens, args.text_width, generator=g)
    target = torch.randn(b, args.repa_dim, grid, grid, generator=g)
    optimisers = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in variants.items()}
    times: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(args.repeats + 1):  # the first round warms up
        for k, model in variants.items():
            start = time.process_time()
            for _ in range(3):
                with ExitStack() as stack:
                    stack.enter_context(torch.autocast("cpu", dtype=torch.bfloat16, enabled=k == "bf16"))
                    seen = stack.enter_context(repa.capture(repa.aligned_layer(model)))
                    mask = None
                    if masks.get(k):
                        keep = kept_patches(model, b, masks[k], g)
                        mask = patch_loss_mask(model, keep)
                        stack.enter_context(patch_masking(model, keep, 1))
                    out = model(x, timestep=t, encoder_hidden_states=text).sample
                loss = squared_error(out, torch.zeros_like(x), mask).mean()
                if k == "repa":
                    loss = loss + 0.5 * repa.alignment_loss(getattr(model, repa.PROJECTOR), seen["hidden"], target)
                loss.backward()
                optimisers[k].step()
                optimisers[k].zero_grad(set_to_none=True)
            if r:
                times[k].append((time.process_time() - start) / 3)
    base = statistics.median(times["default"])
    rows = [{"variant": k, "ms_per_step": 1000 * statistics.median(v), "ratio": statistics.median(v) / base,
             "parameters": sum(q.numel() for q in variants[k].parameters())} for k, v in times.items()]
    print(f"batch {b}, {args.latent_size}×{args.latent_size} latents, {args.tokens} tokens × {args.text_width}, "
          f"{args.threads} thread(s); median of {args.repeats} rounds; native bf16: {native_bf16()}")
    print(f"{'variant':<22}{'ms/step':>9}{'ratio':>7}{'params':>11}")
    for row in rows:
        print(f"{row['variant']:<22}{row['ms_per_step']:>9.1f}{row['ratio']:>7.2f}{row['parameters']:>11,}")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
