"""`t2i train tokens`: the GPT-2 token generator on cached VQ token grids and cached text embeddings.

The loss in one place: next-token cross-entropy over the raster-ordered grid, each position predicted from
the tokens before it and the text (Radford et al. 2019; Ramesh et al. 2021 without the text stream). Caption
dropout replaces the text with the empty prompt's embedding, for classifier-free guidance. The VQ indices and
the text embeddings are computed once and cached before training (the latent variant's cache, same keys).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from t2i.components import read_component_info, weights_digest, write_component_info
from t2i.data import dataset_fingerprint, load_tensors, scan_folder
from t2i.generator.cache import cached, encode_captions
from t2i.text import MINILM, SCRATCH, TextEncoderConfig, build_text_encoder, minilm_path
from t2i.tokens.model import TokenGeneratorConfig, build_token_generator
from t2i.tokens.vq import encode_indices, vq_grid_size
from t2i.training.trainer import TrainConfig, random_batches, train

log = logging.getLogger("t2i.tokens")


@dataclass
class TokensTrainConfig:
    model: TokenGeneratorConfig = field(default_factory=TokenGeneratorConfig)
    text: TextEncoderConfig = field(default_factory=lambda: TextEncoderConfig(max_length=16))
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(steps=1200, batch_size=64, lr=1e-3, warmup_steps=100, ema_decay=0.999)
    )


def token_loss(caption_dropout: float, bos: int, text_table: torch.Tensor, uncond: torch.Tensor):
    """Next-token cross-entropy with caption dropout, as `loss_fn(model, batch, generator)` for the trainer."""

    def loss_fn(model, batch, generator):
        tokens = batch["tokens"]  # (B, T), raster order
        b = len(tokens)
        drop = torch.rand(b, generator=generator) < caption_dropout
        text = text_table[batch["caption_index"]]  # (B, L, D)
        text = torch.where(drop[:, None, None], uncond.expand_as(text), text)
        inputs = torch.cat([torch.full((b, 1), bos, dtype=torch.long), tokens[:, :-1]], dim=1)  # (B, T)
        logits = model(inputs, text)  # (B, T, K + 1)
        return F.cross_entropy(logits.flatten(0, 1).float(), tokens.flatten())

    return loss_fn


def train_tokens(data_dir: str | Path, vq_dir: str | Path, out_dir: str | Path, cfg: TokensTrainConfig, *,
                 cache_dir: str | Path | None = None, command: str | None = None) -> dict:
    """Cache VQ token grids and text embeddings, train the token generator, save the component folder."""
    from diffusers import VQModel

    if cfg.text.source == SCRATCH:
        raise ValueError("the tokens variant reads cached embeddings of a frozen text encoder; "
                         "'scratch' is not supported (use minilm or a local transformers folder)")
    if not 0 <= cfg.model.caption_dropout <= 1:
        raise ValueError(f"caption dropout must be in [0, 1], got {cfg.model.caption_dropout}")
    vq_info = read_component_info(vq_dir, "vq")
    vq = VQModel.from_pretrained(vq_dir).eval().requires_grad_(False)
    image_size, grid = int(vq_info["image_size"]), vq_grid_size(vq)
    codebook_size = int(vq.config.num_vq_embeddings)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(cache_dir) if cache_dir else out_dir / "cache"

    records, report = scan_folder(data_dir)
    captions = [r.caption for r in records]
    fingerprint = dataset_fingerprint(data_dir)
    vq_digest = weights_digest(vq_dir)
    grids = cached(cache_dir, "tokens", {"data": fingerprint, "vq": vq_digest, "size": image_size},
                   lambda: {"tokens": encode_indices(vq, load_tensors(records, image_size)).flatten(1)})  # (N, h·w)
    del vq

    text_encoder = build_text_encoder(cfg.text).requires_grad_(False)
    text_folder = minilm_path() if cfg.text.source == MINILM else cfg.text.source
    text = cached(cache_dir, "text", {"data": fingerprint, "encoder": weights_digest(text_folder),
                                      "max_length": text_encoder.max_length},
                  lambda: encode_captions(text_encoder, captions))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)  # transformers initialises from the global RNG; keep it contained
        model = build_token_generator(cfg.model, codebook_size=codebook_size, num_tokens=grid * grid,
                                      text_width=text_encoder.hidden_size)
    loss_fn = token_loss(cfg.model.caption_dropout, model.bos, text["text_table"], text["uncond"])
    batches = random_batches({"tokens": grids["tokens"].long(), "caption_index": text["caption_index"]},
                             cfg.train.batch_size, seed=cfg.train.seed)
    result = train(model, loss_fn, batches, cfg.train, log_dir=out_dir, desc="tokens")

    final = result.ema if result.ema is not None else model
    final.save_pretrained(out_dir)
    info = {
        "component": "generator",
        "kind": "tokens",
        "image_size": image_size,
        "grid_size": grid,
        "codebook_size": codebook_size,
        "text_encoder": {
            "source": cfg.text.source,
            "folder": str(text_folder),
            "max_length": text_encoder.max_length,
            "hidden_size": text_encoder.hidden_size,
            "weights_digest": weights_digest(text_folder),
        },
        "vq": {
            "folder": str(vq_dir),
            "weights_digest": vq_digest,
            "codebook_size": codebook_size,
            "grid_size": grid,
        },
        "data": str(data_dir),
        "data_fingerprint": fingerprint,
        "data_report": report.summary(),
        "config": asdict(cfg),
        "command": command,
        "metrics": {"final_loss": result.final_loss, "train_seconds": result.seconds},
        "losses": result.losses,
    }
    write_component_info(out_dir, info)
    return info
