"""Each speed option of a latent or cascade pipeline against the plain path, measured side by side in one process.

Whole generation calls (N images, S steps, guidance on, decode included), interleaved round by round so
machine load hits every variant alike; median CPU time of this process per call (one thread: the work
done) and median wall time, and their ratios to the plain path:
    plain           SpeedConfig with every option off
    reuse text K/V  cross-attention keys/values of the prompt computed once per run (the default)
    channels_last   NHWC U-Nets (with the default)
    bf16 autocast   bfloat16 U-Nets (with the default); pays only on CPUs with native bfloat16 (where a cascade
                    runs it by default; the other rows here are float32 throughout)
(a cascade: the base's cross-attention reuses K/V; channels_last and bf16 apply to the base and the upsamplers)
and, for the things that are always on, what they save, as micro-measurements on the text-conditioned U-Net
(the latent U-Net, the cascade's base):
    inference_mode vs no_grad on a U-Net forward of 2N rows
    guidance as one batched forward of 2N rows vs two forwards of N
    the unconditional embedding cached vs encoding N empty prompts on every call
and per-step previews: a call with a preview callback, with the tiny preview decoder and with the real
decoder, against a call without previews (needs a pipeline whose vae/ has a preview_decoder/).

    python benchmarks/speed_options.py --model outputs/demo/pipeline --n 8 --steps 20
    python benchmarks/speed_options.py --model src/t2i/models/emoji64 --n 4 --steps 20 --guidance 3   # shipped
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch


def _timed(fn) -> tuple[float, float]:
    """CPU seconds of this process and wall seconds of one call."""
    start, wall = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - start, time.perf_counter() - wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=Path("outputs/demo/pipeline"), help="pipeline folder")
    p.add_argument("--n", type=int, default=8, help="images per call")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=2.0)
    p.add_argument("--repeats", type=int, default=5, help="timed rounds; each times every variant once")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--skip-bf16", action="store_true", help="leave out bf16 (very slow without native bfloat16)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    import t2i
    from t2i.pipeline.speed import SpeedConfig
    from t2i.pipeline.speed import native_bf16

    plain = SpeedConfig(reuse_text_kv=False, channels_last=False, bf16=False, fast_previews=False)
    variants = {"plain": plain, "reuse text K/V (on by default)": SpeedConfig(bf16=False),
                "+ channels_last": SpeedConfig(channels_last=True, bf16=False)}
    if not args.skip_bf16:
        variants["+ bf16 autocast"] = SpeedConfig(bf16=True)
    pipes = {name: t2i.load(args.model, speed=speed) for name, speed in variants.items()}
    prompts = [f"a {c} circle" for c in ("red", "blue", "green", "yellow")] * (args.n // 4 + 1)
    prompts = prompts[: args.n]
    call = dict(seed=0, steps=args.steps, guidance=args.guidance)
    default = pipes["reuse text K/V (on by default)"]
    full_previews = t2i.load(args.model, speed=SpeedConfig(fast_previews=False, bf16=False))
    has_preview = getattr(default, "preview_decoder", None) is not None
    cases = {name: (lambda pipe=pipe: pipe(prompts, **call)) for name, pipe in pipes.items()}
    if has_preview:
        cases["previews: tiny preview decoder"] = lambda: default(prompts, callback=lambda *a: None, **call)
        cases["previews: real decoder"] = lambda: full_previews(prompts, callback=lambda *a: None, **call)

    if hasattr(default, "vae_factor"):  # latent: the U-Net over latents
        unet, side = default.unet, default.image_size // default.vae_factor
    else:  # cascade: the base U-Net over small images
        unet, side = default.base, default.base_stage["image_size"]
    x = torch.randn(2 * args.n, unet.config.in_channels, side, side, generator=torch.Generator().manual_seed(0))
    t = torch.full((2 * args.n,), 500)
    with torch.inference_mode():
        cond = default.encode_prompts(prompts * 2)

    def forward(rows):
        return unet(x[:rows], t[:rows], encoder_hidden_states=cond[:rows]).sample

    def no_grad_forward():
        with torch.no_grad():
            forward(2 * args.n)

    def inference_forward():
        with torch.inference_mode():
            forward(2 * args.n)

    def two_forwards():
        with torch.inference_mode():
            forward(args.n), forward(args.n)

    def encode_empty():
        with torch.inference_mode():
            default.encode_prompts([""] * args.n)

    micro = {"U-Net forward, no_grad": no_grad_forward, "U-Net forward, inference_mode": inference_forward,
             "guidance as two forwards of N": two_forwards, "encode N empty prompts": encode_empty}

    for fn in [*cases.values(), *micro.values()]:  # warm-up
        fn()
    seconds = {name: [] for name in [*cases, *micro]}
    walls = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, fn in cases.items():
            cpu, wall = _timed(fn)
            seconds[name].append(cpu)
            walls[name].append(wall)
        for name, fn in micro.items():
            seconds[name].append(_timed(fn)[0])
    med = {name: statistics.median(s) for name, s in seconds.items()}
    med_wall = {name: statistics.median(s) for name, s in walls.items()}

    base = med["plain"]
    print(f"{args.model}: {args.n} images, {args.steps} steps, guidance {args.guidance}, {args.threads} thread(s), "
          f"median CPU s of {args.repeats} interleaved rounds; native bfloat16: {native_bf16()}")
    print(f"{'generation call':>34} {'CPU s':>7} {'speed-up vs plain':>18} {'wall s':>7} {'wall speed-up':>14}")
    for name in pipes:
        print(f"{name:>34} {med[name]:>7.3f} {base / med[name]:>17.2f}x {med_wall[name]:>7.3f} "
              f"{med_wall['plain'] / med_wall[name]:>13.2f}x")
    if has_preview:
        gen = med["reuse text K/V (on by default)"]
        for name in ("previews: tiny preview decoder", "previews: real decoder"):
            print(f"{name:>34} {med[name]:>7.3f}   +{100 * (med[name] / gen - 1):.1f} % over no previews")
    else:
        print("(no vae/preview_decoder/ in this pipeline, or not a latent one: preview cost not measured)")
    print(f"{'always on':>34} {'CPU s':>7}")
    for name in micro:
        print(f"{name:>34} {med[name]:>7.4f}")
    print(f"batched guidance saves {100 * (1 - med['U-Net forward, inference_mode'] / med['guidance as two forwards of N']):.0f} % "
          f"of a step's U-Net time; the cached empty-prompt embedding saves "
          f"{100 * med['encode N empty prompts'] / med['reuse text K/V (on by default)']:.1f} % of a call")
    if args.json:
        args.json.write_text(json.dumps({"model": str(args.model), "n": args.n, "steps": args.steps,
                                         "threads": args.threads, "native_bf16": native_bf16(),
                                         "median_cpu_s": med, "cpu_s": seconds,
                                         "median_wall_s": med_wall, "wall_s": walls}, indent=2) + "\n")


if __name__ == "__main__":
    main()
