"""The parameterisation around the generator network: ε-, v- or x0-prediction in, predicted clean sample out.

Following k-diffusion's `Denoiser` and the preconditioning of Karras et al. (2022, EDM), the network stays
a plain network and every conversion between what it predicts and x0 lives here, once. Samplers see
only `denoise(x_t, t) -> x0_hat`; the trainer uses `add_noise` and `target`.
"""

from typing import Callable

import torch

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")

Network = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def unet_network(unet, *, reuse_text_kv: bool = False, autocast_dtype: torch.dtype | None = None) -> Network:
    """Adapt a diffusers `UNet2DConditionModel` (or `PixArtTransformer2DModel`) to `net(x_t, t, cond) -> output`.

    `reuse_text_kv`: this network keeps the cross-attention keys/values of the text between calls (the U-Net
    needs `t2i.pipeline.cross_attention.ReusedTextKV` processors); make one network per sampling run.
    `autocast_dtype`: run the U-Net under autocast to this dtype; the output is float32 either way.
    """
    kwargs = {"cross_attention_kwargs": {"kv_cache": {}}} if reuse_text_kv else {}
    # timestep by name: the U-Net takes it second, PixArt's transformer third (after encoder_hidden_states)

    def net(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if autocast_dtype is None:
            return unet(x_t, timestep=t, encoder_hidden_states=cond, **kwargs).sample
        with torch.autocast(x_t.device.type, dtype=autocast_dtype):
            return unet(x_t, timestep=t, encoder_hidden_states=cond, **kwargs).sample.float()

    return net


class Denoiser:
    """x0_hat = D(x_t, t, cond) from a network trained on the VP schedule `alphas_cumprod`.

    With x_t = α_t·x0 + σ_t·ε, α_t = √ᾱ_t, σ_t = √(1−ᾱ_t), the network predicts ε (Ho et al. 2020),
    v = α_t·ε − σ_t·x0 (Salimans & Ho 2022, "Progressive Distillation") or x0 itself ("sample").
    Coefficients are computed in float64 and cast to x's dtype. Holds no state beyond its constructor.
    """

    def __init__(self, net: Network, alphas_cumprod: torch.Tensor, prediction_type: str = "epsilon"):
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"unknown prediction_type {prediction_type!r}; choose from {', '.join(PREDICTION_TYPES)}")
        self.net = net
        self.alphas_cumprod = alphas_cumprod.detach().to("cpu", torch.float64)  # (N,)
        self.prediction_type = prediction_type

    def alpha_sigma(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(α_t, σ_t), each (B, 1, …, 1) broadcastable against `like`, in like's dtype and device."""
        t = torch.as_tensor(t).reshape(-1)
        if t.numel() == 1 and like.shape[0] != 1:
            t = t.expand(like.shape[0])
        abar = self.alphas_cumprod[t.cpu().long()]  # (B,) float64
        shape = (-1,) + (1,) * (like.dim() - 1)
        alpha, sigma = abar.sqrt(), (1 - abar).sqrt()
        return (alpha.reshape(shape).to(like.device, like.dtype), sigma.reshape(shape).to(like.device, like.dtype))

    def to_x0(self, out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The network output at (x_t, t) as a predicted clean sample. Never clipped: latents are not in [-1, 1]."""
        alpha, sigma = self.alpha_sigma(t, x_t)
        if self.prediction_type == "epsilon":
            return (x_t - sigma * out) / alpha
        if self.prediction_type == "v_prediction":
            return alpha * x_t - sigma * out
        return out

    def to_eps(self, out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The network output at (x_t, t) as predicted noise ε."""
        alpha, sigma = self.alpha_sigma(t, x_t)
        if self.prediction_type == "epsilon":
            return out
        if self.prediction_type == "v_prediction":
            return alpha * out + sigma * x_t
        return (x_t - alpha * out) / sigma

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The forward process x_t = α_t·x0 + σ_t·ε (Ho et al. 2020, eq. 4)."""
        alpha, sigma = self.alpha_sigma(t, x0)
        return alpha * x0 + sigma * eps

    def target(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network is trained to output at x_t = add_noise(x0, eps, t)."""
        if self.prediction_type == "epsilon":
            return eps
        if self.prediction_type == "v_prediction":
            alpha, sigma = self.alpha_sigma(t, x0)
            return alpha * eps - sigma * x0
        return x0

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=x_t.device).reshape(-1).expand(x_t.shape[0])  # (B,)
        return self.to_x0(self.net(x_t, t, cond), x_t, t)


class FlowDenoiser:
    """x0_hat = D(x_t, t, cond) from a network trained with rectified flow / flow matching.

    The path x_t = (1−t)·x0 + t·ε, t ∈ [0, 1], and the network predicts the velocity v = dx_t/dt = ε − x0
    (Liu et al. 2022, "Flow Straight and Fast"; Lipman et al. 2022; the convention of Esser et al. 2024, SD3,
    https://arxiv.org/abs/2403.03206). The network sees the timestep t·num_train_timesteps, as diffusers'
    `FlowMatchEulerDiscreteScheduler` feeds it (σ·1000 with shift 1), so a diffusers pipeline runs it as trained.
    Holds no state beyond its constructor.
    """

    def __init__(self, net: Network, num_train_timesteps: int = 1000):
        self.net = net
        self.num_train_timesteps = num_train_timesteps

    @staticmethod
    def _t(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=like.device).reshape(-1)
        if t.numel() == 1 and like.shape[0] != 1:
            t = t.expand(like.shape[0])
        return t.to(like.dtype).reshape((-1,) + (1,) * (like.dim() - 1))  # (B, 1, …, 1)

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The straight path x_t = (1−t)·x0 + t·ε."""
        t = self._t(t, x0)
        return (1 - t) * x0 + t * eps

    def target(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The velocity v = ε − x0 the network is trained to output (constant along each straight path)."""
        return eps - x0

    def to_x0(self, v: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x0_hat = x_t − t·v. Never clipped."""
        return x_t - self._t(t, x_t) * v

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=x_t.device, dtype=torch.float32).reshape(-1).expand(x_t.shape[0])  # (B,)
        return self.to_x0(self.net(x_t, t * self.num_train_timesteps, cond), x_t, t)


def guided(
    denoiser: Denoiser, cond: torch.Tensor, uncond: torch.Tensor | None, scale: float, *,
    interval: tuple[float, float] | None = None,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Classifier-free guidance (Ho & Salimans 2022): x0 = x0_u + scale·(x0_c − x0_u).

    `cond` is (B, L, D); `uncond` is (B, L, D) or (1, L, D), broadcast to B (a negative prompt replaces the
    empty prompt here). Both halves run as ONE batched forward over [uncond; cond]; scale 1 runs only cond.
    `interval` (lo, hi): guide only the steps whose timestep t has lo ≤ t ≤ hi, and run the others on `cond` alone
    (guidance in a limited interval, Kynkäänniemi et al. 2024: guidance at the noisiest steps costs diversity).
    """
    if scale == 1:
        return lambda x_t, t: denoiser(x_t, t, cond)
    if uncond is None:
        raise ValueError(f"guidance scale {scale} needs unconditional embeddings")
    if uncond.shape[1:] != cond.shape[1:]:
        raise ValueError(f"unconditional embeddings have shape {tuple(uncond.shape)}, conditional {tuple(cond.shape)}")
    uncond = uncond.expand(cond.shape[0], -1, -1) if uncond.shape[0] == 1 else uncond  # (B, L, D)
    both = torch.cat([uncond, cond])  # (2B, L, D)

    def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x_t.shape[0] != cond.shape[0]:
            raise ValueError(f"{x_t.shape[0]} samples, but conditional embeddings for {cond.shape[0]}")
        t = torch.as_tensor(t, device=x_t.device).reshape(-1).expand(x_t.shape[0])  # (B,)
        inside = None if interval is None else (t >= interval[0]) & (t <= interval[1])  # (B,)
        if inside is not None and not inside.any():  # a step outside the interval: the conditional pass alone
            return denoiser(x_t, t, cond)
        x0_u, x0_c = denoiser(torch.cat([x_t, x_t]), torch.cat([t, t]), both).chunk(2)  # (B, C, H, W) each
        # Guiding x0 is guiding the raw output: at fixed (x_t, t), x0 = a·x_t + b·out is affine in the output,
        # and the weights (1 − scale) + scale sum to 1, so the a·x_t term passes through unchanged. Hence the
        # same result for ε, v or x0 networks (tested), and diffusers' pipeline (which guides ε or v) agrees.
        # The same holds for a FlowDenoiser (x0 = x_t − t·v): guiding x0 is guiding the velocity.
        x0 = x0_u + scale * (x0_c - x0_u)
        return x0 if inside is None else torch.where(inside.reshape(-1, *[1] * (x0.dim() - 1)), x0, x0_c)

    return denoise
