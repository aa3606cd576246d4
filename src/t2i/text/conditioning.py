"""Text conditioning for any text-conditioned diffusion generator (the latent U-Net, the cascade's base).

A frozen encoder runs once: each distinct caption's embeddings are cached to disk (sharded, computed by
every process in parallel), keyed by the data and the encoder's weights, and batches carry only an index
into that table. A from-scratch encoder is trained jointly with the U-Net instead, so batches carry token
ids. Caption dropout (classifier-free guidance needs it) swaps a sample's text for the empty prompt's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from t2i.components import weights_digest
from t2i.training.cache import sharded_cache, text_rows
from t2i.text import SCRATCH, TextEncoder, TextEncoderConfig, build_text_encoder, source_folder
from t2i.text.packaged import packaged_info
from t2i.training.batches import sample_rand


@dataclass
class TextConditioning:
    encoder: TextEncoder
    folder: Path | str  # where the encoder's weights are (a trained scratch encoder is saved, then this moves)
    scratch: bool  # trained jointly with the U-Net (batches carry token ids) rather than frozen and cached
    tensors: dict = field(default_factory=dict)  # per-sample columns to add to the batches
    text_table: object = None  # rows (U, L, D): embeddings of each distinct caption (frozen encoder), else None
    uncond: torch.Tensor | None = None  # (1, L, D) the empty prompt's embeddings (frozen encoder), else None


def prepare_text(cfg: TextEncoderConfig, captions: list[str], *, cache_dir: Path, fingerprint: str,
                 device: torch.device | str = "cpu", split: dict | None = None,
                 choices: list[list[str]] | None = None) -> TextConditioning:
    """Build the encoder on `device`; for a frozen one, compute (or load) the cached caption embeddings.
    `split`: rank, world_size, barrier and shard_rows for `sharded_cache` (default: one process).
    `choices`: every caption of each image (the source's `caption_choices`); when an image has several, batches
    carry (N, K) caption rows padded with -1, and each training step uses one of them (`pick_captions`). A
    from-scratch encoder trains on `captions` (one per image)."""
    encoder = build_text_encoder(cfg).to(device)
    folder = source_folder(cfg.source)
    if cfg.source == SCRATCH:
        tokens, empty = encoder.tokenize(captions), encoder.tokenize([""])
        tensors = {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"],
                   "uncond_ids": empty["input_ids"].expand(len(captions), -1),
                   "uncond_mask": empty["attention_mask"].expand(len(captions), -1)}
        return TextConditioning(encoder, folder, scratch=True, tensors=tensors)
    encoder.requires_grad_(False)
    several = choices is not None and any(len(options) > 1 for options in choices)
    distinct = sorted({c for options in choices for c in options} if several else set(captions))
    position = {c: i for i, c in enumerate(distinct)}
    if several:  # (N, K): every caption of each image, padded with -1
        width = max(len(options) for options in choices)
        caption_index = torch.tensor([[position[c] for c in options] + [-1] * (width - len(options))
                                      for options in choices])
    else:
        caption_index = torch.tensor([position[c] for c in captions])  # (N,)
    text = sharded_cache(cache_dir, "text", {"data": fingerprint, "encoder": weights_digest(folder),
                                             "max_length": encoder.max_length, "all_captions": several},
                         len(distinct), text_rows(encoder, distinct), **(split or {}),
                         small=lambda: {"caption_index": caption_index,
                                        "uncond": encoder.encode([""])[0].float().cpu()})
    return TextConditioning(encoder, folder, scratch=False, tensors={"caption_index": text["caption_index"]},
                            text_table=text["text_table"], uncond=text["uncond"])


def trainable(unet: nn.Module, text: TextConditioning) -> nn.Module:
    """What the trainer optimises: the U-Net, plus the encoder when it trains from scratch."""
    return nn.ModuleDict({"unet": unet, "text_encoder": text.encoder}) if text.scratch else unet


def pick_captions(index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One caption per image, uniformly among its own: `index` (B, K) holds each image's caption rows,
    padded with -1; returns (B,). Drawn per sample like all training randomness (`sample_rand`)."""
    count = (index >= 0).sum(1)  # (B,)
    if (count < 1).any():
        raise ValueError("an image has no caption")
    pick = (sample_rand((len(index),), generator) * count).long().clamp(max=count - 1)  # (B,)
    return index.gather(1, pick[:, None])[:, 0]


def caption_embeddings(model: nn.Module, batch: dict, drop: torch.Tensor, text_table, uncond: torch.Tensor | None,
                       generator: torch.Generator) -> tuple[nn.Module, torch.Tensor]:
    """(the U-Net, text embeddings (B, L, D) on drop's device) for a batch; samples where `drop` (B,) is set get
    the empty prompt. With `text_table` the text is cached; without, `model` holds a trainable encoder. An image
    with several captions (batch "caption_index" of shape (B, K)) gets one of them, drawn with `generator`."""
    device = drop.device
    if text_table is not None:
        index = batch["caption_index"].cpu()  # (B,), or (B, K) for K captions per image, -1 = none
        if index.ndim == 2:
            index = pick_captions(index, generator)  # (B,)
        emb = text_table[index].to(device)  # (B, L, D)
        return model, torch.where(drop[:, None, None], uncond.to(device).expand_as(emb), emb)
    ids = torch.where(drop[:, None], batch["uncond_ids"], batch["input_ids"])  # (B, L)
    mask = torch.where(drop[:, None], batch["uncond_mask"], batch["attention_mask"])
    return model["unet"], model["text_encoder"](ids, mask)


def save_trained(final: nn.Module, out_dir: Path, text: TextConditioning) -> nn.Module:
    """Save a jointly trained encoder into OUT/text_encoder (updating `text.folder`); return the U-Net."""
    if not text.scratch:
        return final
    final["text_encoder"].save_pretrained(out_dir / "text_encoder")
    text.folder = out_dir / "text_encoder"
    return final["unet"]


def text_encoder_info(cfg: TextEncoderConfig, text: TextConditioning) -> dict:
    """What a generator records about its text encoder (compose checks the weights and widths against it)."""
    return {
        "source": cfg.source,
        "folder": str(text.folder),
        "max_length": text.encoder.max_length,
        "hidden_size": text.encoder.hidden_size,
        "weights_digest": weights_digest(text.folder),
        **packaged_info(cfg.source),  # "mpnet": its packages' versions and full digests
    }
