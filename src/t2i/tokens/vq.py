"""The tokens variant's decoder: a VQ autoencoder (diffusers `VQModel`) that turns an image into a grid of
codebook indices and back (van den Oord et al. 2017, "Neural Discrete Representation Learning").

32×32 images with three levels (f = 4) give an 8×8 grid: 64 tokens, each one of `codebook_size` codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import VQModel


@dataclass
class VQConfig:
    image_size: int = 32  # training resolution in pixels (square)
    block_out_channels: tuple[int, ...] = (16, 32, 32)  # one entry per level; f = 2 ** (levels - 1)
    latent_channels: int = 16  # channels the encoder outputs and the decoder reads (before/after the codebook)
    code_dim: int = 8  # width of a codebook vector (diffusers' vq_embed_dim); low widths keep more codes in use
    # (Yu et al. 2022, "Vector-quantized image modeling with improved VQGAN", Sec. 3.2)
    codebook_size: int = 512  # number of codes: the token generator's vocabulary
    layers_per_block: int = 1  # ResNet blocks per level
    norm_num_groups: int = 8  # GroupNorm groups; must divide every entry of block_out_channels

    @property
    def downsampling_factor(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    @property
    def grid_size(self) -> int:
        return self.image_size // self.downsampling_factor


# Size presets: plain functions of the image size (as the KL autoencoder's).
VQ_PRESETS = {
    "tiny": lambda size: VQConfig(image_size=size, block_out_channels=(16, 32), codebook_size=64),
    "small": lambda size: VQConfig(image_size=size),
    "base": lambda size: VQConfig(image_size=size, block_out_channels=(64, 128, 128), layers_per_block=2,
                                  norm_num_groups=32, codebook_size=1024),
}


def build_vq(cfg: VQConfig) -> VQModel:
    levels = len(cfg.block_out_channels)
    bad = [c for c in cfg.block_out_channels if c % cfg.norm_num_groups]
    if bad:
        raise ValueError(f"norm_num_groups {cfg.norm_num_groups} does not divide channels {bad}")
    if cfg.image_size % cfg.downsampling_factor:
        raise ValueError(f"image size {cfg.image_size} is not divisible by the VQ factor {cfg.downsampling_factor}")
    if cfg.codebook_size < 2:
        raise ValueError(f"the codebook needs at least 2 codes, got {cfg.codebook_size}")
    return VQModel(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        latent_channels=cfg.latent_channels,
        sample_size=cfg.image_size,
        num_vq_embeddings=cfg.codebook_size,
        norm_num_groups=cfg.norm_num_groups,
        vq_embed_dim=cfg.code_dim,
        mid_block_add_attention=False,  # as the KL autoencoder: costly, little gain at f = 4
        scaling_factor=1.0,  # unused: tokens are indices, not scaled latents
    )


def vq_grid_size(vq: VQModel) -> int:
    """Tokens per side of the grid an image of the VQ's training size becomes."""
    return vq.config.sample_size // 2 ** (len(vq.config.block_out_channels) - 1)


def nearest_codes(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest code (Euclidean) for each vector of z (..., d); codebook (K, d)."""
    flat = z.reshape(-1, z.shape[-1])  # (M, d)
    return torch.cdist(flat, codebook).argmin(1).reshape(z.shape[:-1])


@torch.no_grad()
def encode_indices(vq: VQModel, images: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
    """Images (N, 3, H, W) in [-1, 1] to token grids (N, h, w) of codebook indices."""
    grids = []
    for i in range(0, len(images), batch_size):
        z = vq.encode(images[i : i + batch_size]).latents.permute(0, 2, 3, 1)  # (B, h, w, d)
        grids.append(nearest_codes(z, vq.quantize.embedding.weight))
    return torch.cat(grids)


@torch.no_grad()
def decode_indices(vq: VQModel, grids: torch.Tensor) -> torch.Tensor:
    """Token grids (B, h, w) to images (B, 3, H, W) in [-1, 1] (unclamped)."""
    codes = vq.quantize.embedding(grids).permute(0, 3, 1, 2)  # (B, d, h, w)
    return vq.decode(codes, force_not_quantize=True).sample


def codebook_usage(grids: torch.Tensor, codebook_size: int) -> dict[str, float]:
    """How much of the codebook the token grids use: the share of codes that occur at least once, and the
    perplexity exp(H) of the code frequencies (the number of equally used codes with the same entropy)."""
    counts = torch.bincount(grids.flatten(), minlength=codebook_size).double()
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return {"used_share": (counts > 0).double().mean().item(), "perplexity": entropy.exp().item(),
            "codes_used": int((counts > 0).sum())}
