"""The denoising loss every diffusion model here trains with, whatever it denoises (latents, small images,
large images given small ones): noise x0 at a random training step t and regress the network output onto
the parameterisation's target (Ho et al. 2020; v-target of Salimans & Ho 2022), optionally Min-SNR-weighted;
and the rectified-flow loss with logit-normal timesteps (Esser et al. 2024, SD3).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from t2i.sampling import Denoiser, FlowDenoiser
from t2i.training.batches import sample_randint, sample_randn


def min_snr_weight(snr: torch.Tensor, gamma: float, prediction_type: str) -> torch.Tensor:
    """Min-SNR-γ loss weights (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting Strategy"):
    min(SNR, γ) over what the target's error already weighs, SNR for ε, SNR + 1 for v, 1 for x0."""
    capped = snr.clamp(max=gamma)
    if prediction_type == "v_prediction":
        return capped / (snr + 1)
    if prediction_type == "epsilon":
        return capped / snr
    return capped


def squared_error(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(B,) mean squared error per sample; with `mask` (B, 1, H, W) of 0/1, the mean over the positions it keeps."""
    err = (prediction.float() - target).pow(2)
    if mask is None:
        return err.flatten(1).mean(1)
    mask = mask.to(err.dtype)
    return (err * mask).flatten(1).sum(1) / (mask.flatten(1).sum(1) * err.shape[1])


def diffusion_loss(denoiser: Denoiser, x0: torch.Tensor, predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                   generator: torch.Generator, *, min_snr_gamma: float = 0.0,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the batch of ‖predict(x_t, t) − target‖², x_t = α_t·x0 + σ_t·ε, t uniform over training steps.

    `predict(x_t, t)` runs the network with whatever conditioning the caller holds. `generator` draws t, then
    ε, per sample (`sample_randint`, `sample_randn`): a multi-process run draws for each sample what a single
    process would. `mask` (B, 1, H, W): only the positions it keeps count (deferred patch masking).
    """
    b, device = x0.shape[0], x0.device
    t = sample_randint(len(denoiser.alphas_cumprod), (b,), generator, device=device)  # (B,)
    eps = sample_randn(x0.shape, generator, device=device)
    x_t = denoiser.add_noise(x0, eps, t)
    err = squared_error(predict(x_t, t), denoiser.target(x0, eps, t), mask)  # (B,)
    if min_snr_gamma > 0:
        snr = (denoiser.alphas_cumprod / (1 - denoiser.alphas_cumprod)).to(device)[t].to(err.dtype)  # (B,)
        err = err * min_snr_weight(snr, min_snr_gamma, denoiser.prediction_type)
    return err.mean()


def flow_loss(denoiser: FlowDenoiser, x0: torch.Tensor, predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
              generator: torch.Generator, *, logit_mean: float = 0.0, logit_std: float = 1.0,
              mask: torch.Tensor | None = None) -> torch.Tensor:
    """Rectified flow / conditional flow matching with logit-normal timesteps (Esser et al. 2024, "Scaling
    Rectified Flow Transformers", https://arxiv.org/abs/2403.03206, §2 and §3.1, "rf/lognorm(0.00, 1.00)",
    their best variant): mean over the batch of ‖predict(x_t, t·N) − (ε − x0)‖², x_t = (1−t)·x0 + t·ε,
    t = sigmoid(n), n ~ N(logit_mean, logit_std²), which puts most samples at intermediate t.

    `predict(x_t, timestep)` runs the network; it is handed the timestep as the network sees it (t times the
    denoiser's num_train_timesteps). `generator` draws n, then ε, per sample, as `diffusion_loss` does; `mask`
    as there.
    """
    b, device = x0.shape[0], x0.device
    t = torch.sigmoid(logit_mean + logit_std * sample_randn((b,), generator, device=device))  # (B,) in (0, 1)
    eps = sample_randn(x0.shape, generator, device=device)
    x_t = denoiser.add_noise(x0, eps, t)
    out = predict(x_t, t * denoiser.num_train_timesteps)
    return squared_error(out, denoiser.target(x0, eps, t), mask).mean()
