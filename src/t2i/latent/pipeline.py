"""The latent variant composed: prompt → text encoder → sampler over the U-Net's (or the transformer's) latents →
VAE decoder → images.

`LatentPipeline` holds no per-call state: each call builds its own denoiser, noise and sampler run, so
concurrent calls cannot corrupt each other. Image i depends only on seed i, whatever the batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image

from t2i.images import to_pil
from t2i.components import PIPELINE_INFO
from t2i.pipeline.base import DEFAULTS, Pipeline, Request
from t2i.pipeline.folder import pipeline_text_encoder
from t2i.pipeline.speed import SpeedConfig, prepare_unet, use_bf16
from t2i.sampling import (
    FLOW_SAMPLERS,
    FLOW_SCHEDULER,
    SAMPLERS,
    Denoiser,
    FlowDenoiser,
    flow_sigmas,
    get_flow_sampler,
    NoiseScheduleConfig,
    alphas_cumprod,
    get_sampler,
    guided,
    per_image_randn,
    spaced_timesteps,
    unet_network,
)
from t2i.text import TextEncoder


FLOW_DEFAULT_SAMPLER = "flow_euler"  # a flow generator's sampler when its folder names none


class LatentPipeline(Pipeline):
    """The latent variant (Stable Diffusion's): text encoder → U-Net over autoencoder latents → VAE decoder. The
    generator may be the transformer backbone instead (PixArt-α's); `unet` then holds it, under the same name."""

    samplers = tuple(SAMPLERS)  # a flow generator's pipeline has FLOW_SAMPLERS instead

    def __init__(self, text_encoder: TextEncoder, unet, vae, scheduler_config: dict, info: dict, *,
                 speed: SpeedConfig | None = None, preview_decoder=None):
        # The scheduler config says how the generator was trained: FlowMatchEulerDiscreteScheduler for the
        # flow objective, a VP (DDIM-family) schedule otherwise.
        self.objective = "flow" if scheduler_config.get("_class_name") == FLOW_SCHEDULER else "diffusion"
        flow = self.objective == "flow"
        own = {"sampler": FLOW_DEFAULT_SAMPLER} if flow else {}
        super().__init__(text_encoder, info, {**DEFAULTS, **own, **info.get("defaults", {})})
        self.samplers = tuple(FLOW_SAMPLERS) if flow else tuple(SAMPLERS)
        if self.defaults["sampler"] not in self.samplers:
            raise ValueError(f"the folder's default sampler {self.defaults['sampler']!r} does not fit its "
                             f"{self.objective} generator; choose from {', '.join(self.samplers)}")
        from t2i.diffusion.transformer import is_transformer, network_factor

        self.unet = unet.eval().requires_grad_(False)
        self.backbone = "transformer" if is_transformer(unet) else "unet"
        self.vae = vae.eval().requires_grad_(False)
        self.speed = speed or SpeedConfig()
        self.bf16 = use_bf16(self.speed, pays_on_native=False)  # only when asked: not measured faster here
        # Reusing the prompt's keys/values needs the cross-attention to see the same text tensor at every step. The
        # transformer projects the text inside its forward (caption_projection), a new tensor each step, so for it
        # the reuse could never hit: it runs diffusers' own processors instead.
        self._reuse_text_kv = self.speed.reuse_text_kv and not self.speed.compile and self.backbone == "unet"
        self._unet_module = prepare_unet(self.unet, self.speed if self.backbone == "unet" else
                                         replace(self.speed, reuse_text_kv=False))  # what the sampler calls
        # The tiny decoder fitted after autoencoder training (t2i.autoencoder.preview_decoder), or None.
        self.preview_decoder = preview_decoder.eval().requires_grad_(False) if preview_decoder is not None else None
        self.num_train_timesteps = int(scheduler_config["num_train_timesteps"])
        if flow:
            self.flow_shift = float(scheduler_config.get("shift", 1.0))
        else:
            self.prediction_type = scheduler_config["prediction_type"]
            self.schedule = NoiseScheduleConfig(
                num_train_timesteps=scheduler_config["num_train_timesteps"],
                beta_start=scheduler_config["beta_start"],
                beta_end=scheduler_config["beta_end"],
                beta_schedule=scheduler_config["beta_schedule"],
            )
            self.timestep_spacing = scheduler_config.get("timestep_spacing", "trailing")
            self.alphas_cumprod = alphas_cumprod(self.schedule)
        self.latent_scaling_factor = float(vae.config.scaling_factor)
        self.vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.unet_factor = network_factor(unet)  # the U-Net's 2^(levels − 1), the transformer's patch size

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, speed: SpeedConfig | None = None) -> LatentPipeline:
        """Load a folder written by `t2i compose` (float32, CPU), to run with the options of `speed`."""
        from diffusers import AutoencoderKL, PixArtTransformer2DModel, UNet2DConditionModel

        from t2i.autoencoder.preview_decoder import load_preview_decoder

        folder = Path(folder)
        if not (folder / "model_index.json").exists():
            raise FileNotFoundError(f"{folder} is not a pipeline folder (no model_index.json); make one with t2i compose")
        info = json.loads((folder / PIPELINE_INFO).read_text()) if (folder / PIPELINE_INFO).exists() else {}
        scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
        text_encoder = pipeline_text_encoder(folder, info)
        # float32 whatever the files hold: a shipped folder stores float16 (recipes/ship_model.py). diffusers
        # would upcast anyway when given no dtype (into the float32 model it builds); we say so rather than rely on it.
        if (folder / "transformer").is_dir():  # the transformer backbone, where diffusers' PixArt pipelines keep it
            unet = PixArtTransformer2DModel.from_pretrained(folder / "transformer", use_safetensors=True,
                                                            torch_dtype=torch.float32)
        else:
            unet = UNet2DConditionModel.from_pretrained(folder / "unet", use_safetensors=True,
                                                        torch_dtype=torch.float32)
        vae = AutoencoderKL.from_pretrained(folder / "vae", use_safetensors=True, torch_dtype=torch.float32)
        return cls(text_encoder, unet, vae, scheduler_config, info, speed=speed,
                   preview_decoder=load_preview_decoder(folder / "vae"))

    @property
    def image_size(self) -> int:
        return self.unet.config.sample_size * self.vae_factor

    @property
    def size_multiple(self) -> int:
        return self.vae_factor * self.unet_factor

    def size_reason(self) -> str:
        if self.backbone == "transformer":
            return f"autoencoder factor {self.vae_factor} × transformer patch size {self.unet_factor}"
        return f"autoencoder factor {self.vae_factor} × U-Net factor {self.unet_factor}"

    # -- the pieces -------------------------------------------------------------------------------

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> list[Image.Image]:
        """Latents (B, c, h, w), scaled as the generator sees them, to PIL images."""
        pixels = self.vae.decode(latents / self.latent_scaling_factor).sample  # (B, 3, H, W) in [-1, 1]
        return [to_pil(p) for p in pixels]

    @torch.inference_mode()
    def decode_preview(self, latents: torch.Tensor) -> list[Image.Image]:
        """A step's predicted clean latents as preview images: the tiny preview decoder when the folder has one
        (and `speed.fast_previews`), else the real decoder."""
        if self.preview_decoder is None or not self.speed.fast_previews:
            return self.decode(latents)
        pixels = self.preview_decoder(latents / self.latent_scaling_factor)  # (B, 3, H, W) in [-1, 1]
        return [to_pil(p) for p in pixels]

    @torch.inference_mode()
    def _sample(self, r: Request, on_step: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
        """Run the sampler for request `r`; returns scaled latents (B, c, h, w)."""
        cond = self.encode_prompts(r.prompts)
        uncond = self.unconditional(r.negatives) if r.guidance != 1 else None
        # A network per run: the reused text keys/values live exactly as long as this run.
        net = unet_network(self._unet_module, reuse_text_kv=self._reuse_text_kv,
                           autocast_dtype=torch.bfloat16 if self.bf16 else None)
        generators = [torch.Generator().manual_seed(k) for k in r.seeds]
        shape = (self.unet.config.in_channels, r.height // self.vae_factor, r.width // self.vae_factor)
        x = per_image_randn(shape, generators)  # (B, c, h, w)
        callback = (lambda i, x_t, x0: on_step(i, x0)) if on_step else None
        if self.objective == "flow":
            denoise = guided(FlowDenoiser(net, self.num_train_timesteps), cond, uncond, r.guidance)
            sigmas = flow_sigmas(r.steps, self.num_train_timesteps, self.flow_shift)
            return get_flow_sampler(r.sampler)(denoise, x, sigmas, generators=generators, callback=callback)
        denoise = guided(Denoiser(net, self.alphas_cumprod, self.prediction_type), cond, uncond, r.guidance)
        timesteps = spaced_timesteps(self.schedule.num_train_timesteps, r.steps, self.timestep_spacing)
        return get_sampler(r.sampler)(denoise, x, timesteps, self.alphas_cumprod,
                                         generators=generators, callback=callback)

    # -- the public calls ------------------------------------------------------------------------

    def __call__(self, prompt: str | list[str], *, negative_prompt: str | list[str] | None = None,
                 num_images: int = 1, steps: int | None = None, guidance: float | None = None,
                 seed: int | list[int] | None = None, sampler: str | None = None, height: int | None = None,
                 width: int | None = None, callback: Callable[[int, int, list[Image.Image]], None] | None = None,
                 ) -> list[Image.Image]:
        """Generate `num_images` images per prompt. `seed` is a base seed (image k gets seed + k) or one seed
        per image. `callback(step, total, previews)` receives each step's decoded clean-image prediction."""
        other = SAMPLERS if self.objective == "flow" else FLOW_SAMPLERS
        if sampler in other:
            raise ValueError(f"sampler {sampler!r} is for {'VP diffusion' if self.objective == 'flow' else 'flow'} "
                             f"generators; this one is a {self.objective} generator: "
                             f"choose from {', '.join(self.samplers)}")
        r = self.request(prompt, negative_prompt=negative_prompt, num_images=num_images, steps=steps,
                         guidance=guidance, seed=seed, sampler=sampler, height=height, width=width)
        on_step = (lambda i, x0: callback(i + 1, r.steps, self.decode_preview(x0))) if callback else None
        return self.label(self.decode(self._sample(r, on_step)), r)
