"""The latent and the cascade variant, trained for the same CPU budget on the same data, side by side.

The budget is **process CPU time on one thread** (time.process_time with torch.set_num_threads(1)), not
wall-clock: on a machine whose cores other processes share, wall-clock measures the neighbours as much as
the code, while one thread's CPU time barely moves. Each variant gets BUDGET CPU-seconds of training steps,
split between its two trained parts (latent: autoencoder / generator; cascade: base / upsampler). The steps
are set from each part's cost per step, measured first on the real model and loss (3 warm-up + 5 timed
steps), so every part trains as long as its share allows; the CPU time each training call actually took
(data loading, caching and the held-out evaluation included) is reported beside it.

Quality, on the same prompts and seeds for both: colour accuracy (the prompted colour is the dominant one,
t2i.evaluation.dominant_colour) for single-shape prompts in a form never used in training, per guidance
scale; the decoders' held-out PSNR (autoencoder reconstruction; upsampler against bicubic enlargement). More
metrics (FID, CLIP score, compositional accuracy) plug into METRICS: functions of (pipeline, settings).
Sampling time: CPU seconds per image, same batch, 20 generator steps (+ upsampler steps for the cascade).

    python benchmarks/variants.py --work outputs/variants --budget 600 --json docs/variants.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from t2i.autoencoder import AUTOENCODER_PRESETS, AutoencoderTrainConfig, build_autoencoder, train_autoencoder
from t2i.autoencoder.train import autoencoder_loss
from t2i.cascade.compose import compose_cascade
from t2i.cascade.model import UPSAMPLER_PRESETS, build_upsampler
from t2i.cascade.train import BASE_PRESETS, BaseTrainConfig, UpsamplerTrainConfig, base_loss, train_base, \
    train_upsampler, upsampler_loss
from t2i.data import COLOURS, SHAPES, ShapesConfig, write_shapes
from t2i.evaluation import dominant_colour
from t2i.latent.train import GeneratorTrainConfig, generator_loss, train_generator
from t2i.diffusion.unet import build_unet
from t2i.latent.compose import compose
from t2i.variants import load_pipeline
from t2i.images import grid
from t2i.sampling import Denoiser, alphas_cumprod
from t2i.text import TextEncoderConfig

TEXT_WIDTH = 384  # MiniLM's, for the cost measurement of the text-conditioned U-Nets
PROMPT_TOKENS = 16  # shape captions have at most 14 tokens (the demo's setting)
SINGLE_PROMPTS = [(c, f"{'an' if c[0] in 'aeiou' else 'a'} {c} {s}") for c in COLOURS for s in SHAPES]
GRID_PROMPTS = ("a red circle", "an orange square", "a yellow triangle", "a green diamond", "a blue circle",
                "a purple square", "a small red circle above a large blue square",
                "a large green triangle to the left of a small yellow diamond")


# -- what each variant trains: configs and the cost of one step ------------------------------------------


def latent_configs(size: int) -> dict:
    return {"autoencoder": AutoencoderTrainConfig(model=AUTOENCODER_PRESETS["small"](size)),
            "generator": GeneratorTrainConfig(text=TextEncoderConfig(max_length=PROMPT_TOKENS))}


def cascade_configs(size: int) -> dict:
    return {"base": BaseTrainConfig(image_size=size // 2, model=BASE_PRESETS["small"](),
                                    text=TextEncoderConfig(max_length=PROMPT_TOKENS)),
            "upsampler": UpsamplerTrainConfig(model=UPSAMPLER_PRESETS["small"](size // 2, size))}


def _cpu_per_step(model: torch.nn.Module, loss_fn: Callable, batch: dict, *, warm: int = 3, timed: int = 5) -> float:
    """CPU seconds of one optimiser step (forward, backward, AdamW) of the real model and loss on a batch."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    g = torch.Generator().manual_seed(0)
    model.train()
    for i in range(warm + timed):
        if i == warm:
            start = time.process_time()
        loss_fn(model, batch, g).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return (time.process_time() - start) / timed


