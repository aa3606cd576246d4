"""One super-resolution stage at sampling time: a pure function, like the samplers it runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from t2i.cascade.model import upsample, upsampler_network
from t2i.sampling import Denoiser, dynamic_thresholding, get_sampler, guided, per_image_randn


@torch.inference_mode()
def super_resolve(unet, low: torch.Tensor, *, factor: int, alphas_cumprod: torch.Tensor, prediction_type: str,
                  noise_level: int, timesteps: torch.Tensor, sampler: str, generators: Sequence[torch.Generator],
                  dynamic_threshold: float | None = None, autocast_dtype: torch.dtype | None = None,
                  text: torch.Tensor | None = None, uncond_text: torch.Tensor | None = None, guidance: float = 1.0,
                  callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Enlarge `low` (B, 3, h, w) in [−1, 1] `factor`× with an upsampler U-Net; returns (B, 3, h·f, w·f).

    The enlarged small image is noised to the fixed `noise_level` (the augmentation the network was trained
    with, Ho et al. 2022, Sec. 3.2) and stays fixed while x_T ~ N(0, I) is denoised. Per image, the
    augmentation noise, then x_T, then any sampler noise come from generators[i] alone, so image i depends
    only on its generator. `dynamic_threshold` is a percentile for `dynamic_thresholding` (None: off).
    `autocast_dtype`: run the U-Net under autocast to this dtype (e.g. bfloat16; None: float32). `text`
    (B, L, D): the prompts' embeddings, for a text-conditioned upsampler (and only for one); with `guidance` ≠ 1,
    classifier-free guidance against `uncond_text` (B or 1, L, D; the empty prompt's), one batched forward.
    """
    if not 0 <= noise_level < len(alphas_cumprod):
        raise ValueError(f"noise level must be a timestep in 0..{len(alphas_cumprod) - 1}, got {noise_level}")
    b = low.shape[0]
    level = torch.full((b,), noise_level, dtype=torch.long)  # (B,)
    enlarged = upsample(low.float(), factor)  # (B, 3, H, W)
    if guidance != 1 and text is None:
        raise ValueError(f"upsampler guidance {guidance} needs a text-conditioned upsampler and the prompt")

    def net(x_t: torch.Tensor, t: torch.Tensor, prompt: torch.Tensor | None) -> torch.Tensor:
        k = x_t.shape[0] // b  # 2 under guidance: [uncond; cond] halves, each with the same small image
        return upsampler_network(unet, level.repeat(k), text=prompt, autocast_dtype=autocast_dtype)(
            x_t, t, image.repeat(k, 1, 1, 1))

    denoiser = Denoiser(net, alphas_cumprod, prediction_type)
    image = denoiser.add_noise(enlarged, per_image_randn(enlarged.shape[1:], generators), level)  # (B, 3, H, W)
    denoise = guided(denoiser, text, uncond_text, guidance)

    if dynamic_threshold is not None:
        denoise = dynamic_thresholding(denoise, dynamic_threshold)
    x = per_image_randn(enlarged.shape[1:], generators)  # (B, 3, H, W)
    return get_sampler(sampler)(denoise, x, timesteps, alphas_cumprod, generators=generators, callback=callback)
