"""Samplers for a VP-trained generator: pure functions with one signature.

    sample_X(denoise, x, timesteps, alphas_cumprod, *, generators=None, callback=None, **opts) -> x0

- `denoise(x_t (B, C, H, W), t (B,) long) -> x0_hat` (a `Denoiser`, or `guided(...)` around one);
- `x` is x_T, unit Gaussian (see `per_image_randn`), taken to sit at `timesteps[0]`;
- `timesteps` are strictly decreasing training timesteps (`spaced_timesteps`); the last step goes to ᾱ = 1;
- `generators` (one `torch.Generator` per image) are the only source of fresh noise, so image i depends
  only on generators[i], whatever its position in the batch;
- `callback(step_index, x_t, x0_hat)` is called once per denoiser evaluation (for previews).

No object keeps a step counter between calls, so concurrent requests cannot corrupt each other.
Coefficients are computed in float64 from `alphas_cumprod`; the state stays in x's dtype.
"""

import math
from typing import Callable, Sequence

import torch

from t2i.sampling.schedule import LAMBDA_MIN_CLIPPED, max_timestep_above

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Callback = Callable[[int, torch.Tensor, torch.Tensor], None]


def per_image_randn(shape: Sequence[int], generators: Sequence[torch.Generator], *,
                    dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor:
    """(B, *shape) unit Gaussian noise whose row i is drawn from generators[i] alone.

    Each row is drawn in float32 on its generator's device (the numbers diffusers' `randn_tensor` draws
    for a list of generators), then moved to `device` and cast to `dtype`.
    """
    if not generators:
        raise ValueError("per_image_randn needs one torch.Generator per image, got none")
    rows = [torch.randn(tuple(shape), generator=g, device=g.device, dtype=torch.float32) for g in generators]
    return torch.stack(rows).to(device=device if device is not None else rows[0].device, dtype=dtype)


def _check(x: torch.Tensor, timesteps, alphas_cumprod: torch.Tensor, generators=None) -> list[int]:
    ts = [int(t) for t in torch.as_tensor(timesteps).reshape(-1)]
    if not ts:
        raise ValueError("timesteps is empty; sampling needs at least 1 step")
    if any(a <= b for a, b in zip(ts, ts[1:])) or ts[-1] < 0 or ts[0] >= len(alphas_cumprod):
        raise ValueError(f"timesteps must strictly decrease within [0, {len(alphas_cumprod)}), got {ts}")
    if generators is not None and len(generators) != x.shape[0]:
        raise ValueError(f"{x.shape[0]} samples, but {len(generators)} generators")
    return ts


def _abar(alphas_cumprod: torch.Tensor, t: int | None) -> float:
    """ᾱ_t as a float64 Python float; t = None is the end of sampling, ᾱ = 1 (diffusers' set_alpha_to_one)."""
    return 1.0 if t is None else float(alphas_cumprod[t].double())


def _t(x: torch.Tensor, t: int) -> torch.Tensor:
    return torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)  # (B,)


def sample_ddim(denoise: Denoise, x: torch.Tensor, timesteps, alphas_cumprod: torch.Tensor, *,
                generators: Sequence[torch.Generator] | None = None, callback: Callback | None = None,
                eta: float = 0.0) -> torch.Tensor:
    """Implements DDIM, eq. (12) of Song et al. (2021), "Denoising Diffusion Implicit Models".

    eta = 0 is the deterministic DDIM sampler; eta = 1 is the DDPM ancestral sampler on the strided steps.
    The last step goes to ᾱ = 1 and returns the predicted x0.
    """
    ts = _check(x, timesteps, alphas_cumprod, generators)
    if eta > 0 and generators is None:
        raise ValueError("sample_ddim with eta > 0 draws noise: pass one generator per image")
    for i, t in enumerate(ts):
        a_t, a_s = _abar(alphas_cumprod, t), _abar(alphas_cumprod, ts[i + 1] if i + 1 < len(ts) else None)
        x0 = denoise(x, _t(x, t))
        if callback is not None:
            callback(i, x, x0)
        eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
        var = eta**2 * (1 - a_s) / (1 - a_t) * (1 - a_t / a_s)  # σ_t(η)², eq. (16)
        x = math.sqrt(a_s) * x0 + math.sqrt(max(1 - a_s - var, 0.0)) * eps
        if var > 0:
            x = x + math.sqrt(var) * per_image_randn(x.shape[1:], generators, dtype=x.dtype, device=x.device)
    return x


