"""The latent generator's transformer backbone: diffusers' `PixArtTransformer2DModel` (PixArt-α, Chen et al. 2023,
https://arxiv.org/abs/2310.00426), a DiT over latent patches. The latent is cut into patch_size × patch_size
patches, one token each, with fixed sin-cos positions; every block has self-attention over the patches,
cross-attention to the text and an MLP, modulated by the timestep through adaLN-single (one shared projection of
the timestep embedding plus a learned table per block). The text embeddings (the encoder's width) are projected to
the transformer's width by `caption_projection` (caption_channels), so any text encoder fits.

Configured for t2i's samplers: the output is the prediction alone (out_channels = in_channels; PixArt's default
learns the variance too, 2 × in_channels), and no resolution / aspect-ratio conditions (use_additional_conditions
False: one size per model, as for the U-Net).

Deferred patch masking (MicroDiT: Sehwag et al. 2024, "Stretching Each Dollar: Diffusion Training from Scratch on
a Micro-Budget", https://arxiv.org/abs/2407.15811) makes a training step cheaper: the first blocks (the
"patch-mixer") see every patch, then a random share of the patches is dropped and the remaining blocks see the
kept ones only; the loss covers the kept patches. Here the mixer is the transformer's own first blocks, so the
model is the same PixArt transformer with or without masking, and sampling runs every patch through every block.
`patch_masking` does it with hooks around diffusers' forward (gather before the first masked block, scatter back
before the output layer).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from diffusers import PixArtTransformer2DModel

from t2i.diffusion.unet import GeneratorConfig, check_objective
from t2i.sampling import PREDICTION_TYPES
from t2i.training.batches import sample_rand

TRANSFORMER_CLASS = "PixArtTransformer2DModel"  # the _class_name in its config.json, how a folder says which it is


def transformer_config(**fields) -> GeneratorConfig:
    return GeneratorConfig(backbone="transformer", **fields)


TRANSFORMER_PRESETS = {
    "tiny": lambda: transformer_config(transformer_layers=2, transformer_heads=2, transformer_head_dim=16),
    # Sized so that a training step costs about what the `small` U-Net's does at batch 64 on 8×8×4 latents
    # (docs/training.md, "The transformer backbone", has the measurement).
    "small": lambda: transformer_config(),
}


def build_transformer(cfg: GeneratorConfig, *, sample_size: int, latent_channels: int, cross_attention_dim: int
                      ) -> PixArtTransformer2DModel:
    """A PixArt-α transformer over sample_size × sample_size latents, cross-attending to text of width
    `cross_attention_dim` (the text encoder's; projected to the transformer's width inside the model)."""
    if cfg.backbone != "transformer":
        raise ValueError(f"build_transformer builds the transformer backbone, not {cfg.backbone!r}")
    if cfg.prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"unknown prediction type {cfg.prediction_type!r}; choose from {', '.join(PREDICTION_TYPES)}")
    check_objective(cfg)
    for name in ("patch_size", "transformer_layers", "transformer_heads", "transformer_head_dim"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be at least 1, not {getattr(cfg, name)}")
    if cfg.pooled_text_heads:
        raise ValueError(f"pooled_text_heads {cfg.pooled_text_heads} is a U-Net option; the transformer conditions on "
                         "the text through cross-attention alone (set it to 0)")
    if sample_size % cfg.patch_size:
        raise ValueError(f"latent size {sample_size} is not divisible by the transformer's patch size {cfg.patch_size}")
    return PixArtTransformer2DModel(
        sample_size=sample_size,
        patch_size=cfg.patch_size,
        in_channels=latent_channels,
        out_channels=latent_channels,  # the prediction alone, not PixArt's learned variance beside it
        num_layers=cfg.transformer_layers,
        num_attention_heads=cfg.transformer_heads,
        attention_head_dim=cfg.transformer_head_dim,
        cross_attention_dim=cfg.transformer_heads * cfg.transformer_head_dim,  # the text after caption_projection
        caption_channels=cross_attention_dim,
        use_additional_conditions=False,  # diffusers turns them on for sample_size 128 unless told
        interpolation_scale=1,  # positions on the latent grid itself (PixArt scales them for sizes above 64)
    )


def is_transformer(generator) -> bool:
    """Whether a generator (a model, or its config.json read as a dict) is the transformer."""
    if isinstance(generator, dict):
        return generator.get("_class_name") == TRANSFORMER_CLASS
    return isinstance(generator, PixArtTransformer2DModel)


def network_factor(generator) -> int:
    """What a latent side must be a multiple of for this generator (a model, or its config.json as a dict): the
    transformer's patch, the U-Net's 2^(levels − 1)."""
    config = generator if isinstance(generator, dict) else generator.config
    if is_transformer(generator):
        return int(config["patch_size"])
    return 2 ** (len(config["block_out_channels"]) - 1)


def kept_patches(network: PixArtTransformer2DModel, batch: int, ratio: float, generator: torch.Generator,
                 *, device=None) -> torch.Tensor:
    """(B, K) indices, ascending, of the patches each sample keeps: K = round(N·(1 − ratio)) of the N patches
    (at least 1), drawn uniformly per sample (`sample_rand`: a multi-process run draws what one process would)."""
    side = int(network.config.sample_size) // int(network.config.patch_size)
    n = side * side
    k = max(1, round(n * (1 - ratio)))
    scores = sample_rand((batch, n), generator, device=device)  # (B, N)
    return scores.argsort(dim=1)[:, :k].sort(dim=1).values


def patch_loss_mask(network: PixArtTransformer2DModel, keep: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) latent-pixel mask of the kept patches: 1 where the loss counts, 0 where the patch was dropped."""
    p = int(network.config.patch_size)
    side = int(network.config.sample_size) // p
    mask = torch.zeros(keep.shape[0], side * side, device=keep.device)
    mask.scatter_(1, keep, 1.0)
    return mask.view(-1, 1, side, side).repeat_interleave(p, dim=2).repeat_interleave(p, dim=3)


@contextmanager
def patch_masking(network: PixArtTransformer2DModel, keep: torch.Tensor, mixer_layers: int):
    """Within the block, a forward of `network` runs blocks mixer_layers.. on the tokens `keep` (B, K) names only;
    the output layer sees them back on the full grid, zeros in the dropped places (whose predictions the loss
    must leave out: `patch_loss_mask`)."""
    blocks = network.transformer_blocks
    if not 0 <= mixer_layers < len(blocks):
        raise ValueError(f"mixer_layers {mixer_layers} must be in [0, {len(blocks)})")
    seen = {}

    def gather(_module, args, kwargs):  # hidden_states (B, N, D) → (B, K, D)
        tokens = args[0] if args else kwargs.pop("hidden_states")
        seen["n"] = tokens.shape[1]
        kept = tokens.gather(1, keep[..., None].expand(-1, -1, tokens.shape[-1]))
        return (kept, *args[1:]), kwargs

    def scatter(_module, args):  # (B, K, D) → (B, N, D), zeros where dropped
        kept = args[0]
        full = kept.new_zeros(kept.shape[0], seen["n"], kept.shape[-1])
        return (full.scatter(1, keep[..., None].expand(-1, -1, kept.shape[-1]), kept), *args[1:])

    handles = [blocks[mixer_layers].register_forward_pre_hook(gather, with_kwargs=True),
               network.norm_out.register_forward_pre_hook(scatter)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
