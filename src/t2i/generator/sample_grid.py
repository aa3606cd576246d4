"""Sample grids during training: a few training captions drawn with the current weights every N steps."""

from __future__ import annotations

from pathlib import Path

import torch

from t2i.data import to_pil
from t2i.generator.model import GeneratorConfig
from t2i.pipeline.preview import grid
from t2i.sampling import (
    Denoiser,
    alphas_cumprod,
    guided,
    per_image_randn,
    sample_dpmpp_2m,
    spaced_timesteps,
    unet_network,
)

GRID_STEPS = 20  # DPM-Solver++(2M) steps per grid
GRID_GUIDANCE = 2.0  # classifier-free guidance scale of the grids


def sample_grid_hook(folder: Path, vae, cfg: GeneratorConfig, scaling_factor: float, prompts: list[str],
                     text_encoder=None):
    """`on_sample(step, module)` for the trainer: writes FOLDER/step-NNNNNNNNN.png, one image per prompt
    (seeds 0, 1, ...), from the module it is given (the EMA copy when there is one). `text_encoder` is the
    frozen encoder; None when the module holds its own (`module["text_encoder"]`, trained from scratch)."""
    abar = alphas_cumprod(cfg.schedule)

    @torch.no_grad()
    def on_sample(step: int, module) -> None:
        unet = module if text_encoder is not None else module["unet"]
        encoder = text_encoder if text_encoder is not None else module["text_encoder"]
        modes = [(m, m.training) for m in (unet, encoder)]
        for m, _ in modes:
            m.eval()
        try:
            device = next(unet.parameters()).device
            cond = encoder.encode(prompts)[0].to(device)  # (P, L, D)
            uncond = encoder.encode([""])[0].to(device)  # (1, L, D)
            denoise = guided(Denoiser(unet_network(unet), abar, cfg.prediction_type), cond, uncond, GRID_GUIDANCE)
            generators = [torch.Generator().manual_seed(k) for k in range(len(prompts))]
            size = unet.config.sample_size
            x = per_image_randn((unet.config.in_channels, size, size), generators, device=device)  # (P, c, h, w)
            timesteps = spaced_timesteps(cfg.schedule.num_train_timesteps, GRID_STEPS)
            x0 = sample_dpmpp_2m(denoise, x, timesteps, abar, generators=generators)
            pixels = vae.decode((x0 / scaling_factor).to(vae.device)).sample  # (P, 3, H, W)
        finally:
            for m, training in modes:
                m.train(training)
        folder.mkdir(parents=True, exist_ok=True)
        grid([to_pil(p) for p in pixels], scale=2).save(folder / f"step-{step:09d}.png")

    return on_sample
