"""Achieved GFLOP/s of the U-Net forward against this machine's convolution ceiling, measured in the same run.

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` (2 per multiply-add; convolutions, matrix
products and attention; norms and activations are not counted, so the achieved figure is a lower bound on
the arithmetic done). The U-Net forward is the guided sampling step: 2·B rows (conditional and
unconditional halves in one batch) at the pipeline's latent size. The ceiling is the best rate of plain
3×3 convolutions (oneDNN, float32): a large one (what the cores can do) and the U-Net's own widest conv at
its resolution (what they can do at that size). All are timed interleaved, median of the repeats, in this
process's CPU time (one thread: the work done, which contention disturbs less than wall time).

With --compile the U-Net is also timed after torch.compile (SpeedConfig(compile=True), same FLOPs counted).

    python benchmarks/unet_flops.py --model outputs/demo/pipeline --batch 8 [--compile]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode


def _cpu_seconds(fn, calls: int) -> float:
    start = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - start) / calls


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=Path("outputs/demo/pipeline"), help="pipeline folder")
    p.add_argument("--batch", type=int, default=8, help="images per call (the U-Net sees twice as many rows)")
    p.add_argument("--repeats", type=int, default=7, help="timed rounds (each times every case)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--compile", action="store_true", help="also time the torch.compiled U-Net (minutes to compile)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    import t2i

    pipe = t2i.load(args.model)
    unet = pipe.unet
    side = pipe.image_size // pipe.vae_factor
    rows = 2 * args.batch
    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, unet.config.in_channels, side, side, generator=g)
    t = torch.full((rows,), 500)
    with torch.inference_mode():
        cond = pipe.encode_prompts(["a red circle"] * rows)
    widest = max(unet.config.block_out_channels)
    widest_side = side // 2 ** (len(unet.config.block_out_channels) - 1)

    def conv_case(channels: int, size: int, batch: int):
        conv = torch.nn.Conv2d(channels, channels, 3, padding=1).eval()
        inp = torch.randn(batch, channels, size, size, generator=g)
        return (lambda: conv(inp)), 2 * batch * channels * channels * 9 * size * size

    cases = {"unet forward": (lambda: unet(x, t, encoder_hidden_states=cond).sample, None),
             f"conv 3x3 {widest}ch {widest_side}x{widest_side} x{rows} (U-Net's widest)":
                 conv_case(widest, widest_side, rows),
             "conv 3x3 128ch 32x32 x16 (large)": conv_case(128, 32, 16),
             "conv 3x3 256ch 16x16 x16 (large)": conv_case(256, 16, 16)}
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            cases["unet forward"][0]()
        unet_flops = counter.get_total_flops()
        by_op = {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}
        cases["unet forward"] = (cases["unet forward"][0], unet_flops)
        if args.compile:
            compiled = torch.compile(unet, options={"freezing": True})
            cases["unet forward, compiled"] = (lambda: compiled(x, t, encoder_hidden_states=cond).sample, unet_flops)
        calls = {}
        for name, (fn, flops) in cases.items():  # warm-up; calls per timing: about 0.2 s of work
            fn()
            calls[name] = max(1, round(0.2 / max(_cpu_seconds(fn, 1), 1e-4)))
        seconds = {name: [] for name in cases}
        for _ in range(args.repeats):
            for name, (fn, _) in cases.items():
                seconds[name].append(_cpu_seconds(fn, calls[name]))

    results = {name: {"gflop": flops / 1e9, "ms": 1e3 * statistics.median(seconds[name]),
                      "gflops_per_s": flops / 1e9 / statistics.median(seconds[name])}
               for name, (_, flops) in cases.items()}
    ceiling = max(r["gflops_per_s"] for n, r in results.items() if not n.startswith("unet forward"))
    achieved = results["unet forward"]["gflops_per_s"]
    print(f"{args.model}: U-Net forward of {rows} rows at {side}x{side} latents ({args.batch} guided images), "
          f"{args.threads} thread(s), median of {args.repeats}, CPU time")
    print(f"{'case':>52} {'GFLOP':>7} {'ms':>8} {'GFLOP/s':>8}")
    for name, r in results.items():
        print(f"{name:>52} {r['gflop']:>7.3f} {r['ms']:>8.2f} {r['gflops_per_s']:>8.1f}")
    share = {k: v / unet_flops for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])}
    print("U-Net FLOPs by op: " + ", ".join(f"{k.removeprefix('aten.')} {100 * v:.0f} %" for k, v in share.items()))
    for name in (n for n in results if n.startswith("unet forward")):
        print(f"{name}: {100 * results[name]['gflops_per_s'] / ceiling:.0f} % of the measured conv ceiling "
              f"({ceiling:.1f} GFLOP/s)")
    if args.json:
        args.json.write_text(json.dumps({"model": str(args.model), "batch": args.batch, "rows": rows,
                                         "threads": args.threads, "results": results, "flops_by_op": by_op,
                                         "ceiling_gflops_per_s": ceiling, "unet_share_of_ceiling": achieved / ceiling},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
