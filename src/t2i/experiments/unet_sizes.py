"""`t2i experiment unet-sizes`: same data, same text encoder; only the U-Net's width changes, at equal steps and
at equal compute.

Imagen (Saharia et al. 2022, Fig. 4b) scaled the U-Net from 300M to 2B parameters at equal training steps and
found the gains far smaller than those from scaling the text encoder. Equal steps favours the large U-Net (it
is given more compute); equal compute (see `compute.py`: CPU time per step by default, or FLOPs) asks the
practical question: for the same budget, is a bigger or a smaller U-Net better?

A run is identified by (U-Net width, steps, learning rate, seed), so the reference U-Net's equal-steps run is
also its equal-compute run and is trained once.

The learning rate can follow the width (`lr_scaling="width"`): a U-Net k times wider than the recipe's trains at
1/k of the recipe's rate, the rule μP (Yang et al. 2021) gives Adam for hidden weights. Without it, a wide U-Net
trained at the small one's rate can diverge (the corpus preset's (128, 256) U-Net did at 2e-3 on both seeds).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from t2i.experiments import compute
from t2i.experiments.report import write_results
from t2i.experiments.runner import (ExperimentConfig, append_invocation, prepare_shared, run_one,
                                   write_experiment_record)
from t2i.diffusion.unet import GeneratorConfig
from t2i.text import MINILM

log = logging.getLogger("t2i.experiments")

TITLE = "U-Net sizes: FID vs CLIP score, one curve per U-Net (same text encoder)"
EQUAL_STEPS, EQUAL_COMPUTE = "equal steps", "equal compute"
LR_SCALINGS = ("none", "width")  # every U-Net at the recipe's learning rate; or the rate times recipe width / width


@dataclass
class UNetSizesConfig:
    experiment: ExperimentConfig
    widths: tuple[tuple[int, ...], ...]  # channels per level of each U-Net, small to large (the rest: the recipe's)
    text_encoder: str = MINILM  # the one text encoder: "minilm", "scratch" or a local folder
    compute_measure: str = "cpu_time"  # what equal compute equalises: "cpu_time" (per step, measured here) or "flops"
    lr_scaling: str = "none"  # one of LR_SCALINGS

    def __post_init__(self):
        if self.lr_scaling not in LR_SCALINGS:
            raise ValueError(f"unknown learning-rate scaling {self.lr_scaling!r}; choose from {', '.join(LR_SCALINGS)}")
        if self.compute_measure not in compute.COMPUTE_MEASURES:
            raise ValueError(f"unknown compute measure {self.compute_measure!r}; choose from "
                             f"{', '.join(compute.COMPUTE_MEASURES)}")
        if not self.widths:
            raise ValueError("no U-Net widths given")


def unet_config(recipe: GeneratorConfig, widths: tuple[int, ...]) -> GeneratorConfig:
    """The recipe's U-Net with other channel widths (the GroupNorm groups shrunk to divide them if need be)."""
    if len(widths) != len(recipe.block_out_channels):
        raise ValueError(f"U-Net widths {tuple(widths)} have {len(widths)} levels; the recipe's U-Net has "
                         f"{len(recipe.block_out_channels)}")
    return replace(recipe, block_out_channels=tuple(widths), norm_num_groups=math.gcd(recipe.norm_num_groups, *widths))


def scaled_lr(lr: float, recipe: tuple[int, ...], widths: tuple[int, ...], scaling: str) -> float:
    """The learning rate for a U-Net of `widths` when the recipe's U-Net (`recipe` widths) trains at `lr`."""
    if scaling == "none":
        return lr
    return lr * recipe[0] / widths[0]


def _name(widths: tuple[int, ...]) -> str:
    return "unet-" + "-".join(map(str, widths))


def measure_costs(folder: Path, cfg: UNetSizesConfig, shape: compute.StepShape) -> dict:
    """Parameters, FLOPs and CPU seconds per step of each U-Net and of the recipe's, and the equal-compute steps;
    measured once and kept in compute.json, so that a resumed experiment trains for the same steps."""
    recipe = cfg.experiment.generator
    configs = {_name(w): unet_config(recipe.model, w) for w in cfg.widths}
    configs["reference"] = recipe.model
    key = {"widths": [list(w) for w in cfg.widths], "reference": list(recipe.model.block_out_channels),
           "shape": asdict(shape), "steps": recipe.train.steps, "measure": cfg.compute_measure}
    path = folder / "compute.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved["key"] == key:
            return saved
    log.info("== measuring the cost of a training step of each U-Net (%s)", cfg.compute_measure)
    unique = list({tuple(c.block_out_channels): c for c in configs.values()}.values())  # the reference is measured
    # once even when it is also on the ladder, so that its equal-compute steps are exactly the recipe's
    cpu = dict(zip((tuple(c.block_out_channels) for c in unique), compute.step_cpu_seconds(unique, shape)))
    costs = {name: {"block_out_channels": list(c.block_out_channels), "parameters": compute.parameter_count(c, shape),
                    "flops_per_step": compute.step_flops(c, shape),
                    "cpu_seconds_per_step": round(cpu[tuple(c.block_out_channels)], 5)}
             for name, c in configs.items()}
    measure = "cpu_seconds_per_step" if cfg.compute_measure == "cpu_time" else "flops_per_step"
    ref = costs["reference"][measure]
    for name in configs:
        costs[name]["equal_compute_steps"] = compute.equal_compute_steps(recipe.train.steps, ref, costs[name][measure])
    import torch

    saved = {"key": key, "measure": measure, "torch_threads": torch.get_num_threads(), "costs": costs}
    path.write_text(json.dumps(saved, indent=2) + "\n")
    return saved


