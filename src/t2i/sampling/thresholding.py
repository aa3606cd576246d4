"""Dynamic thresholding of pixel-space x0 predictions, as a wrapper around any `denoise` function."""

from typing import Callable

import torch

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def dynamic_thresholding(denoise: Denoise, percentile: float = 0.995) -> Denoise:
    """Implements dynamic thresholding, Sec. 2.3 of Saharia et al. (2022), "Photorealistic Text-to-Image
    Diffusion Models with Deep Language Understanding" (Imagen), https://arxiv.org/abs/2205.11487.

    At every step, per image: s = the `percentile` quantile of |x0_hat| over all its pixels and channels,
    s = max(s, 1); then x0_hat = clamp(x0_hat, −s, s) / s. Predictions already inside [−1, 1] pass unchanged;
    saturated ones (large guidance scales push them out) are pulled back in rather than clipped flat.
    For pixels in [−1, 1] only: latents have no such range (docs/pitfalls.md).
    """
    if not 0 < percentile <= 1:
        raise ValueError(f"dynamic thresholding percentile must be in (0, 1], got {percentile}")

    def denoise_thresholded(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x0 = denoise(x_t, t)
        s = torch.quantile(x0.detach().abs().flatten(1).float(), percentile, dim=1).clamp(min=1)  # (B,)
        s = s.to(x0.dtype).reshape((-1,) + (1,) * (x0.dim() - 1))  # (B, 1, 1, 1)
        return torch.maximum(torch.minimum(x0, s), -s) / s

    return denoise_thresholded
