"""The variance-preserving noise schedule the generator is trained on, and the timesteps a sampler visits.

A VP schedule is a decreasing sequence ᾱ_t (``alphas_cumprod``) over discrete training timesteps
t ∈ {0, …, N−1}; the forward process is x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε (Ho et al. 2020). Everything here
is a pure function of a `NoiseScheduleConfig`, defined exactly as diffusers defines it, so that a
pipeline folder run by diffusers' schedulers and t2i's samplers walk the same schedule.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch

BETA_SCHEDULES = ("scaled_linear", "linear", "squaredcos_cap_v2")
TIMESTEP_SPACINGS = ("trailing", "leading", "linspace")

# Floor on λ(t) = log(α_t/σ_t) for multistep solvers: diffusers' `lambda_min_clipped` value, below which
# (ᾱ < 3.7e-5, the last few steps of the cosine schedule) converting an ε-prediction to x0 multiplies the
# network's error by more than 1/α ≈ 164 and DPM-Solver++(2M) blew up (docs/pitfalls.md).
LAMBDA_MIN_CLIPPED = -5.1


@dataclass
class NoiseScheduleConfig:
    num_train_timesteps: int = 1000  # N: the discrete timesteps t = 0 … N−1 the generator is trained on
    beta_start: float = 0.00085  # β_0, per-step noise variance at t = 0 (ignored by squaredcos_cap_v2)
    beta_end: float = 0.012  # β_{N−1}, per-step noise variance at t = N−1 (ignored by squaredcos_cap_v2)
    beta_schedule: str = "scaled_linear"  # how β goes from start to end: scaled_linear | linear | squaredcos_cap_v2

    def __post_init__(self):
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"unknown beta_schedule {self.beta_schedule!r}; choose from {', '.join(BETA_SCHEDULES)}")
        if self.num_train_timesteps < 1:
            raise ValueError(f"num_train_timesteps must be at least 1, got {self.num_train_timesteps}")


def alphas_cumprod(config: NoiseScheduleConfig) -> torch.Tensor:
    """ᾱ_t = ∏_{s≤t} (1 − β_s), float64 (N,), with β defined as diffusers' DDPMScheduler defines it.

    "linear" is Ho et al. (2020); "scaled_linear" (linear in √β) is Rombach et al. (2022)'s latent-diffusion
    schedule; "squaredcos_cap_v2" is the cosine schedule of Nichol & Dhariwal (2021), β capped at 0.999.
    diffusers accumulates the product in float32; this one in float64 (they agree to ~1e-6 relative).
    """
    n = config.num_train_timesteps
    if config.beta_schedule == "linear":
        betas = torch.linspace(config.beta_start, config.beta_end, n, dtype=torch.float64)
    elif config.beta_schedule == "scaled_linear":
        betas = torch.linspace(config.beta_start**0.5, config.beta_end**0.5, n, dtype=torch.float64) ** 2
    else:  # squaredcos_cap_v2: β_t = 1 − ᾱ(t+1)/ᾱ(t) of the continuous cosine ᾱ, https://arxiv.org/abs/2102.09672

        def alpha_bar(u):
            return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = torch.tensor([min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), 0.999) for i in range(n)],
                             dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0)


def spaced_timesteps(num_train_timesteps: int, steps: int, spacing: str = "trailing") -> torch.Tensor:
    """The `steps` training timesteps a sampler visits, descending, LongTensor (steps,).

    Spacings as in Lin et al. (2023), "Common Diffusion Noise Schedules and Sample Steps are Flawed", Table 2,
    and as diffusers' DDIM/DDPM/Euler schedulers define them (steps_offset 0):
    - "trailing": round(N − i·N/steps) − 1, so sampling starts at the last training step t = N−1 (default);
    - "leading": i·(N // steps), so it never visits t > N − N/steps (the flaw the paper points out);
    - "linspace": round(linspace(0, N−1, steps)).
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if steps > num_train_timesteps:
        raise ValueError(f"steps must be at most num_train_timesteps={num_train_timesteps}, got {steps}")
    n = num_train_timesteps
    if spacing == "trailing":
        # diffusers' arange with a float stride; for some `steps` (61, 103, …) float error gives it one extra
        # element, rounding to t = −1: keep the first `steps`, which diffusers' list agrees with.
        t = np.round(np.arange(n, 0, -n / steps))[:steps] - 1
    elif spacing == "leading":
        t = (np.arange(0, steps) * (n // steps))[::-1]
    elif spacing == "linspace":
        t = np.round(np.linspace(0, n - 1, steps))[::-1]
    else:
        raise ValueError(f"unknown timestep spacing {spacing!r}; choose from {', '.join(TIMESTEP_SPACINGS)}")
    return torch.from_numpy(t.astype(np.int64).copy())


def max_timestep_above(alphas_cumprod: torch.Tensor, lambda_min: float) -> int:
    """The largest t with λ(t) = ½·log(ᾱ_t/(1−ᾱ_t)) ≥ lambda_min: the first timestep diffusers'
    DPMSolverMultistepScheduler visits under `lambda_min_clipped` (it re-spaces below it; we clamp to it)."""
    lam = 0.5 * torch.log(alphas_cumprod / (1 - alphas_cumprod))  # decreasing in t
    above = torch.nonzero(lam >= lambda_min)
    if len(above) == 0:
        raise ValueError(f"every timestep has λ below lambda_min={lambda_min}")
    return int(above[-1])


def diffusers_scheduler_config(
    config: NoiseScheduleConfig, prediction_type: str, spacing: str = "trailing"
) -> dict:
    """A diffusers scheduler config (scheduler_config.json) for a `DDIMScheduler` walking our schedule.

    `from_config` of this dict builds DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler and
    EulerDiscreteScheduler that reproduce `sample_ddim`, `sample_ddpm`, `sample_dpmpp_2m` and `sample_euler`
    (tests/test_sampling.py); diffusers drops the keys meant for the other classes silently.
    """
    if prediction_type not in ("epsilon", "v_prediction", "sample"):
        raise ValueError(f"unknown prediction_type {prediction_type!r}; choose from epsilon, v_prediction, sample")
    if spacing not in TIMESTEP_SPACINGS:
        raise ValueError(f"unknown timestep spacing {spacing!r}; choose from {', '.join(TIMESTEP_SPACINGS)}")
    return {
        "_class_name": "DDIMScheduler",
        "num_train_timesteps": config.num_train_timesteps,
        "beta_start": config.beta_start,
        "beta_end": config.beta_end,
        "beta_schedule": config.beta_schedule,
        "trained_betas": None,
        "prediction_type": prediction_type,
        "timestep_spacing": spacing,
        "steps_offset": 0,  # diffusers' StableDiffusionPipeline rewrites this to 1; only "leading" reads it
        "clip_sample": False,  # latents are not in [-1, 1]: clipping x0 made every sample one colour
        "thresholding": False,
        "set_alpha_to_one": True,  # the last DDIM step goes to ᾱ = 1, i.e. returns the predicted x0
        "rescale_betas_zero_snr": False,
        # DDPMScheduler: the posterior variance β̃ of Ho et al. (2020), on strided steps
        "variance_type": "fixed_small",
        # DPMSolverMultistepScheduler: DPM-Solver++(2M), first order at the first and the final step, which
        # goes to σ = 0; timesteps with λ < lambda_min_clipped are not visited (cosine schedule's end)
        "algorithm_type": "dpmsolver++",
        "solver_order": 2,
        "solver_type": "midpoint",
        "lower_order_final": True,
        "euler_at_final": False,
        "final_sigmas_type": "zero",
        "lambda_min_clipped": LAMBDA_MIN_CLIPPED,
        "use_karras_sigmas": False,
        # EulerDiscreteScheduler: σ at the integer timesteps, no Karras re-spacing
        "interpolation_type": "linear",
        "timestep_type": "discrete",
    }
