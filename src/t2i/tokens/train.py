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

from t2i.components import read_component_info, weights_digest
from t2i.data.sources import ImageRows, open_source
from t2i.training.cache import SHARD_ROWS, sharded_cache, text_rows
from t2i.text import SCRATCH, TextEncoderConfig, build_text_encoder, source_folder
from t2i.text.packaged import packaged_info
from t2i.tokens.model import TokenGeneratorConfig, build_token_generator
from t2i.tokens.vq import encode_indices, vq_grid_size
from t2i.training.batches import sample_rand
from t2i.training.finish import finish_training
from t2i.training.trainer import TrainConfig, process_state, random_batches, resume_point, train

log = logging.getLogger("t2i.tokens")


@dataclass
class TokensTrainConfig:
    model: TokenGeneratorConfig = field(default_factory=TokenGeneratorConfig)
    text: TextEncoderConfig = field(default_factory=lambda: TextEncoderConfig(max_length=16))
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(steps=1200, batch_size=64, lr=1e-3, warmup_steps=100, ema_decay=0.999)
    )
    cache_shard_rows: int = SHARD_ROWS  # samples (or distinct captions) per cache shard file: the unit of work
    # split across processes and of what a resumed cache computation reuses


def token_loss(caption_dropout: float, bos: int, text_table, uncond: torch.Tensor):
    """Next-token cross-entropy with caption dropout, as `loss_fn(model, batch, generator)` for the trainer.
    `text_table` holds a row per distinct caption (a tensor or memory-mapped cache rows)."""

    def loss_fn(model, batch, generator):
        tokens = batch["tokens"].long()  # (B, T), raster order
        b, device = tokens.shape[0], tokens.device
        drop = sample_rand((b,), generator, device=device) < caption_dropout
        text = text_table[batch["caption_index"].cpu()].to(device)  # (B, L, D)
        text = torch.where(drop[:, None, None], uncond.to(device).expand_as(text), text)
        inputs = torch.cat([torch.full((b, 1), bos, dtype=torch.long, device=device), tokens[:, :-1]], dim=1)  # (B, T)
        logits = model(inputs, text)  # (B, T, K + 1)
        return F.cross_entropy(logits.flatten(0, 1).float(), tokens.flatten())

    return loss_fn


@torch.no_grad()
def token_rows(vq, images, *, batch_size: int = 256):
    """compute_rows for `sharded_cache`: the VQ token grids of images[start:end], raster order (rows, h·w)."""

    def compute(start: int, end: int) -> dict[str, torch.Tensor]:
        grids = [encode_indices(vq, images[torch.arange(i, min(i + batch_size, end))].to(vq.device)).flatten(1).cpu()
                 for i in range(start, end, batch_size)]
        return {"tokens": torch.cat(grids).to(torch.int16 if vq.config.num_vq_embeddings <= 2**15 else torch.int64)}

    return compute


def train_tokens(data_dir: str | Path, vq_dir: str | Path, out_dir: str | Path, cfg: TokensTrainConfig, *,
                 cache_dir: str | Path | None = None, command: str | None = None,
                 resume: bool | str | Path = False, reset_data_position: bool = False) -> dict:
    """Cache VQ token grids and text embeddings, train the token generator, save the component folder.

    `data_dir`: any source `open_source` reads. `resume`/`reset_data_position`: see `t2i.training.trainer.train`.
    The caches are computed by all processes in parallel; a run stopped by SIGTERM/SIGINT returns {"stopped":
    ...} with the checkpoint to resume from, and writes no component.
    """
    from diffusers import VQModel

    out_dir = Path(out_dir)
    resume_point(out_dir / "checkpoints" if cfg.train.checkpoint_every > 0 else None, resume)  # refuse early
    if cfg.text.source == SCRATCH:
        raise ValueError("the tokens variant reads cached embeddings of a frozen text encoder; "
                         "'scratch' is not supported (use minilm, mpnet or a local transformers folder)")
    if not 0 <= cfg.model.caption_dropout <= 1:
        raise ValueError(f"caption dropout must be in [0, 1], got {cfg.model.caption_dropout}")
    vq_info = read_component_info(vq_dir, "vq")
    vq = VQModel.from_pretrained(vq_dir, use_safetensors=True).eval().requires_grad_(False)
    image_size, grid = int(vq_info["image_size"]), vq_grid_size(vq)
    codebook_size = int(vq.config.num_vq_embeddings)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(cache_dir) if cache_dir else out_dir / "cache"

    processes = process_state()  # joins the process group under accelerate launch / torchrun (else one process)
    split = dict(rank=processes.process_index, world_size=processes.num_processes, barrier=processes.wait_for_everyone,
                 shard_rows=cfg.cache_shard_rows)
    vq.to(processes.device)  # the frozen encoders run where training will
    source = open_source(data_dir)
    captions = source.captions
    fingerprint = source.fingerprint()
    vq_digest = weights_digest(vq_dir)
    grids = sharded_cache(cache_dir, "tokens", {"data": fingerprint, "vq": vq_digest, "size": image_size},
                          len(source), token_rows(vq, ImageRows(source, image_size)), **split)
    del vq

    text_encoder = build_text_encoder(cfg.text).requires_grad_(False).to(processes.device)
    text_folder = source_folder(cfg.text.source)
    distinct = sorted(set(captions))
    position = {c: i for i, c in enumerate(distinct)}
    # The latent variant's text cache: same rows, same key, so the two generators can share one cache folder.
    text = sharded_cache(cache_dir, "text", {"data": fingerprint, "encoder": weights_digest(text_folder),
                                             "max_length": text_encoder.max_length},
                         len(distinct), text_rows(text_encoder, distinct), **split,
                         small=lambda: {"caption_index": torch.tensor([position[c] for c in captions]),
                                        "uncond": text_encoder.encode([""])[0].float().cpu()})

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)  # transformers initialises from the global RNG; keep it contained
        model = build_token_generator(cfg.model, codebook_size=codebook_size, num_tokens=grid * grid,
                                      text_width=text_encoder.hidden_size)
    loss_fn = token_loss(cfg.model.caption_dropout, model.bos, text["text_table"], text["uncond"])
    batches = random_batches({"tokens": grids["tokens"], "caption_index": text["caption_index"]},
                             cfg.train.micro_batch_size, seed=cfg.train.seed, names=source.names)
    result = train(model, loss_fn, batches, cfg.train, log_dir=out_dir, desc="tokens", resume=resume,
                   reset_data_position=reset_data_position, data_fingerprint=fingerprint)

    def save() -> dict:
        final = result.ema if result.ema is not None else model
        final.cpu().save_pretrained(out_dir)
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
                **packaged_info(cfg.text.source),  # "mpnet": its packages' versions and full digests
            },
            "vq": {
                "folder": str(vq_dir),
                "weights_digest": vq_digest,
                "codebook_size": codebook_size,
                "grid_size": grid,
            },
            "data": str(data_dir),
            "data_fingerprint": fingerprint,
            "data_report": source.report.summary(),
            "config": asdict(cfg),
            "command": command,
            "metrics": result.metrics(),
            "losses": result.losses,
        }
        return info

    return finish_training(result, "generator", out_dir, save)