def step_costs(size: int) -> dict[str, float]:
    """CPU seconds per training step of each trained part, at the batch sizes of its config."""
    g = torch.Generator().manual_seed(0)
    lat, cas = latent_configs(size), cascade_configs(size)
    costs = {}
    ae = lat["autoencoder"]
    b = ae.train.batch_size
    costs["autoencoder"] = _cpu_per_step(build_autoencoder(ae.model),
                                         autoencoder_loss(ae.kl_weight, ae.pixel_loss),
                                         {"pixel_values": torch.rand(b, 3, size, size, generator=g) * 2 - 1})
    gen = lat["generator"]
    b, h = gen.train.batch_size, size // ae.model.downsampling_factor
    unet = build_unet(gen.model, sample_size=h, latent_channels=ae.model.latent_channels, cross_attention_dim=TEXT_WIDTH)
    table = torch.randn(1, PROMPT_TOKENS, TEXT_WIDTH, generator=g)
    costs["generator"] = _cpu_per_step(
        unet, generator_loss(Denoiser(unet, alphas_cumprod(gen.model.schedule), gen.model.prediction_type), gen.model,
                             1.0, table, table),
        {"latent_mean": torch.randn(b, ae.model.latent_channels, h, h, generator=g),
         "latent_std": torch.full((b, ae.model.latent_channels, h, h), 0.1), "caption_index": torch.zeros(b, dtype=int)})
    base = cas["base"]
    b, h = base.train.batch_size, base.image_size
    unet = build_unet(base.model, sample_size=h, latent_channels=3, cross_attention_dim=TEXT_WIDTH)
    costs["base"] = _cpu_per_step(
        unet, base_loss(Denoiser(unet, alphas_cumprod(base.model.schedule), base.model.prediction_type), base.model,
                        table, table),
        {"pixel_values": torch.rand(b, 3, h, h, generator=g) * 2 - 1, "caption_index": torch.zeros(b, dtype=int)})
    up = cas["upsampler"]
    b, m = up.train.batch_size, up.model
    unet = build_upsampler(m)
    costs["upsampler"] = _cpu_per_step(
        unet, upsampler_loss(Denoiser(unet, alphas_cumprod(m.schedule), m.prediction_type), m),
        {"pixel_values": torch.rand(b, 3, m.image_size, m.image_size, generator=g) * 2 - 1,
         "low_res": torch.rand(b, 3, m.low_size, m.low_size, generator=g) * 2 - 1})
    return costs


# -- training each variant within its budget -------------------------------------------------------------


def _steps(share: float, budget: float, cost: float) -> int:
    return max(1, int(share * budget / cost))


def _timed(fn):
    start = time.process_time()
    result = fn()
    return result, time.process_time() - start