def sample_ddpm(denoise: Denoise, x: torch.Tensor, timesteps, alphas_cumprod: torch.Tensor, *,
                generators: Sequence[torch.Generator] | None = None,
                callback: Callback | None = None) -> torch.Tensor:
    """Implements ancestral sampling, eqs. (6)-(7) of Ho et al. (2020), "Denoising Diffusion Probabilistic Models".

    x_s ~ q(x_s | x_t, x0_hat) on the strided steps t → s, with the "fixed_small" variance β̃ = (1−ᾱ_s)/(1−ᾱ_t)·β,
    β = 1 − ᾱ_t/ᾱ_s. This equals `sample_ddim(eta=1)`. The last step goes to ᾱ = 1 without noise.
    """
    ts = _check(x, timesteps, alphas_cumprod, generators)
    if generators is None:
        raise ValueError("sample_ddpm draws noise: pass one generator per image")
    for i, t in enumerate(ts):
        a_t, a_s = _abar(alphas_cumprod, t), _abar(alphas_cumprod, ts[i + 1] if i + 1 < len(ts) else None)
        x0 = denoise(x, _t(x, t))
        if callback is not None:
            callback(i, x, x0)
        beta = 1 - a_t / a_s
        x = (math.sqrt(a_s) * beta / (1 - a_t)) * x0 + (math.sqrt(1 - beta) * (1 - a_s) / (1 - a_t)) * x  # μ̃, eq. (7)
        if i + 1 < len(ts):
            noise = per_image_randn(x.shape[1:], generators, dtype=x.dtype, device=x.device)
            x = x + math.sqrt((1 - a_s) / (1 - a_t) * beta) * noise
    return x


def sample_dpmpp_2m(denoise: Denoise, x: torch.Tensor, timesteps, alphas_cumprod: torch.Tensor, *,
                    generators: Sequence[torch.Generator] | None = None, callback: Callback | None = None,
                    lambda_min: float = LAMBDA_MIN_CLIPPED) -> torch.Tensor:
    """Implements DPM-Solver++(2M), Algorithm 2 of Lu et al. (2022), "DPM-Solver++", with data prediction.

    Multistep, second order in λ = log(α/σ); the first step is first order (DDIM), and so is the final step
    to σ = 0, which returns the last x0_hat (diffusers' `final_sigmas_type="zero"`). Schedule-end guard:
    timesteps with λ(t) < lambda_min are clamped to the largest t with λ ≥ lambda_min (diffusers'
    `lambda_min_clipped`; it re-spaces the grid below that t instead), so a few clamped steps may merge.
    Without it, ε-networks on the cosine schedule blew up (docs/pitfalls.md). Deterministic: no noise.
    """
    ts = _check(x, timesteps, alphas_cumprod, generators)
    t_max = max_timestep_above(alphas_cumprod.double(), lambda_min) if lambda_min > -math.inf else ts[0]
    ts = list(dict.fromkeys(min(t, t_max) for t in ts))  # clamp λ(t) ≥ lambda_min; drop merged steps

    def alpha_sigma_lambda(t):
        a = _abar(alphas_cumprod, t)
        return math.sqrt(a), math.sqrt(1 - a), 0.5 * math.log(a / (1 - a))

    x0_prev, h_prev = None, None
    for i, t in enumerate(ts):
        x0 = denoise(x, _t(x, t))
        if callback is not None:
            callback(i, x, x0)
        if i + 1 == len(ts):
            return x0  # final first-order step to σ = 0: x = x0_hat
        alpha_t, sigma_t, lam_t = alpha_sigma_lambda(t)
        alpha_s, sigma_s, lam_s = alpha_sigma_lambda(ts[i + 1])
        h = lam_s - lam_t
        if x0_prev is None:
            d = x0
        else:
            r = h_prev / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
        x = (sigma_s / sigma_t) * x - (alpha_s * math.expm1(-h)) * d
        x0_prev, h_prev = x0, h
    return x


def sample_euler(denoise: Denoise, x: torch.Tensor, timesteps, alphas_cumprod: torch.Tensor, *,
                 generators: Sequence[torch.Generator] | None = None,
                 callback: Callback | None = None) -> torch.Tensor:
    """Implements Algorithm 2 (Euler steps, no churn) from Karras et al. (2022), "Elucidating the Design Space".

    Euler on the probability-flow ODE dx̃/dσ = (x̃ − x0_hat)/σ in k-diffusion's σ-space, x̃ = x_t/√ᾱ,
    σ = √((1−ᾱ)/ᾱ), then σ = 0 at the end. x_T is mapped exactly, x̃_T = x_T·√(1+σ_T²); diffusers'
    EulerDiscreteScheduler instead starts from noise·σ_T for "trailing"/"linspace" spacing.
    At integer timesteps this coincides with DDIM η = 0: x̃_s = x0 + (σ_s/σ_t)(x̃_t − x0) is eq. (12) over √ᾱ_s.
    """
    ts = _check(x, timesteps, alphas_cumprod, generators)
    sigmas = [math.sqrt((1 - a) / a) for a in (_abar(alphas_cumprod, t) for t in ts)] + [0.0]
    x = x * math.sqrt(1 + sigmas[0] ** 2)  # x̃ = x_t / √ᾱ
    for i, t in enumerate(ts):
        x_t = x / math.sqrt(1 + sigmas[i] ** 2)  # the network sees VP inputs
        x0 = denoise(x_t, _t(x, t))
        if callback is not None:
            callback(i, x_t, x0)
        d = (x - x0) / sigmas[i]
        x = x + d * (sigmas[i + 1] - sigmas[i])
    return x


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "ddim": sample_ddim,
    "ddpm": sample_ddpm,
    "dpmpp_2m": sample_dpmpp_2m,
    "euler": sample_euler,
}


def get_sampler(name: str) -> Callable[..., torch.Tensor]:
    """The sampler called `name` in `SAMPLERS`."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")
    return SAMPLERS[name]
