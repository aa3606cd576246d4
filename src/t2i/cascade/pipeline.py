"""The cascade variant (Imagen's): prompt → text encoder → pixel U-Net drawing a small image → super-resolution
stages, each a diffusion model conditioned on the image before it (and, where it was trained so, on the prompt).

Like `LatentPipeline`, it holds no per-call state. Image i depends only on seed i at every stage: one
`torch.Generator` per image supplies the base's noise, then each stage's augmentation and starting noise.
It takes the latent pipeline's speed options (`t2i.pipeline.speed.SpeedConfig`): the base reuses the prompt's
cross-attention keys/values within a run; channels_last, bfloat16 autocast and torch.compile apply to every U-Net.
Unlike the latent pipeline, it runs in bfloat16 by default on CPUs with native bfloat16 (measured faster there).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from t2i.cascade.sample import super_resolve
from t2i.components import PIPELINE_INFO
from t2i.images import to_pil
from t2i.pipeline.speed import SpeedConfig, prepare_unet, use_bf16
from t2i.pipeline.base import DEFAULTS, Pipeline, Request
from t2i.pipeline.folder import pipeline_text_encoder
from t2i.sampling import (
    SAMPLERS,
    Denoiser,
    NoiseScheduleConfig,
    alphas_cumprod,
    dynamic_thresholding,
    get_sampler,
    guided,
    per_image_randn,
    spaced_timesteps,
    unet_network,
)
from t2i.text import TextEncoder

# Sampling settings of a cascade folder beyond DEFAULTS; `t2i compose` stores them in t2i.json.
CASCADE_DEFAULTS = {
    "upsampler_steps": 10,  # sampling steps of each super-resolution stage
    "dynamic_threshold": None,  # percentile for Imagen's dynamic thresholding at every stage; None: off
    "upsampler_guidance": 1.0,  # classifier-free guidance scale of every text-conditioned stage (1: none)
}


@dataclass(frozen=True)
class CascadeOptions:
    """A cascade call's own settings (`Request.options`)."""

    upsampler_steps: int  # sampling steps of each super-resolution stage
    noise_levels: tuple[int, ...]  # each stage's augmentation level of the small image (a training timestep)
    dynamic_threshold: float | None  # percentile of Imagen's dynamic thresholding at every stage; None: off
    upsampler_guidance: float  # guidance scale of every text-conditioned stage (against the empty prompt)