def train_latent(data: Path, work: Path, budget: float, costs: dict, ae_share: float, size: int) -> dict:
    cfg = latent_configs(size)
    steps = {"autoencoder": _steps(ae_share, budget, costs["autoencoder"]),
             "generator": _steps(1 - ae_share, budget, costs["generator"])}
    ae_cfg = replace(cfg["autoencoder"], train=replace(cfg["autoencoder"].train, steps=steps["autoencoder"],
                                                       warmup_steps=min(50, steps["autoencoder"] // 10 + 1)))
    gen_cfg = replace(cfg["generator"], train=replace(cfg["generator"].train, steps=steps["generator"],
                                                      warmup_steps=min(100, steps["generator"] // 10 + 1)))
    ae, ae_cpu = _timed(lambda: train_autoencoder(data, work / "autoencoder", ae_cfg, command="benchmarks/variants.py"))
    gen, gen_cpu = _timed(lambda: train_generator(data, work / "autoencoder", work / "generator", gen_cfg,
                                                  command="benchmarks/variants.py"))
    pipe = compose(work / "generator", work / "pipeline")
    return {"pipeline": pipe, "steps": steps, "train_cpu_s": {"autoencoder": ae_cpu, "generator": gen_cpu},
            "decoder": {"autoencoder_psnr_held_out_db": ae["metrics"]["psnr_held_out"]}}


def train_cascade(data: Path, work: Path, budget: float, costs: dict, base_share: float, size: int) -> dict:
    cfg = cascade_configs(size)
    steps = {"base": _steps(base_share, budget, costs["base"]),
             "upsampler": _steps(1 - base_share, budget, costs["upsampler"])}
    base_cfg = replace(cfg["base"], train=replace(cfg["base"].train, steps=steps["base"],
                                                  warmup_steps=min(100, steps["base"] // 10 + 1)))
    up_cfg = replace(cfg["upsampler"], train=replace(cfg["upsampler"].train, steps=steps["upsampler"],
                                                     warmup_steps=min(50, steps["upsampler"] // 10 + 1)))
    _, base_cpu = _timed(lambda: train_base(data, work / "base", base_cfg, command="benchmarks/variants.py"))
    up, up_cpu = _timed(lambda: train_upsampler(data, work / "upsampler", up_cfg, command="benchmarks/variants.py"))
    pipe = compose_cascade(work / "base", [work / "upsampler"], work / "pipeline")
    m = up["metrics"]
    return {"pipeline": pipe, "steps": steps, "train_cpu_s": {"base": base_cpu, "upsampler": up_cpu},
            "decoder": {"upsampler_psnr_held_out_db": m["psnr_held_out"],
                        "bicubic_psnr_held_out_db": m["psnr_bicubic_held_out"]}}


# -- metrics: functions of (pipeline, settings) -> dict; add FID / CLIP score / compositional accuracy here --


def colour_accuracy(pipe, s: dict) -> dict:
    """Share of single-shape images whose dominant colour is the prompted one, overall and per colour."""
    images = pipe([p for _, p in SINGLE_PROMPTS], num_images=s["seeds"], seed=0, **s["call"])
    hits = {c: [] for c in COLOURS}
    for k, img in enumerate(images):
        colour = SINGLE_PROMPTS[k // s["seeds"]][0]
        hits[colour].append(dominant_colour(img) == colour)
    every = [h for v in hits.values() for h in v]
    return {"colour_accuracy": sum(every) / len(every), "images": len(every),
            "per_colour": {c: sum(v) / len(v) for c, v in hits.items()}}


def sampling_cpu(pipe, s: dict) -> dict:
    """CPU seconds per image for one batch of `batch` images (after one warm-up call)."""
    pipe("warm-up", num_images=2, seed=0, **s["call"])
    _, cpu = _timed(lambda: pipe("a red circle", num_images=s["batch"], seed=0, **s["call"]))
    return {"sampling_cpu_s_per_image": cpu / s["batch"]}


METRICS = {"colour_accuracy": colour_accuracy, "sampling": sampling_cpu}


def evaluate(pipe, guidances: list[float], seeds: int, batch: int, extra: dict) -> list[dict]:
    rows = []
    for g in guidances:
        s = {"seeds": seeds, "batch": batch, "call": {"steps": 20, "guidance": g, **extra}}
        row = {"guidance": g, **{k: v for k, v in extra.items()}}
        for fn in METRICS.values():
            row.update(fn(pipe, s))
        rows.append(row)
    return rows


def write_grids(pipe, path: Path, **call) -> None:
    rows = [pipe(p, num_images=8, seed=0, steps=20, **call) for p in GRID_PROMPTS]
    grid([img for row in rows for img in row], cols=8, scale=2).save(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("outputs/variants"), help="where data, components, grids go")
    p.add_argument("--budget", type=float, default=600, help="training CPU-seconds (one thread) per variant")
    p.add_argument("--n", type=int, default=4000, help="shapes images")
    p.add_argument("--size", type=int, default=32, help="image side (the cascade's base draws size/2)")
    p.add_argument("--autoencoder-share", type=float, default=0.3,
                   help="latent: share of the budget for the autoencoder (the demo's 84 s of 287 s)")
    p.add_argument("--base-share", type=float, default=0.6, help="cascade: share of the budget for the base")
    p.add_argument("--guidance", type=float, nargs="+", default=[2.0, 4.0], help="guidance scales to evaluate")
    p.add_argument("--seeds", type=int, default=8, help="images per (colour, shape) prompt")
    p.add_argument("--batch", type=int, default=8, help="images per call when timing sampling")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args()
    torch.set_num_threads(1)  # the budget is one thread's CPU time
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    tlog.disable_progress_bar()
    dlog.disable_progress_bar()

    args.work.mkdir(parents=True, exist_ok=True)
    data = args.work / "data"
    if not (data / "metadata.jsonl").exists():
        write_shapes(data, ShapesConfig(n=args.n, size=args.size, seed=0))
    costs = step_costs(args.size)
    print("CPU s per training step: " + ", ".join(f"{k} {v:.3f}" for k, v in costs.items()), flush=True)
    latent = train_latent(data, args.work / "latent", args.budget, costs, args.autoencoder_share, args.size)
    cascade = train_cascade(data, args.work / "cascade", args.budget, costs, args.base_share, args.size)
    results = {"budget_cpu_s": args.budget, "cpu_s_per_step": costs, "n": args.n, "size": args.size}
    for name, v in (("latent", latent), ("cascade", cascade)):
        pipe = load_pipeline(v["pipeline"])
        variants = [{}] if name == "latent" else [{"dynamic_threshold": 0}, {"dynamic_threshold": 0.995}]
        rows = [r for extra in variants for r in evaluate(pipe, args.guidance, args.seeds, args.batch, extra)]
        write_grids(pipe, args.work / f"grids_{name}.png", guidance=args.guidance[0])
        results[name] = {k: v[k] for k in ("steps", "train_cpu_s", "decoder")} | {"rows": rows,
                                                                                 "pipeline": str(v["pipeline"])}
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


def report(r: dict) -> None:
    print(f"\nbudget {r['budget_cpu_s']:.0f} CPU-s per variant (one thread); {r['n']} shapes at {r['size']} px")
    for name in ("latent", "cascade"):
        v = r[name]
        parts = ", ".join(f"{k} {v['steps'][k]} steps / {v['train_cpu_s'][k]:.0f} CPU-s" for k in v["steps"])
        decoder = ", ".join(f"{k} {x:.2f}" for k, x in v["decoder"].items())
        print(f"{name:>8}: {parts}; {decoder}")
    print(f"\n{'variant':>8} {'guidance':>8} {'thresh':>6} {'colour':>7}  "
          + " ".join(f"{c[:6]:>6}" for c in COLOURS) + f" {'CPU-s/img':>9}")
    for name in ("latent", "cascade"):
        for row in r[name]["rows"]:
            print(f"{name:>8} {row['guidance']:>8.1f} {str(row.get('dynamic_threshold', '-')):>6} "
                  f"{row['colour_accuracy']:>7.1%}  " + " ".join(f"{row['per_colour'][c]:>6.0%}" for c in COLOURS)
                  + f" {row['sampling_cpu_s_per_image']:>9.3f}")
    lat = r["latent"]["rows"][0]["sampling_cpu_s_per_image"]
    cas = r["cascade"]["rows"][0]["sampling_cpu_s_per_image"]
    print(f"\nsampling CPU per image, cascade / latent: {cas / lat:.2f}×")


if __name__ == "__main__":
    main()