def _text_width(source: str) -> int:
    from t2i.text import TextEncoderConfig, source_folder

    if source == "scratch":
        return TextEncoderConfig().scratch_hidden_size
    folder = Path(source_folder(source))
    config = json.loads((folder / "config.json").read_text())
    return int(next(config[k] for k in ("hidden_size", "d_model", "width") if k in config))


def run_unet_sizes(root: str | Path, cfg: UNetSizesConfig, *, preset: str, data: Path | None = None,
                   autoencoder: Path | None = None, clip: Path | None = None, classifier: Path | None = None,
                   command: str | None = None) -> dict:
    """Every U-Net × {equal steps, equal compute} × seed, then results.json, results.md and figure.png in
    ROOT/unet-sizes."""
    start_wall, start_cpu = time.time(), time.process_time()
    root = Path(root).resolve()
    exp = cfg.experiment
    for w in cfg.widths:
        unet_config(exp.generator.model, w)  # fail on a bad width before any work
    shared = prepare_shared(root, exp.shared, data=data, autoencoder=autoencoder, clip=clip, classifier=classifier,
                            eval_split=exp.eval.split, recognition=exp.recognition_images > 0)
    folder = root / "unet-sizes"
    folder.mkdir(parents=True, exist_ok=True)
    ae = json.loads((shared.autoencoder / "config.json").read_text())
    ae_info = json.loads((shared.autoencoder / "t2i_component.json").read_text())
    shape = compute.StepShape(batch_size=exp.generator.train.micro_batch_size, latent_channels=ae["latent_channels"],
                              latent_size=ae_info["image_size"] // ae_info["downsampling_factor"],
                              text_length=exp.generator.text.max_length, text_width=_text_width(cfg.text_encoder))
    costs = measure_costs(folder, cfg, shape)
    meta = {"experiment": "unet-sizes", "preset": preset, "headline_guidance": exp.headline_guidance,
            "seeds": list(exp.seeds), "shared": shared.info, "compute": costs, "text_encoder": cfg.text_encoder,
            "config": json.loads(json.dumps(asdict(cfg), default=str))}
    write_experiment_record(folder, meta)
    text = replace(exp.generator.text, source=cfg.text_encoder)
    plan = []  # (group, widths, steps)
    for group in (EQUAL_STEPS, EQUAL_COMPUTE):
        for w in cfg.widths:
            steps = (exp.generator.train.steps if group == EQUAL_STEPS
                     else costs["costs"][_name(w)]["equal_compute_steps"])
            plan.append((group, tuple(w), steps))
    runs = []
    for seed in exp.seeds:
        for group, widths, steps in plan:
            name = _name(widths)
            log.info("== %s, %d steps (%s), seed %d", name, steps, group, seed)
            base = exp.generator.train
            lr = scaled_lr(base.lr, exp.generator.model.block_out_channels, widths, cfg.lr_scaling)
            train = replace(base, seed=seed, steps=steps, lr=lr, warmup_steps=min(base.warmup_steps, max(1, steps // 2)))
            generator = replace(exp.generator, model=unet_config(exp.generator.model, widths),
                                text=replace(text, seed=seed), train=train)
            cost = costs["costs"][name]
            label = f"U-Net {cost['parameters'] / 1e6:.2f} M {widths}"
            run_name = f"steps-{steps}"
            if group == EQUAL_COMPUTE:
                label += f", {steps} steps"
            if lr != base.lr:  # a run at another rate is another run: its own folder
                label += f", lr {lr:g}"
                run_name += f"-lr-{lr:g}"
            run = run_one(folder / "runs" / name / run_name / f"seed-{seed}", shared, exp, generator, describe={
                "group": group, "name": name, "label": label, "seed": seed, "unet_channels": list(widths),
                "text_encoder": cfg.text_encoder, "lr": lr})
            runs.append({**run, "group": group, "label": label})
            write_results(folder, TITLE, runs, {**{k: meta[k] for k in ("experiment", "preset", "headline_guidance")},
                                                "recognition": shared.info["recognition"]})
    append_invocation(folder, start_wall, start_cpu, command)
    return json.loads((folder / "results.json").read_text())
