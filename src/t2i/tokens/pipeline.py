"""The tokens variant composed: prompt → text encoder → GPT-2 writes the VQ token grid → VQ decoder → images.

`TokensPipeline` holds no per-call state: each call builds its own sampling closure (with its own key/value
cache) and its own generators, so concurrent calls cannot corrupt each other. Image i depends only on seed i.
With `candidates`, N images are drawn per prompt and the best `num_images` by a scoring function are kept
(DALL-E's CLIP re-ranking); each kept image carries its own seed, which reproduces it alone.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from t2i.components import PIPELINE_INFO
from t2i.data import to_pil
from t2i.pipeline.base import Pipeline, parameters_text
from t2i.text import TextEncoder, load_text_encoder
from t2i.tokens.compose import TOKENS_DEFAULTS
from t2i.tokens.model import TokenGenerator
from t2i.tokens.rerank import ScoreFn
from t2i.tokens.sampling import best_of, check_sampling_settings, sample_tokens, transformer_logits
from t2i.tokens.vq import decode_indices, vq_grid_size


class TokensPipeline(Pipeline):
    """The tokens variant (DALL-E's): text encoder → autoregressive transformer over VQ tokens → VQ decoder."""

    samplers = ("autoregressive",)

    def __init__(self, text_encoder: TextEncoder, transformer: TokenGenerator, vq, info: dict):
        self.text_encoder = text_encoder.eval().requires_grad_(False)
        self.transformer = transformer.eval().requires_grad_(False)
        self.vq = vq.eval().requires_grad_(False)
        self.info = info
        self.grid_size = vq_grid_size(vq)
        self.fill_code = int(info.get("fill_code", 0))
        self.defaults = {**TOKENS_DEFAULTS, "steps": self.grid_size**2, **info.get("defaults", {})}
        self._uncond_cache: dict[str, torch.Tensor] = {}

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> TokensPipeline:
        """Load a folder written by `compose_tokens` (float32, CPU)."""
        from diffusers import VQModel

        folder = Path(folder)
        if not (folder / PIPELINE_INFO).exists():
            raise FileNotFoundError(f"{folder} is not a pipeline folder (no {PIPELINE_INFO}); make one with t2i compose")
        info = json.loads((folder / PIPELINE_INFO).read_text())
        text_encoder = load_text_encoder(folder / "text_encoder", tokenizer_folder=folder / "tokenizer")
        transformer = TokenGenerator.from_pretrained(folder / "transformer")
        vq = VQModel.from_pretrained(folder / "vqvae", use_safetensors=True)
        return cls(text_encoder, transformer, vq, info)

    @property
    def image_size(self) -> int:
        return int(self.vq.config.sample_size)

    # -- the pieces -------------------------------------------------------------------------------

    @torch.inference_mode()
    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        return self.text_encoder.encode(prompts)[0]  # (B, L, D)

    @torch.inference_mode()
    def decode(self, tokens: torch.Tensor) -> list[Image.Image]:
        """Tokens (B, t) in raster order, t ≤ h·w, to PIL images; unwritten positions hold the fill code."""
        grid = torch.full((len(tokens), self.grid_size**2), self.fill_code, dtype=torch.long)
        grid[:, : tokens.shape[1]] = tokens
        pixels = decode_indices(self.vq, grid.view(-1, self.grid_size, self.grid_size))  # (B, 3, H, W)
        return [to_pil(p) for p in pixels]

    def _uncond(self, negatives: list[str]) -> torch.Tensor:
        # The empty prompt's embedding is the same for every call: compute it once.
        if all(neg == "" for neg in negatives):
            if "" not in self._uncond_cache:
                self._uncond_cache[""] = self.encode_prompts([""])
            return self._uncond_cache[""].expand(len(negatives), -1, -1)
        return self.encode_prompts(negatives)

    def _settings(self, prompt, negative_prompt, num_images, steps, guidance, seed, sampler, height, width,
                  temperature, top_k, top_p, candidates) -> dict:
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts:
            raise ValueError("no prompt given")
        if num_images < 1:
            raise ValueError(f"number of images must be at least 1, got {num_images}")
        draws = num_images if candidates is None else int(candidates)
        if draws < num_images:
            raise ValueError(f"cannot keep {num_images} images of {draws} candidates")
        n = len(prompts) * draws
        negatives = [negative_prompt or ""] * len(prompts) if not isinstance(negative_prompt, list) else negative_prompt
        if len(negatives) != len(prompts):
            raise ValueError(f"{len(negatives)} negative prompts for {len(prompts)} prompts")
        tokens = self.grid_size**2
        if steps is not None and int(steps) != tokens:
            raise ValueError(f"the tokens pipeline writes all {tokens} tokens of its {self.grid_size}×{self.grid_size} "
                             f"grid, one per step; steps={steps} does not apply")
        if sampler is not None and sampler not in self.samplers:
            raise ValueError(f"unknown sampler {sampler!r} for a tokens pipeline; choose from {', '.join(self.samplers)}")
        for name, v in (("height", height), ("width", width)):
            if v is not None and v != self.image_size:
                raise ValueError(f"{name} {v} is not {self.image_size}: the token grid fixes the image size")
        guidance = float(guidance if guidance is not None else self.defaults["guidance"])
        if guidance < 0:
            raise ValueError(f"guidance scale must be ≥ 0, got {guidance}")
        temperature = float(temperature if temperature is not None else self.defaults["temperature"])
        top_k = top_k if top_k is not None else self.defaults["top_k"]
        top_p = float(top_p if top_p is not None else self.defaults["top_p"])
        check_sampling_settings(temperature, top_k, top_p)
        if seed is None:
            seeds = [secrets.randbelow(2**31) for _ in range(n)]
        elif isinstance(seed, int):
            seeds = [seed + i for i in range(n)]
        else:
            seeds = [int(s) for s in seed]
            if len(seeds) != n:
                raise ValueError(f"{len(seeds)} seeds for {n} images")
        return dict(prompts=[p for p in prompts for _ in range(draws)], negatives=[g for g in negatives for _ in range(draws)],
                    draws=draws, keep=num_images, steps=tokens, guidance=guidance, sampler=self.samplers[0],
                    temperature=temperature, top_k=top_k, top_p=top_p, height=self.image_size, width=self.image_size,
                    seeds=seeds)

    @torch.inference_mode()
    def sample_tokens(self, s: dict, *, kv_cache: bool = True,
                      on_token: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
        """The token grids (B, h·w) for settings `s` (from `_settings`)."""
        text = self.encode_prompts(s["prompts"])
        uncond = self._uncond(s["negatives"]) if s["guidance"] != 1 else None
        next_logits = transformer_logits(self.transformer, text, uncond_text=uncond, guidance=s["guidance"],
                                         kv_cache=kv_cache)
        generators = [torch.Generator().manual_seed(k) for k in s["seeds"]]
        return sample_tokens(next_logits, s["steps"], generators=generators, temperature=s["temperature"],
                             top_k=s["top_k"], top_p=s["top_p"], callback=on_token)

    # -- the public call -------------------------------------------------------------------------

    def __call__(self, prompt: str | list[str], *, negative_prompt: str | list[str] | None = None,
                 num_images: int = 1, steps: int | None = None, guidance: float | None = None,
                 seed: int | list[int] | None = None, sampler: str | None = None, height: int | None = None,
                 width: int | None = None, temperature: float | None = None, top_k: int | None = None,
                 top_p: float | None = None, candidates: int | None = None, scorer: ScoreFn | None = None,
                 kv_cache: bool = True, callback: Callable[[int, int, list[Image.Image]], None] | None = None,
                 ) -> list[Image.Image]:
        """Generate `num_images` images per prompt. `seed` is a base seed (image k gets seed + k) or one seed per
        drawn image. With `candidates` = N, draw N per prompt and keep the `num_images` that `scorer(images,
        prompts)` rates highest, best first. `callback(row, rows, previews)` receives the partly written grids
        after each row of tokens, unwritten tokens shown as the fill code (on shapes, the background).
        `steps`, `sampler`, `height`, `width` exist for the shared interface: only their one valid value passes."""
        s = self._settings(prompt, negative_prompt, num_images, steps, guidance, seed, sampler, height, width,
                           temperature, top_k, top_p, candidates)
        if s["draws"] > s["keep"] and scorer is None:
            raise ValueError("re-ranking candidates needs a scoring function (scorer=..., or --clip DIR)")
        rows = self.grid_size
        on_token = None
        if callback:
            def on_token(i, tokens):
                if (i + 1) % rows == 0:  # one preview per row of the grid: 8 decodes, not 64
                    callback((i + 1) // rows, rows, self.decode(tokens))
        images = self.decode(self.sample_tokens(s, kv_cache=kv_cache, on_token=on_token))
        for img, p, neg, k in zip(images, s["prompts"], s["negatives"], s["seeds"]):
            img.info["parameters"] = (parameters_text(p, neg, s, k) + f", Temperature: {s['temperature']}, "
                                      f"Top-k: {s['top_k'] or 'off'}, Top-p: {s['top_p']}")
        if s["draws"] == s["keep"]:
            return images
        scores = torch.as_tensor(scorer(images, s["prompts"]), dtype=torch.float32).view(-1, s["draws"])  # (P, N)
        keep = best_of(scores, s["keep"])  # (P, k)
        return [images[p * s["draws"] + int(j)] for p in range(len(keep)) for j in keep[p]]
