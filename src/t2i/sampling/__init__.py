"""Sampling: the VP noise schedule, the ε/v/x0 parameterisation, classifier-free guidance, the samplers and
dynamic thresholding; the flow-matching parameterisation and samplers (`flow.py`)."""

from t2i.sampling.denoiser import PREDICTION_TYPES, Denoiser, FlowDenoiser, guided, unet_network
from t2i.sampling.flow import (
    FLOW_SAMPLERS,
    FLOW_SCHEDULER,
    flow_scheduler_config,
    flow_sigmas,
    get_flow_sampler,
    sample_flow_euler,
    sample_flow_heun,
)
from t2i.sampling.samplers import (
    SAMPLERS,
    get_sampler,
    per_image_randn,
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
    sample_euler,
)
from t2i.sampling.schedule import (
    LAMBDA_MIN_CLIPPED,
    NoiseScheduleConfig,
    alphas_cumprod,
    diffusers_scheduler_config,
    max_timestep_above,
    spaced_timesteps,
)
from t2i.sampling.thresholding import dynamic_thresholding

__all__ = [
    "FLOW_SAMPLERS",
    "FLOW_SCHEDULER",
    "FlowDenoiser",
    "flow_scheduler_config",
    "flow_sigmas",
    "get_flow_sampler",
    "sample_flow_euler",
    "sample_flow_heun",
    "LAMBDA_MIN_CLIPPED",
    "PREDICTION_TYPES",
    "SAMPLERS",
    "Denoiser",
    "NoiseScheduleConfig",
    "alphas_cumprod",
    "diffusers_scheduler_config",
    "dynamic_thresholding",
    "get_sampler",
    "guided",
    "max_timestep_above",
    "per_image_randn",
    "sample_ddim",
    "sample_ddpm",
    "sample_dpmpp_2m",
    "sample_euler",
    "spaced_timesteps",
    "unet_network",
]
