"""t2i against diffusers' StableDiffusionPipeline on the same pipeline folder: images/s, latency, ratio.

Both load the same folder (`t2i compose` writes a valid diffusers folder) and get the same prompts, starting
latents, sampler, steps, batch and guidance. The two run interleaved in one process (t2i then diffusers, then
diffusers then t2i, ...), so a change in machine load hits both alike: read the ratio on a busy machine, the
absolute numbers only on a quiet one. Each call is timed in wall time and in this process's CPU time (with
one thread the CPU time is the work done, which other processes disturb less). The images of the first
repetition are compared: they must agree to within a couple of 8-bit levels (float rounding), else the
comparison would not be of the same computation.

With --compile a third contender joins: t2i with `SpeedConfig(compile=True)` (torch.compile of the U-Net);
its compilation (minutes on a CPU, once per batch shape) happens in the warm-up and is reported apart.

    python benchmarks/vs_diffusers.py --model outputs/demo/pipeline --batch 8 --steps 20 --repeats 5 [--compile]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

PROMPTS = ["a red circle", "a small blue square", "a large green triangle", "a yellow circle on the left",
           "a purple square at the top", "an orange triangle", "a small red square below a blue circle",
           "a large blue circle"]
DIFFUSERS_SCHEDULERS = {"dpmpp_2m": "DPMSolverMultistepScheduler", "ddim": "DDIMScheduler"}  # same maths


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=Path("outputs/demo/pipeline"), help="pipeline folder")
    p.add_argument("--batch", type=int, default=8, help="images per call")
    p.add_argument("--steps", type=int, default=20, help="sampling steps")
    p.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance scale")
    p.add_argument("--sampler", choices=sorted(DIFFUSERS_SCHEDULERS), default="dpmpp_2m")
    p.add_argument("--repeats", type=int, default=5, help="timed calls of each, interleaved")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--compile", action="store_true", help="also time t2i with the U-Net torch.compiled")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    import diffusers
    from diffusers import StableDiffusionPipeline

    import t2i
    from t2i.pipeline.speed import SpeedConfig
    from t2i.sampling import per_image_randn

    ours = t2i.load(args.model)
    theirs = StableDiffusionPipeline.from_pretrained(args.model, safety_checker=None, requires_safety_checker=False)
    theirs.scheduler = getattr(diffusers, DIFFUSERS_SCHEDULERS[args.sampler]).from_config(theirs.scheduler.config)
    theirs.set_progress_bar_config(disable=True)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.batch)]
    seeds = list(range(args.batch))
    c, h = ours.unet.config.in_channels, ours.image_size // ours.vae_factor

    def t2i_run(pipe):
        return lambda: pipe(prompts, seed=seeds, steps=args.steps, guidance=args.guidance, sampler=args.sampler)

    def run_diffusers():
        latents = per_image_randn((c, h, h), [torch.Generator().manual_seed(s) for s in seeds])  # t2i's start
        return theirs(prompts, num_inference_steps=args.steps, guidance_scale=args.guidance, latents=latents,
                      output_type="pil").images

    runs = {"t2i": t2i_run(ours), "diffusers": run_diffusers}
    if args.compile:
        runs["t2i compiled"] = t2i_run(t2i.load(args.model, speed=SpeedConfig(compile=True)))
    times = {name: {"wall": [], "cpu": []} for name in runs}
    first, warmup = {}, {}
    for name, fn in runs.items():  # warm-up (compilation included), and the images compared below
        first[name], warmup[name], _ = _timed(fn)
    for r in range(args.repeats):
        for name in (list(runs) if r % 2 == 0 else list(reversed(runs))):
            _, wall, cpu = _timed(runs[name])
            times[name]["wall"].append(wall)
            times[name]["cpu"].append(cpu)
    def pixels(images):
        return np.stack([np.asarray(i, dtype=np.int16) for i in images])

    diff = {name: int(np.abs(pixels(first[name]) - pixels(first["diffusers"])).max()) for name in runs if name != "diffusers"}

    rows = {}
    for name, t in times.items():
        rows[name] = {"latency_s": statistics.median(t["wall"]), "cpu_s": statistics.median(t["cpu"]),
                      "images_per_s": args.batch / statistics.median(t["wall"]),
                      "images_per_cpu_s": args.batch / statistics.median(t["cpu"]), "wall_s": t["wall"],
                      "cpu_s_all": t["cpu"], "first_call_wall_s": warmup[name]}
    ratios = {name: {"wall": rows[name]["images_per_s"] / rows["diffusers"]["images_per_s"],
                     "cpu": rows[name]["images_per_cpu_s"] / rows["diffusers"]["images_per_cpu_s"]}
              for name in runs if name != "diffusers"}
    print(f"{args.model}: {args.batch} images per call, {args.sampler}, {args.steps} steps, guidance "
          f"{args.guidance}, {args.threads} thread(s), median of {args.repeats} interleaved calls")
    print(f"{'':>13} {'latency s':>10} {'images/s':>9} {'CPU s':>8} {'images/CPU s':>13} {'first call s':>13}")
    for name, r in rows.items():
        print(f"{name:>13} {r['latency_s']:>10.3f} {r['images_per_s']:>9.2f} {r['cpu_s']:>8.3f} "
              f"{r['images_per_cpu_s']:>13.2f} {r['first_call_wall_s']:>13.1f}")
    for name, ratio in ratios.items():
        print(f"{name} / diffusers images/s: {ratio['wall']:.2f}x wall, {ratio['cpu']:.2f}x CPU time; largest pixel "
              f"difference from diffusers' images (0-255): {diff[name]}")
    if args.json:
        args.json.write_text(json.dumps({"model": str(args.model), "batch": args.batch, "steps": args.steps,
                                         "guidance": args.guidance, "sampler": args.sampler, "threads": args.threads,
                                         "repeats": args.repeats, "rows": rows, "ratios": ratios,
                                         "max_pixel_difference": diff}, indent=2) + "\n")


if __name__ == "__main__":
    main()
