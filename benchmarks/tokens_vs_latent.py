"""The tokens variant against the latent variant at an equal training budget, on the same shapes data.

    python benchmarks/tokens_vs_latent.py --out outputs/compare            # ~1 h of CPU on one thread

The budget is process CPU time on one thread (time.process_time, torch and OpenMP at 1 thread), not
wall-clock: on a machine whose cores other processes share, wall-clock measures the neighbours, while the
CPU time a process is given is close to the work it does. Each stage's whole cost counts (loading, caching
text embeddings / latents / tokens, training). The latent variant runs first with the demo's recipe
(autoencoder 800 steps, U-Net 1,200 steps); each tokens stage then gets the CPU time its counterpart used:
its steps are set from two short calibration runs (cost = fixed + steps × per-step), and the CPU time it
really used is reported beside the budget.

    decoder   KL autoencoder (demo)     vs  VQ autoencoder (small preset: 512 codes, 8×8 grid)
    generator latent U-Net (demo)       vs  GPT-2 token generator (small preset), same MiniLM embeddings

Quality: held-out PSNR of each decoder; colour accuracy (t2i.evaluation.colour_accuracy: the prompted colour
is the dominant one) on six single-shape prompts in a form never seen in training × `--seeds` seeds, at each
`--guidance`. Sampling time: 4 images per call, median of 5, one thread, in this process. Further metrics
(FID, CLIP score) plug into `METRICS` below: a name and a function (pipeline, images, prompts) -> number.

Stages already finished under --out (a stage.json beside their output) are reused on a rerun.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

SINGLE_PROMPTS = ("a red circle", "an orange square", "a yellow triangle", "a green diamond", "a blue circle",
                  "a purple square")


def colour_metric(pipe, images, prompts) -> float:
    from t2i.evaluation import colour_accuracy

    return colour_accuracy(images, [p.split()[1] for p in prompts])


# name -> f(pipeline, images, prompts) -> number, computed on the images of every (variant, guidance).
METRICS = {"colour_accuracy": colour_metric}


def stage(out: Path, name: str, fn) -> dict:
    """Run fn() once, timing its process CPU time; reuse the record of an earlier run."""
    record = out / name / "stage.json"
    if record.exists():
        return json.loads(record.read_text())
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    info = fn(out / name)
    result = {"cpu_seconds": time.process_time() - start_cpu, "wall_seconds": time.perf_counter() - start_wall,
              "info": {k: v for k, v in info.items() if k != "losses"}}
    record.write_text(json.dumps(result, indent=2, default=str))
    print(f"{name}: {result['cpu_seconds']:.0f} s CPU ({result['wall_seconds']:.0f} s wall)", flush=True)
    return result


def steps_for_budget(out: Path, name: str, run, budget_cpu: float, short: tuple[int, int] = (20, 80)) -> dict:
    """Steps that make `run(folder, steps)` cost `budget_cpu` CPU seconds, from two calibration runs."""
    record = out / f"{name}-calibration.json"
    if record.exists():
        return json.loads(record.read_text())
    costs = []
    for steps in short:
        start = time.process_time()
        run(out / f"{name}-calibration-{steps}", steps)
        costs.append(time.process_time() - start)
    per_step = (costs[1] - costs[0]) / (short[1] - short[0])
    fixed = costs[0] - short[0] * per_step
    result = {"per_step_cpu": per_step, "fixed_cpu": fixed, "budget_cpu": budget_cpu,
              "steps": max(short[1], int((budget_cpu - fixed) / per_step))}
    record.write_text(json.dumps(result, indent=2))
    print(f"{name}: {per_step:.3f} s CPU per step + {fixed:.0f} s fixed -> {result['steps']} steps", flush=True)
    return result


def sampling_seconds(pipe, calls: int = 5, n: int = 4, **kwargs) -> dict:
    pipe("warm-up", num_images=n, seed=0, **kwargs)
    wall, cpu = [], []
    for r in range(calls):
        t, c = time.perf_counter(), time.process_time()
        pipe("a red circle", num_images=n, seed=r, **kwargs)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return {"wall_median": statistics.median(wall), "cpu_median": statistics.median(cpu)}


def evaluate(pipe, seeds: int, guidances: list[float], **kwargs) -> dict:
    prompts = [p for p in SINGLE_PROMPTS for _ in range(seeds)]
    out = {}
    for g in guidances:
        images = pipe(list(SINGLE_PROMPTS), num_images=seeds, seed=0, guidance=g, **kwargs)
        out[str(g)] = {name: fn(pipe, images, prompts) for name, fn in METRICS.items()}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("outputs/compare"))
    p.add_argument("--data", type=Path, default=None, help="shapes folder (default: OUT/data, 4,000 at 32 px)")
    p.add_argument("--seeds", type=int, default=8, help="images per prompt for the quality metrics")
    p.add_argument("--guidance", type=float, nargs="+", default=[2.0, 3.0, 5.0])
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    import torch

    torch.set_num_threads(1)
    from t2i.autoencoder import train_autoencoder
    from t2i.data import ShapesConfig, write_shapes
    from t2i.demo import DemoConfig
    from t2i.latent.train import train_generator
    from t2i.variants import compose_pipeline, load_pipeline
    from t2i.tokens.train import TokensTrainConfig, train_tokens
    from t2i.tokens.vq_train import VQTrainConfig, train_vq

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    data = args.data or out / "data"
    if not (data / "metadata.jsonl").exists():
        write_shapes(data, ShapesConfig(n=4000, size=32, seed=0))
    demo = DemoConfig(out=out)

    def vq_run(folder, steps):
        cfg = VQTrainConfig()
        cfg.train.steps = steps
        return train_vq(data, folder, cfg, command="benchmarks/tokens_vs_latent.py")

    def tokens_run(folder, steps):
        cfg = TokensTrainConfig()
        cfg.train.steps = steps
        # Each run caches its own tokens and text embeddings (FOLDER/cache), as the U-Net stage did its latents.
        return train_tokens(data, out / "vq", folder, cfg, command="benchmarks/tokens_vs_latent.py")

    ae = stage(out, "autoencoder", lambda f: train_autoencoder(data, f, demo.autoencoder, command="compare"))
    gen = stage(out, "generator", lambda f: train_generator(data, out / "autoencoder", f, demo.generator,
                                                            command="compare"))
    vq_steps = steps_for_budget(out, "vq", vq_run, ae["cpu_seconds"])
    vq = stage(out, "vq", lambda f: vq_run(f, vq_steps["steps"]))
    tok_steps = steps_for_budget(out, "tokens", tokens_run, gen["cpu_seconds"])
    tok = stage(out, "tokens", lambda f: tokens_run(f, tok_steps["steps"]))
    for name, generator in (("latent-pipeline", out / "generator"), ("tokens-pipeline", out / "tokens")):
        if not (out / name).exists():
            defaults = {"guidance": demo.guidance, "steps": demo.steps} if name == "latent-pipeline" else {}
            compose_pipeline(generator, out / name, defaults=defaults)

    results = {}
    for name, extra in (("latent", {"steps": demo.steps}), ("tokens", {})):
        pipe = load_pipeline(out / f"{name}-pipeline")
        results[name] = {"quality": evaluate(pipe, args.seeds, args.guidance, **extra),
                         "sampling_4_images": sampling_seconds(pipe, **extra)}
    results["budget"] = {"autoencoder_cpu": ae["cpu_seconds"], "vq_cpu": vq["cpu_seconds"],
                         "vq_steps": vq_steps["steps"], "generator_cpu": gen["cpu_seconds"],
                         "tokens_cpu": tok["cpu_seconds"], "tokens_steps": tok_steps["steps"],
                         "tokens_per_step_cpu": tok_steps["per_step_cpu"], "vq_per_step_cpu": vq_steps["per_step_cpu"]}
    results["decoders"] = {"kl_psnr": ae["info"]["metrics"]["psnr_held_out"],
                           "vq_psnr": vq["info"]["metrics"]["psnr_held_out"],
                           "vq_codebook_usage": vq["info"]["metrics"]["codebook_usage_held_out"]}

    b, d = results["budget"], results["decoders"]
    print("\n| | latent (Stable Diffusion's) | tokens (DALL-E's) |\n|---|---|---|")
    print(f"| decoder training, CPU time | {b['autoencoder_cpu']:.0f} s, {demo.autoencoder.train.steps} steps | "
          f"{b['vq_cpu']:.0f} s (budget {b['autoencoder_cpu']:.0f} s), {b['vq_steps']} steps |")
    print(f"| decoder held-out PSNR | {d['kl_psnr']:.1f} dB | {d['vq_psnr']:.1f} dB "
          f"({d['vq_codebook_usage']['codes_used']} codes used, perplexity {d['vq_codebook_usage']['perplexity']:.0f}) |")
    print(f"| generator training, CPU time | {b['generator_cpu']:.0f} s, {demo.generator.train.steps} steps | "
          f"{b['tokens_cpu']:.0f} s (budget {b['generator_cpu']:.0f} s), {b['tokens_steps']} steps |")
    for g in args.guidance:
        for metric in METRICS:
            lat, tokv = results["latent"]["quality"][str(g)][metric], results["tokens"]["quality"][str(g)][metric]
            print(f"| {metric}, guidance {g} | {lat:.1%} | {tokv:.1%} |")
    ls, ts = results["latent"]["sampling_4_images"], results["tokens"]["sampling_4_images"]
    print(f"| 4 images, 1 thread (median wall / CPU) | {ls['wall_median']:.2f} s / {ls['cpu_median']:.2f} s "
          f"({demo.steps} DPM-Solver++ steps) | {ts['wall_median']:.2f} s / {ts['cpu_median']:.2f} s (64 tokens, KV cache) |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