class CascadePipeline(Pipeline):
    """Text encoder → base U-Net over small RGB images → one or more super-resolution U-Nets."""

    samplers = tuple(SAMPLERS)
    options = ("upsampler_steps", "noise_level", "dynamic_threshold", "upsampler_guidance")

    def __init__(self, text_encoder: TextEncoder, base, upsamplers: list, info: dict, *,
                 speed: SpeedConfig | None = None):
        if len(upsamplers) != len(info["upsamplers"]):
            raise ValueError(f"{len(upsamplers)} upsampler networks for {len(info['upsamplers'])} stages")
        super().__init__(text_encoder, info, {**DEFAULTS, **CASCADE_DEFAULTS, **info.get("defaults", {})})
        self.base = base.eval().requires_grad_(False)
        self.upsamplers = [u.eval().requires_grad_(False) for u in upsamplers]
        self.speed = speed or SpeedConfig()
        # What the samplers call: the base with its processors and layout (reused text keys/values unless compiled),
        # the upsamplers (no cross-attention, so nothing to reuse) with their layout; compiled wrappers when
        # speed.compile.
        self._reuse_text_kv = self.speed.reuse_text_kv and not self.speed.compile
        self._base_module = prepare_unet(self.base, self.speed)
        self._upsampler_modules = [prepare_unet(u, replace(self.speed, reuse_text_kv=False)) for u in self.upsamplers]
        # bfloat16 by default where the CPU has it natively: the upsampler's 64×64 steps run 2.6× faster, and
        # t2i compare found the same figures (BENCHMARKS.md); SpeedConfig(bf16=False) for float32 everywhere.
        self.bf16 = use_bf16(self.speed, pays_on_native=True)
        self._autocast = torch.bfloat16 if self.bf16 else None
        self.base_stage = info["base"]  # image_size, prediction_type, schedule
        self.stages = info["upsamplers"]  # each: low_size, image_size, prediction_type, schedule, noise_level

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, speed: SpeedConfig | None = None) -> CascadePipeline:
        """Load a folder written by `t2i compose --base ... --upsampler ...` (float32, CPU), to run with the options
        of `speed`."""
        from diffusers import UNet2DConditionModel, UNet2DModel

        folder = Path(folder)
        info = json.loads((folder / PIPELINE_INFO).read_text())
        text_encoder = pipeline_text_encoder(folder, info)
        # float32 whatever the files hold (a shipped folder stores float16: recipes/ship_model.py)
        base = UNet2DConditionModel.from_pretrained(folder / info["base"]["folder"], use_safetensors=True,
                                                    torch_dtype=torch.float32)
        upsamplers = [(UNet2DConditionModel if s.get("text_conditioned") else UNet2DModel).from_pretrained(
                      folder / s["folder"], use_safetensors=True, torch_dtype=torch.float32)
                      for s in info["upsamplers"]]
        return cls(text_encoder, base, upsamplers, info, speed=speed)

    @property
    def image_size(self) -> int:
        return self.stages[-1]["image_size"] if self.stages else self.base_stage["image_size"]

    @property
    def factors(self) -> list[int]:
        return [s["image_size"] // s["low_size"] for s in self.stages]

    @property
    def size_multiple(self) -> int:
        """Output sides must be multiples of this: every stage's size must divide by its U-Net's factor."""
        m = 2 ** (len(self.base.config.block_out_channels) - 1)  # the base size must divide by the base's factor
        enlarged = 1
        for factor, unet in zip(self.factors, self.upsamplers):
            enlarged *= factor
            u = 2 ** (len(unet.config.block_out_channels) - 1)
            m = math.lcm(m, u // math.gcd(u, enlarged))
        return m * math.prod(self.factors)

    def size_reason(self) -> str:
        return f"upsampling {'×'.join(map(str, self.factors)) or '1'} × the U-Nets' factors"

    # -- the pieces -------------------------------------------------------------------------------

    def decode(self, pixels: torch.Tensor, size: tuple[int, int] | None = None) -> list[Image.Image]:
        """Pixels (B, 3, h, w) in [−1, 1] to PIL images, enlarged (nearest neighbour) to `size` if given."""
        if size is not None and tuple(pixels.shape[-2:]) != size:
            pixels = F.interpolate(pixels.float(), size=size, mode="nearest")
        return [to_pil(p) for p in pixels]

    def _options(self, upsampler_steps, noise_level, dynamic_threshold, upsampler_guidance=None) -> CascadeOptions:
        upsampler_steps = int(upsampler_steps if upsampler_steps is not None else self.defaults["upsampler_steps"])
        if upsampler_steps < 1:
            raise ValueError(f"upsampler steps must be at least 1, got {upsampler_steps}")
        if noise_level is None:
            levels = [stage["noise_level"] for stage in self.stages]
        else:
            levels = [int(noise_level)] * len(self.stages) if isinstance(noise_level, int) else list(noise_level)
            if len(levels) != len(self.stages):
                raise ValueError(f"{len(levels)} noise levels for {len(self.stages)} upsamplers")
        for level, stage in zip(levels, self.stages):
            n = stage["schedule"]["num_train_timesteps"]
            if not 0 <= level < n:
                raise ValueError(f"noise level must be a timestep in 0..{n - 1}, got {level}")
        threshold = dynamic_threshold if dynamic_threshold is not None else self.defaults["dynamic_threshold"]
        if threshold is not None and not 0 <= threshold <= 1:
            raise ValueError(f"dynamic thresholding percentile must be in (0, 1] (0: off), got {threshold}")
        scale = float(upsampler_guidance if upsampler_guidance is not None else self.defaults["upsampler_guidance"])
        if scale < 1:
            raise ValueError(f"upsampler guidance must be at least 1 (1: none), got {scale}")
        if scale != 1 and not any(stage.get("text_conditioned") for stage in self.stages):
            raise ValueError(f"upsampler guidance {scale} needs a text-conditioned upsampler; this cascade's take no "
                             "prompt")
        return CascadeOptions(upsampler_steps, tuple(levels), threshold or None, scale)

    @torch.inference_mode()
    def _sample(self, r: Request, on_step: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
        """Run every stage for request `r`; returns pixels (B, 3, H, W) in [−1, 1]. `on_step(k, x0_hat)` is
        called with k counting the steps of all stages."""
        o: CascadeOptions = r.options
        cond = self.encode_prompts(r.prompts)
        uncond = self.unconditional(r.negatives) if r.guidance != 1 else None
        generators = [torch.Generator().manual_seed(k) for k in r.seeds]
        threshold = o.dynamic_threshold
        f = math.prod(self.factors)

        stage = self.base_stage
        ac = alphas_cumprod(NoiseScheduleConfig(**stage["schedule"]))
        # A network per run: the reused text keys/values live exactly as long as this run.
        net = unet_network(self._base_module, reuse_text_kv=self._reuse_text_kv, autocast_dtype=self._autocast)
        denoise = guided(Denoiser(net, ac, stage["prediction_type"]), cond, uncond, r.guidance)
        if threshold is not None:
            denoise = dynamic_thresholding(denoise, threshold)
        x = per_image_randn((3, r.height // f, r.width // f), generators)  # (B, 3, h, w)
        timesteps = spaced_timesteps(ac.shape[0], r.steps)

        def callback(offset: int):
            return (lambda i, x_t, x0: on_step(offset + i, x0)) if on_step else None

        pixels = get_sampler(r.sampler)(denoise, x, timesteps, ac, generators=generators,
                                           callback=callback(0)).clamp(-1, 1)
        done = r.steps
        for stage, unet, level in zip(self.stages, self._upsampler_modules, o.noise_levels):
            ac = alphas_cumprod(NoiseScheduleConfig(**stage["schedule"]))
            told = stage.get("text_conditioned")  # the prompt, guided against the empty one (not the negative prompt)
            text = cond if told else None
            scale = o.upsampler_guidance if told else 1.0
            uncond_text = self.unconditional(("",)) if scale != 1 else None
            pixels = super_resolve(
                unet, pixels, factor=stage["image_size"] // stage["low_size"], alphas_cumprod=ac,
                prediction_type=stage["prediction_type"], noise_level=level,
                timesteps=spaced_timesteps(ac.shape[0], o.upsampler_steps), sampler=r.sampler,
                generators=generators, dynamic_threshold=threshold, autocast_dtype=self._autocast, text=text,
                uncond_text=uncond_text, guidance=scale, callback=callback(done)).clamp(-1, 1)
            done += o.upsampler_steps
        return pixels

    # -- the public call -------------------------------------------------------------------------

    def __call__(self, prompt: str | list[str], *, negative_prompt: str | list[str] | None = None,
                 num_images: int = 1, steps: int | None = None, guidance: float | None = None,
                 seed: int | list[int] | None = None, sampler: str | None = None, height: int | None = None,
                 width: int | None = None, callback: Callable[[int, int, list[Image.Image]], None] | None = None,
                 upsampler_steps: int | None = None, noise_level: int | list[int] | None = None,
                 dynamic_threshold: float | None = None, upsampler_guidance: float | None = None) -> list[Image.Image]:
        """Generate `num_images` images per prompt (seeds as in `LatentPipeline`). `steps` and `guidance` are the
        base's; each upsampler runs `upsampler_steps` steps with its augmentation level `noise_level` (one for
        all stages, one per stage, or None: each stage's recorded level). `dynamic_threshold` is a percentile
        (0: off). `upsampler_guidance`: classifier-free guidance of text-conditioned stages against the empty
        prompt (1: none; default: the folder's). `callback(step, total, previews)` gets each step's predicted
        clean image, stage after stage, enlarged to the output size; `total` counts the steps of every stage."""
        options = self._options(upsampler_steps, noise_level, dynamic_threshold, upsampler_guidance)
        r = self.request(prompt, negative_prompt=negative_prompt, num_images=num_images, steps=steps,
                         guidance=guidance, seed=seed, sampler=sampler, height=height, width=width, options=options)
        total = r.steps + len(self.stages) * options.upsampler_steps
        size = (r.height, r.width)
        on_step = (lambda k, x0: callback(k + 1, total, self.decode(x0.clamp(-1, 1), size))) if callback else None
        return self.label(self.decode(self._sample(r, on_step)), r)
