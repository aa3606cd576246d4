"""The tokens variant's generator: a GPT-2 (transformers `GPT2LMHeadModel`, small config) that writes the VQ
token grid in raster order, one token at a time, cross-attending to the text encoder's token embeddings.

Why cross-attention rather than text as a prefix (DALL-E's single stream of text then image tokens): the
text arrives as a frozen encoder's embeddings, exactly as the latent variant's U-Net receives them, so both
variants read the same cached embeddings and the comparison isolates the generator; the image sequence stays
64 positions instead of 64 + L; and the text's keys and values are computed once per image and held in the
cross-attention cache, so each new token costs one step over the image tokens alone. GPT-2's
cross-attention reads inputs of its own width, so a linear map takes the text width (384 for MiniLM) to it.

Sequence layout: input [BOS, t₀, …, t₆₂] → targets [t₀, …, t₆₃]; BOS is the extra vocabulary entry
`codebook_size`, never a target and never sampled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

TEXT_PROJECTION_FILE = "text_projection.safetensors"


@dataclass
class TokenGeneratorConfig:
    width: int = 128  # transformer width (GPT-2's n_embd)
    layers: int = 4  # transformer blocks, each with causal self-attention, cross-attention to the text and an MLP
    heads: int = 4  # attention heads; must divide width
    dropout: float = 0.0  # dropout on embeddings, attention and residuals (GPT-2's *_pdrop)
    caption_dropout: float = 0.1  # probability of training on the empty prompt (classifier-free guidance)


TOKEN_GENERATOR_PRESETS = {
    "tiny": lambda: TokenGeneratorConfig(width=64, layers=2, heads=2),
    "small": lambda: TokenGeneratorConfig(),
    "base": lambda: TokenGeneratorConfig(width=256, layers=8, heads=8),
}


class TokenGenerator(nn.Module):
    """GPT-2 over VQ tokens with cross-attention to projected text embeddings."""

    def __init__(self, gpt, text_projection: nn.Linear):
        super().__init__()
        self.gpt = gpt
        self.text_projection = text_projection

    @property
    def codebook_size(self) -> int:
        return self.gpt.config.vocab_size - 1  # the last entry is BOS

    @property
    def bos(self) -> int:
        return self.codebook_size

    @property
    def num_tokens(self) -> int:
        return self.gpt.config.n_positions

    @property
    def text_width(self) -> int:
        return self.text_projection.in_features

    def forward(self, input_ids: torch.Tensor, text: torch.Tensor, cache=None) -> torch.Tensor:
        """Logits (B, T, V) for token inputs (B, T) given text embeddings (B, L, D_text).

        With `cache` (a transformers EncoderDecoderCache, filled in place) only the new tokens are passed; the
        text's keys and values are computed on the first call and reused after it.
        """
        text = self.text_projection(text)  # (B, L, width)
        # The cache goes in positionally: transformers 4.x names that argument past_key_values, 5.x cache.
        return self.gpt(input_ids, cache, encoder_hidden_states=text, use_cache=cache is not None).logits

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> TokenGenerator:
        from transformers import GPT2LMHeadModel

        folder = Path(folder)
        if not (folder / TEXT_PROJECTION_FILE).exists():
            raise FileNotFoundError(f"{folder} is not a token generator folder (no {TEXT_PROJECTION_FILE})")
        gpt = GPT2LMHeadModel.from_pretrained(folder, use_safetensors=True)
        weights = load_file(folder / TEXT_PROJECTION_FILE)
        projection = nn.Linear(weights["weight"].shape[1], weights["weight"].shape[0])
        projection.load_state_dict(weights)
        return cls(gpt, projection).eval()

    def save_pretrained(self, folder: str | Path) -> None:
        """config.json + model.safetensors (a plain GPT2LMHeadModel folder) + the text projection."""
        folder = Path(folder)
        self.gpt.save_pretrained(folder, safe_serialization=True)
        save_file({k: v.contiguous() for k, v in self.text_projection.state_dict().items()},
                  folder / TEXT_PROJECTION_FILE)


def build_token_generator(cfg: TokenGeneratorConfig, *, codebook_size: int, num_tokens: int,
                          text_width: int) -> TokenGenerator:
    """A randomly initialised generator (from the global RNG: callers fork and seed it)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    if cfg.width % cfg.heads:
        raise ValueError(f"{cfg.heads} heads do not divide width {cfg.width}")
    config = GPT2Config(
        vocab_size=codebook_size + 1,  # the codes and BOS
        n_positions=num_tokens,
        n_embd=cfg.width,
        n_layer=cfg.layers,
        n_head=cfg.heads,
        resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout,
        attn_pdrop=cfg.dropout,
        add_cross_attention=True,
        bos_token_id=codebook_size,
        eos_token_id=codebook_size,  # no end token: the grid has a fixed length
        pad_token_id=None,
    )
    return TokenGenerator(GPT2LMHeadModel(config), nn.Linear(text_width, cfg.width))
