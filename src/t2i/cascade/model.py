"""The cascade variant's networks (Imagen's shape): a base U-Net that draws a small image from text, and
super-resolution U-Nets that each enlarge an image, conditioned on it by channel concatenation, on the
level of noise it was augmented with and, optionally, on the prompt (as Imagen's super-resolution U-Nets are).

The base is the latent generator's network (`GeneratorConfig`, `build_unet`) with 3 pixel channels instead of
latent channels, on the pixel schedule below (its presets are in `train.py`). An upsampler is a diffusers
`UNet2DModel` without text, or, text-conditioned, a `UNet2DConditionModel` with the same plain blocks whose
timestep embedding also receives an attention-pooled summary of the prompt (no cross-attention).
Nothing here imports training code: loading a pipeline needs this file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from t2i.sampling import PREDICTION_TYPES, NoiseScheduleConfig


def pixel_schedule() -> NoiseScheduleConfig:
    """The cosine schedule (Nichol & Dhariwal 2021, https://arxiv.org/abs/2102.09672), made for 32–64 px pixel
    diffusion. Stable Diffusion's scaled_linear schedule is tuned for latents and ends at ᾱ_T ≈ 0.005, where a
    pixel image's mean colour still shows through the noise that sampling starts from."""
    return NoiseScheduleConfig(beta_schedule="squaredcos_cap_v2")


@dataclass
class UpsamplerConfig:
    low_size: int = 16  # side of the input image in pixels (what the base or the previous stage draws)
    image_size: int = 32  # side of the output image in pixels; a multiple of low_size
    block_out_channels: tuple[int, ...] = (32, 64)  # channels per U-Net level; each level after the first halves H, W
    layers_per_block: int = 1  # ResNet blocks per level
    norm_num_groups: int = 8  # GroupNorm groups; must divide every entry of block_out_channels
    mid_attention: bool = False  # self-attention in the middle block (Imagen's super-resolution U-Nets drop
    # self-attention at high resolution; it costs more than it gives at these sizes)
    prediction_type: str = "sample"  # network target: "sample" (x0), "v_prediction" or "epsilon". Shapes 8→16 px,
    # tiny preset, 300 steps of 32: x0 with plain MSE gave 28.5 dB held-out PSNR, v with Min-SNR-5 22.6 dB, bicubic
    # 24.7 dB (64 images, 20 steps, level 50): with x0 as the target the network learns to copy its input first
    schedule: NoiseScheduleConfig = field(default_factory=pixel_schedule)  # the DDPM noise schedule, also used
    # for noise-conditioning augmentation of the small image
    max_noise_level: int = 250  # noise-conditioning augmentation (Ho et al. 2022, "Cascaded Diffusion Models",
    # Sec. 3.2): in training the small image is noised to a level drawn uniformly from 0..max_noise_level
    # (timesteps of `schedule`; 250 leaves signal α ≈ 0.92, noise σ ≈ 0.39 on the cosine schedule)
    sampling_noise_level: int = 50  # the fixed augmentation level at sampling (σ ≈ 0.09); the pipeline folder
    # records it and a call may override it
    min_snr_gamma: float = 0.0  # Min-SNR-γ loss weighting (Hang et al. 2023); 0 = plain MSE, which for an x0
    # target is the per-pixel error that PSNR measures
    pooled_text_heads: int = 0  # > 0: text-conditioned: the prompt's embeddings, attention-pooled with this many
    # heads (diffusers' addition_embed_type="text", as in DeepFloyd IF), are added to the timestep embedding, so
    # the network is told what the image shows and in which style, beyond what the small image still carries;
    # must divide the text width. 0: no text (a UNet2DModel)
    caption_dropout: float = 0.1  # text-conditioned only: share of training samples given the empty prompt, so
    # the network also enlarges images without one

    @property
    def factor(self) -> int:
        return self.image_size // self.low_size

    @property
    def downsampling_factor(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    @classmethod
    def from_dict(cls, d: dict) -> UpsamplerConfig:
        """The inverse of `dataclasses.asdict` (as saved in a component's t2i_component.json)."""
        d = dict(d)
        d["schedule"] = NoiseScheduleConfig(**d["schedule"])
        d["block_out_channels"] = tuple(d["block_out_channels"])
        return cls(**d)


UPSAMPLER_PRESETS = {
    "tiny": lambda low, size: UpsamplerConfig(low_size=low, image_size=size, block_out_channels=(16, 32)),
    "small": lambda low, size: UpsamplerConfig(low_size=low, image_size=size),
    "base": lambda low, size: UpsamplerConfig(low_size=low, image_size=size, block_out_channels=(64, 128, 128),
                                              layers_per_block=2, norm_num_groups=32),
}


def check_upsampler_config(cfg: UpsamplerConfig) -> None:
    """Every reason `cfg` cannot be built, as a ValueError (before any data is read)."""
    if cfg.image_size <= cfg.low_size or cfg.image_size % cfg.low_size:
        raise ValueError(f"an upsampler's output size must be a multiple of its input size above it; "
                         f"got {cfg.low_size} → {cfg.image_size}")
    if cfg.image_size % cfg.downsampling_factor:
        raise ValueError(f"image size {cfg.image_size} is not divisible by the U-Net's factor {cfg.downsampling_factor}")
    if not 0 <= cfg.caption_dropout <= 1:
        raise ValueError(f"caption dropout must be in [0, 1], got {cfg.caption_dropout}")
    if cfg.pooled_text_heads < 0:
        raise ValueError(f"pooled_text_heads must be 0 (no text) or positive, got {cfg.pooled_text_heads}")
    bad = [c for c in cfg.block_out_channels if c % cfg.norm_num_groups]
    if bad:
        raise ValueError(f"norm_num_groups {cfg.norm_num_groups} does not divide channels {bad}")
    if cfg.prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"unknown prediction type {cfg.prediction_type!r}; choose from {', '.join(PREDICTION_TYPES)}")
    n = cfg.schedule.num_train_timesteps
    for name, level in (("max_noise_level", cfg.max_noise_level), ("sampling_noise_level", cfg.sampling_noise_level)):
        if not 0 <= level < n:
            raise ValueError(f"{name} must be a timestep in 0..{n - 1}, got {level}")


def build_upsampler(cfg: UpsamplerConfig, *, text_width: int | None = None):
    """A `UNet2DModel` over [x_t; upsampled small image] (6 channels in, 3 out) whose timestep embedding also
    receives the augmentation level through a second sinusoidal embedding (`class_embed_type="timestep"`).
    Text-conditioned (`cfg.pooled_text_heads`): a `UNet2DConditionModel` with the same blocks and embeddings
    plus the pooled prompt of width `text_width` (the text encoder's hidden size); its middle block is a single
    ResNet block (diffusers' plain middle block there), where the UNet2DModel's has two."""
    from diffusers import UNet2DConditionModel, UNet2DModel

    check_upsampler_config(cfg)
    levels = len(cfg.block_out_channels)
    shared = dict(sample_size=cfg.image_size, in_channels=6, out_channels=3,
                  down_block_types=("DownBlock2D",) * levels, up_block_types=("UpBlock2D",) * levels,
                  block_out_channels=tuple(cfg.block_out_channels), layers_per_block=cfg.layers_per_block,
                  norm_num_groups=cfg.norm_num_groups, class_embed_type="timestep")
    if cfg.pooled_text_heads:
        if text_width is None or text_width % cfg.pooled_text_heads:
            raise ValueError(f"pooled_text_heads {cfg.pooled_text_heads} must divide the text width {text_width}")
        return UNet2DConditionModel(**shared, mid_block_type="UNetMidBlock2D", cross_attention_dim=text_width,
                                    addition_embed_type="text", addition_embed_type_num_heads=cfg.pooled_text_heads)
    return UNet2DModel(**shared, add_attention=cfg.mid_attention)


def upsample(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Bicubic enlargement (B, 3, h, w) → (B, 3, h·factor, w·factor): the upsampler's conditioning, and the
    baseline it must beat."""
    return F.interpolate(images, scale_factor=factor, mode="bicubic", align_corners=False)


def is_text_conditioned(unet) -> bool:
    """Whether an upsampler network takes the prompt (a UNet2DConditionModel built by `build_upsampler`)."""
    return getattr(unet.config, "addition_embed_type", None) == "text"


def upsampler_network(unet, noise_level: torch.Tensor, *, text: torch.Tensor | None = None,
                      autocast_dtype: torch.dtype | None = None):
    """Adapt an upsampler to the `Denoiser`'s `net(x_t, t, cond)`: `cond` is the noise-augmented, enlarged small
    image (B, 3, H, W), concatenated to x_t; `noise_level` (B,) is its augmentation level; `text` (B, L, D): the
    prompt's embeddings, which a text-conditioned upsampler needs and any other refuses. `autocast_dtype`: run
    the U-Net under autocast to this dtype; the output is float32 either way."""
    if (text is not None) != is_text_conditioned(unet):
        raise ValueError("a text-conditioned upsampler needs the prompt's embeddings" if text is None else
                         "this upsampler was trained without text and takes no prompt")
    extra = {} if text is None else {"encoder_hidden_states": text}

    def net(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x_t, cond], dim=1)
        if autocast_dtype is None:
            return unet(x, t, class_labels=noise_level, **extra).sample  # (B, 3, H, W)
        with torch.autocast(x.device.type, dtype=autocast_dtype):
            return unet(x, t, class_labels=noise_level, **extra).sample.float()

    return net
