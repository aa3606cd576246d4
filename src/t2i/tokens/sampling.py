"""Sampling a token grid from an autoregressive model: pure functions.

`sample_tokens` is ancestral sampling, token by token (Radford et al. 2019; DALL-E, Ramesh et al. 2021),
with temperature, top-k (Fan et al. 2018) and nucleus / top-p filtering (Holtzman et al. 2020). It sees the
model only through `next_logits(tokens_so_far) -> logits`, so the same loop runs with or without a key/value
cache (`transformer_logits` builds either) and with classifier-free guidance on the logits (Gafni et al.
2022, "Make-A-Scene"; Ho & Salimans 2022): one batched forward over [unconditional; conditional].

Each image draws its randomness from its own torch.Generator (Gumbel noise over the vocabulary, one draw per
token), so image i depends only on seed i, whatever its position in the batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

NextLogits = Callable[[torch.Tensor], torch.Tensor]  # tokens so far (B, t) -> logits of token t (B, V)


def check_sampling_settings(temperature: float, top_k: int | None, top_p: float) -> None:
    """Refuse settings that do not define a distribution."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top-k must be at least 1, got {top_k}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top-p must be in (0, 1], got {top_p}")


def filter_logits(logits: torch.Tensor, *, top_k: int | None = None, top_p: float = 1.0) -> torch.Tensor:
    """Set to -inf every logit (B, V) outside the k most likely tokens and outside the smallest set of most
    likely tokens whose probability reaches top_p (the most likely token always stays)."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)  # (B, V)
        probs = sorted_logits.softmax(-1)
        mass_before = probs.cumsum(-1) - probs  # probability of the tokens ranked above each one
        drop_sorted = mass_before >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def guided_logits(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance on logits, l_u + s·(l_c − l_u), written as l_c + (s − 1)·(l_c − l_u) so that
    s = 1 returns the conditional logits exactly. (On logits or log-probabilities alike: softmax ignores the
    per-row constant between them.)"""
    return cond + (scale - 1.0) * (cond - uncond)


def draw_tokens(logits: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """One token per row of logits (B, V) by the Gumbel-max trick; row i's noise comes from generators[i]."""
    if len(generators) != len(logits):
        raise ValueError(f"{len(generators)} generators for {len(logits)} rows")
    u = torch.stack([torch.rand(logits.shape[-1], generator=g) for g in generators])  # (B, V)
    gumbel = -torch.log(-torch.log(u.clamp_min(1e-20)))
    return (logits.float() + gumbel).argmax(-1)  # -inf logits are never chosen


def sample_tokens(next_logits: NextLogits, num_tokens: int, *, generators: list[torch.Generator],
                  temperature: float = 1.0, top_k: int | None = None, top_p: float = 1.0,
                  callback: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Ancestral sampling of `num_tokens` tokens for len(generators) sequences; returns (B, num_tokens).

    `callback(i, tokens)` runs after token i with the tokens written so far (B, i + 1).
    """
    check_sampling_settings(temperature, top_k, top_p)
    tokens = torch.empty(len(generators), 0, dtype=torch.long)
    for i in range(num_tokens):
        logits = next_logits(tokens).float() / temperature  # (B, V)
        token = draw_tokens(filter_logits(logits, top_k=top_k, top_p=top_p), generators)  # (B,)
        tokens = torch.cat([tokens, token[:, None]], dim=1)
        if callback is not None:
            callback(i, tokens)
    return tokens


def transformer_logits(model, text: torch.Tensor, *, uncond_text: torch.Tensor | None = None, guidance: float = 1.0,
                       kv_cache: bool = True) -> NextLogits:
    """`next_logits` for a TokenGenerator conditioned on text embeddings (B, L, D), for one sampling run.

    With `uncond_text` every forward runs on the batch [unconditional; conditional] and the logits are guided
    with scale `guidance`. With `kv_cache` the model keeps each layer's keys and values (and the text's, once)
    and sees only the newest token per step; without, it re-reads the whole prefix. The cache lives in the
    returned closure: one per run, shared with nothing else.
    """
    from transformers import DynamicCache, EncoderDecoderCache

    b = len(text)
    both = text if uncond_text is None else torch.cat([uncond_text, text])  # (B or 2B, L, D)
    cache = EncoderDecoderCache(DynamicCache(), DynamicCache()) if kv_cache else None
    bos = torch.full((len(both), 1), model.bos, dtype=torch.long)

    def next_logits(tokens: torch.Tensor) -> torch.Tensor:
        if uncond_text is not None:
            tokens = torch.cat([tokens, tokens])  # (2B, t): both halves continue the same images
        if cache is None:
            inputs = torch.cat([bos, tokens], dim=1)  # the whole prefix, (B', t + 1)
        else:
            inputs = bos if tokens.shape[1] == 0 else tokens[:, -1:]  # the newest token only, (B', 1)
        logits = model(inputs, both, cache)[:, -1, : model.codebook_size]  # (B', K): BOS is never drawn
        if uncond_text is None:
            return logits
        return guided_logits(logits[b:], logits[:b], guidance)

    return next_logits


def best_of(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices (P, keep) of the `keep` highest scores in each row of scores (P, N), best first: DALL-E's
    re-ranking (draw N candidates per prompt, keep the best by CLIP score)."""
    if not 1 <= keep <= scores.shape[1]:
        raise ValueError(f"cannot keep {keep} of {scores.shape[1]} candidates")
    return scores.topk(keep, dim=1).indices  # torch.topk returns its values sorted, best first
