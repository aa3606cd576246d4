"""Frozen parts run once: latents and text embeddings are cached to disk before the generator trains."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm


log = logging.getLogger("t2i.cache")


def _key(**parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


@torch.no_grad()
def encode_latents(vae, images: torch.Tensor, *, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Posterior mean and std (N, c, h, w) of each image; the generator samples from them every step."""
    means, stds = [], []
    for i in tqdm(range(0, len(images), batch_size), desc="cache latents", unit="batch", disable=None):
        posterior = vae.encode(images[i : i + batch_size]).latent_dist
        means.append(posterior.mean)
        stds.append(posterior.std)
    return {"latent_mean": torch.cat(means), "latent_std": torch.cat(stds)}


@torch.no_grad()
def encode_captions(text_encoder, captions: list[str], *, batch_size: int = 128) -> dict[str, torch.Tensor]:
    """Embeddings of each distinct caption (U, L, D), the index of each sample's caption (N,), and "" (1, L, D)."""
    distinct = sorted(set(captions))
    position = {c: i for i, c in enumerate(distinct)}
    table = []
    for i in tqdm(range(0, len(distinct), batch_size), desc="cache text", unit="batch", disable=None):
        table.append(text_encoder.encode(distinct[i : i + batch_size])[0].float())
    return {
        "text_table": torch.cat(table),
        "caption_index": torch.tensor([position[c] for c in captions]),
        "uncond": text_encoder.encode([""])[0].float(),
    }


def cached(cache_dir: str | Path | None, name: str, key_parts: dict, compute) -> dict[str, torch.Tensor]:
    """Load `name` from the cache when its key matches, else compute, save (safetensors) and return it."""
    if cache_dir is None:
        return compute()
    path = Path(cache_dir) / f"{name}-{_key(**key_parts)}.safetensors"
    if path.exists():
        log.info("using cached %s: %s", name, path)
        return load_file(path)
    tensors = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata={"key": json.dumps(key_parts)})
    tmp.replace(path)
    return tensors
