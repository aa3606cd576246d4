"""Component 3, the decoder: a KL autoencoder (diffusers `AutoencoderKL`) trained on images alone."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import AutoencoderKL


@dataclass
class AutoencoderConfig:
    image_size: int = 32  # training resolution in pixels (square)
    block_out_channels: tuple[int, ...] = (16, 32, 32)  # one entry per level; f = 2 ** (levels - 1)
    latent_channels: int = 4  # channels of the latent (c)
    layers_per_block: int = 1  # ResNet blocks per level
    norm_num_groups: int = 8  # GroupNorm groups; must divide every entry of block_out_channels
    mid_block_attention: bool = False  # self-attention in the middle block (costly, little gain at f=4)

    @property
    def downsampling_factor(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)


# Size presets (DiT's `DiT_models` idea): plain functions, no string reflection.
AUTOENCODER_PRESETS = {
    "tiny": lambda size: AutoencoderConfig(image_size=size, block_out_channels=(16, 32), norm_num_groups=8),
    "small": lambda size: AutoencoderConfig(image_size=size),
    # The emoji model's (recipes/emoji.sh): twice small's width, ~2.9× its step cost, 3.7 MB of weights.
    "medium": lambda size: AutoencoderConfig(image_size=size, block_out_channels=(32, 64, 64)),
    "base": lambda size: AutoencoderConfig(image_size=size, block_out_channels=(64, 128, 128), layers_per_block=2,
                                           norm_num_groups=32, mid_block_attention=True),
}


def build_autoencoder(cfg: AutoencoderConfig) -> AutoencoderKL:
    levels = len(cfg.block_out_channels)
    bad = [c for c in cfg.block_out_channels if c % cfg.norm_num_groups]
    if bad:
        raise ValueError(f"norm_num_groups {cfg.norm_num_groups} does not divide channels {bad}")
    if cfg.image_size % cfg.downsampling_factor:
        raise ValueError(f"image size {cfg.image_size} is not divisible by the autoencoder factor {cfg.downsampling_factor}")
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.norm_num_groups,
        sample_size=cfg.image_size,
        mid_block_add_attention=cfg.mid_block_attention,
        scaling_factor=1.0,  # placeholder: replaced by the value measured on data after training
    )


def downsampling_factor(vae: AutoencoderKL) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


@torch.no_grad()
def measure_scaling_factor(vae: AutoencoderKL, images: torch.Tensor, *, batch_size: int = 256,
                           generator: torch.Generator | None = None) -> float:
    """1 / std of sampled latents over `images` (Rombach et al. 2022, Sec. G): unit-variance latents.

    Computed from the data the generator will see, never copied from another model.
    """
    latents = []
    for i in range(0, len(images), batch_size):
        posterior = vae.encode(images[i : i + batch_size]).latent_dist
        latents.append(posterior.sample(generator=generator))
    std = torch.cat(latents).float().std().item()
    if not std > 0:
        raise ValueError(f"latents have standard deviation {std}: the autoencoder collapsed")
    return 1.0 / std


@torch.no_grad()
def normalise_latent_channels(vae: AutoencoderKL, images: torch.Tensor, *, batch_size: int = 256,
                              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Give every latent channel zero mean and unit variance on `images`, folded into the weights.

    A diffusion schedule adds the same noise to every channel, so a channel with a tenth of another's
    spread loses its content (here: part of the colour) at far lower noise levels. Posterior samples
    z = σ·z' + μ per channel: the 1×1 `quant_conv` is rescaled to emit z' (mean and log-variance) and
    `post_quant_conv` absorbs σ and μ, so decode(encode(x)) is unchanged and the model stays a plain
    AutoencoderKL that diffusers loads. Returns the (μ, σ) that were folded in.
    """
    if vae.quant_conv is None or vae.post_quant_conv is None:
        raise ValueError("the autoencoder has no quant_conv/post_quant_conv to fold the normalisation into")
    samples = torch.cat([vae.encode(images[i : i + batch_size]).latent_dist.sample(generator=generator)
                         for i in range(0, len(images), batch_size)])  # (N, c, h, w)
    mu = samples.mean((0, 2, 3)).double()  # (c,)
    sigma = samples.std((0, 2, 3)).double()  # (c,)
    c = len(mu)
    qw, qb = vae.quant_conv.weight.double(), vae.quant_conv.bias.double()  # (2c, 2c, 1, 1), (2c,)
    qw[:c] /= sigma[:, None, None, None]  # mean rows
    qb[:c] = (qb[:c] - mu) / sigma
    qb[c:] -= 2 * sigma.log()  # log-variance rows: var' = var / σ²
    pw, pb = vae.post_quant_conv.weight.double(), vae.post_quant_conv.bias.double()  # (c, c, 1, 1), (c,)
    pb += (pw[:, :, 0, 0] * mu[None, :]).sum(1)
    pw *= sigma[None, :, None, None]
    for conv, w, b in ((vae.quant_conv, qw, qb), (vae.post_quant_conv, pw, pb)):
        conv.weight.copy_(w.to(conv.weight.dtype))
        conv.bias.copy_(b.to(conv.bias.dtype))
    return mu.float(), sigma.float()


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of images in [-1, 1] (computed on the [0, 1] scale)."""
    mse = ((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))
