"""The text-conditioned U-Net of the diffusion variants (the latent generator, the cascade's base): a diffusers
`UNet2DConditionModel` with cross-attention to the text. `GeneratorConfig` also describes the latent generator's
other backbone, a transformer over latent patches (`t2i.diffusion.transformer`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from diffusers import UNet2DConditionModel

from t2i.sampling import PREDICTION_TYPES, NoiseScheduleConfig

OBJECTIVES = ("diffusion", "flow")
BACKBONES = ("unet", "transformer")


@dataclass
class GeneratorConfig:
    block_out_channels: tuple[int, ...] = (32, 64)  # channels per U-Net level; each level after the first halves H, W
    attention_levels: tuple[bool, ...] = (False, True)  # which levels have self- and cross-attention (the
    # middle block always has); attention at the full latent resolution costs ~1.5× the step time here
    layers_per_block: int = 1  # ResNet (+ attention) blocks per level
    attention_heads: int = 2  # heads per attention layer (diffusers calls this argument attention_head_dim)
    norm_num_groups: int = 16  # GroupNorm groups; must divide every entry of block_out_channels
    prediction_type: str = "v_prediction"  # network target: "v_prediction" (Salimans & Ho 2022) or "epsilon"
    schedule: NoiseScheduleConfig = field(  # the DDPM noise schedule. Cosine rather than Stable Diffusion's
        # scaled_linear: its last step is pure noise (ᾱ ≈ 0 instead of 0.0047), so training never lets the network
        # read the colour from a leftover of the image that sampling's pure noise lacks (Lin et al. 2024); shapes
        # colour accuracy rose from 80–83 % to 87–89 % at equal steps (docs/demo-recipe.md)
        default_factory=lambda: NoiseScheduleConfig(beta_schedule="squaredcos_cap_v2"))
    pooled_text_heads: int = 0  # > 0: also add an attention-pooled summary of the prompt to the timestep
    # embedding (diffusers' addition_embed_type="text", from DeepFloyd IF), with this many heads, which must
    # divide the text width; 0 = cross-attention alone. diffusers' StableDiffusionPipeline runs either
    objective: str = "diffusion"  # "diffusion": the VP schedule below with prediction_type (and Min-SNR);
    # "flow": rectified flow with logit-normal timesteps (SD3): x_t = (1−t)·x0 + t·ε, the network predicts
    # v = ε − x0; prediction_type, schedule and min_snr_gamma then do not apply (min_snr_gamma must be 0)
    flow_logit_mean: float = 0.0  # flow only: t = sigmoid(n), n ~ N(flow_logit_mean, flow_logit_std²); SD3's
    flow_logit_std: float = 1.0  # best was lognorm(0, 1); a positive mean trains more at high noise (t near 1)
    caption_dropout: float = 0.1  # probability of training on the empty prompt (classifier-free guidance)
    min_snr_gamma: float = 5.0  # Min-SNR-γ loss weighting (Hang et al. 2023); 0 = plain MSE. Together with lr
    # 2e-3 (from 1e-3) it raised shapes colour accuracy from 69 % to 77 % at equal steps (1,100)
    backbone: str = "unet"  # "unet": the fields above, build_unet; "transformer" (latent generator only): a PixArt-α
    # transformer over latent patches (t2i.diffusion.transformer), sized by the fields below; the U-Net's are unused
    patch_size: int = 2  # transformer: side of the square of latent pixels one token covers
    transformer_layers: int = 5  # transformer blocks (self-attention, cross-attention to the text, MLP)
    transformer_heads: int = 4  # attention heads; the width is transformer_heads × transformer_head_dim
    transformer_head_dim: int = 32
    patch_mask_ratio: float = 0.0  # transformer, training only: share of the patches dropped after the first
    # patch_mixer_layers blocks (MicroDiT's deferred masking, Sehwag et al. 2024); the loss covers the kept ones.
    # 0 = off. Sampling always runs every patch through every block
    patch_mixer_layers: int = 1  # transformer: blocks that see every patch before the masking (the "patch-mixer")

    @property
    def downsampling_factor(self) -> int:
        """What the latent side must be a multiple of: the U-Net's 2^(levels − 1), the transformer's patch."""
        if self.backbone == "transformer":
            return self.patch_size
        return 2 ** (len(self.block_out_channels) - 1)


GENERATOR_PRESETS = {
    "tiny": lambda: GeneratorConfig(block_out_channels=(16, 32), norm_num_groups=8),
    "small": lambda: GeneratorConfig(),
    # The emoji model's (recipes/emoji.sh): twice small's width, ~2.9× its step cost, 17 MB of weights.
    "medium": lambda: GeneratorConfig(block_out_channels=(64, 128), norm_num_groups=32),
    "base": lambda: GeneratorConfig(block_out_channels=(64, 128, 128), attention_levels=(False, True, True),
                                    layers_per_block=2, norm_num_groups=32),
}


def check_objective(cfg: GeneratorConfig) -> None:
    """Refuse a training objective (or a backbone) this config cannot train with."""
    if cfg.backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {cfg.backbone!r}; choose from {', '.join(BACKBONES)}")
    if cfg.objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {cfg.objective!r}; choose from {', '.join(OBJECTIVES)}")
    if cfg.objective == "flow" and cfg.min_snr_gamma > 0:
        raise ValueError(f"min_snr_gamma {cfg.min_snr_gamma} weighs a VP diffusion loss; the flow objective needs 0")
    if not 0 <= cfg.patch_mask_ratio < 1:
        raise ValueError(f"patch_mask_ratio {cfg.patch_mask_ratio} must be in [0, 1)")
    if cfg.patch_mask_ratio > 0 and cfg.backbone != "transformer":
        raise ValueError("patch masking drops transformer tokens; the U-Net backbone has none (use --backbone "
                         "transformer, or a mask ratio of 0)")
    if cfg.patch_mask_ratio > 0 and not 0 <= cfg.patch_mixer_layers < cfg.transformer_layers:
        raise ValueError(f"patch_mixer_layers {cfg.patch_mixer_layers} must be in [0, {cfg.transformer_layers}) "
                         f"(the transformer's {cfg.transformer_layers} blocks): at least one block sees the kept "
                         "patches alone")


def build_unet(cfg: GeneratorConfig, *, sample_size: int, latent_channels: int, cross_attention_dim: int
               ) -> UNet2DConditionModel:
    """A U-Net with cross-attention to the text (the Stable Diffusion architecture, scaled down)."""
    if cfg.backbone != "unet":  # the cascade's base is a U-Net only; the latent generator picks its builder
        raise ValueError(f"build_unet builds the U-Net backbone, not {cfg.backbone!r} "
                         "(t2i.diffusion.transformer.build_transformer builds the latent generator's transformer)")
    if cfg.prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"unknown prediction type {cfg.prediction_type!r}; choose from {', '.join(PREDICTION_TYPES)}")
    check_objective(cfg)
    if sample_size % cfg.downsampling_factor:
        raise ValueError(
            f"latent size {sample_size} is not divisible by the U-Net's factor {cfg.downsampling_factor}"
        )
    bad = [c for c in cfg.block_out_channels if c % cfg.norm_num_groups]
    if bad:
        raise ValueError(f"norm_num_groups {cfg.norm_num_groups} does not divide channels {bad}")
    if len(cfg.attention_levels) != len(cfg.block_out_channels):
        raise ValueError(f"attention_levels has {len(cfg.attention_levels)} entries for "
                         f"{len(cfg.block_out_channels)} levels")
    if cfg.pooled_text_heads < 0 or (cfg.pooled_text_heads and cross_attention_dim % cfg.pooled_text_heads):
        raise ValueError(f"pooled_text_heads {cfg.pooled_text_heads} does not divide the text width {cross_attention_dim}")
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in cfg.attention_levels)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cfg.attention_levels))
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=latent_channels,
        out_channels=latent_channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=cfg.attention_heads,
        norm_num_groups=cfg.norm_num_groups,
        addition_embed_type="text" if cfg.pooled_text_heads else None,
        addition_embed_type_num_heads=cfg.pooled_text_heads or 64,
    )
