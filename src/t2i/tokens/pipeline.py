"""The tokens variant composed: prompt → text encoder → GPT-2 writes the VQ token grid → VQ decoder → images.

`TokensPipeline` holds no per-call state: each call builds its own sampling closure (with its own key/value
cache) and its own generators, so concurrent calls cannot corrupt each other. Image i depends only on seed i.
With `candidates`, N images are drawn per prompt and the best `num_images` by a scoring function are kept
(DALL-E's CLIP re-ranking); each kept image carries its own seed, which reproduces it alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from t2i.components import PIPELINE_INFO
from t2i.images import to_pil
from t2i.pipeline.base import Pipeline, Request
from t2i.text import TextEncoder, load_text_encoder
from t2i.tokens.compose import TOKENS_DEFAULTS
from t2i.tokens.model import TokenGenerator
from t2i.tokens.rerank import ScoreFn
from t2i.tokens.sampling import best_of, check_sampling_settings, sample_tokens, transformer_logits
from t2i.tokens.vq import decode_indices, vq_grid_size


@dataclass(frozen=True)
class TokensOptions:
    """A tokens call's own settings (`Request.options`)."""

    temperature: float  # divides the logits
    top_k: int | None  # draw from the k most likely codes only; None: off
    top_p: float  # nucleus: the smallest set of codes whose probability reaches p
    draws: int  # images drawn per prompt (candidates when re-ranking)
    keep: int  # images kept per prompt


class TokensPipeline(Pipeline):
    """The tokens variant (DALL-E's): text encoder → autoregressive transformer over VQ tokens → VQ decoder."""

    samplers = ("autoregressive",)
    options = ("temperature", "top_k", "top_p", "candidates", "scorer", "kv_cache")

    def __init__(self, text_encoder: TextEncoder, transformer: TokenGenerator, vq, info: dict):
        self.grid_size = vq_grid_size(vq)
        super().__init__(text_encoder, info, {**TOKENS_DEFAULTS, "steps": self.grid_size**2, **info.get("defaults", {})})
        self.transformer = transformer.eval().requires_grad_(False)
        self.vq = vq.eval().requires_grad_(False)
        self.fill_code = int(info.get("fill_code", 0))

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> TokensPipeline:
        """Load a folder written by `compose_tokens` (float32, CPU)."""
        from diffusers import VQModel

        folder = Path(folder)
        if not (folder / PIPELINE_INFO).exists():
            raise FileNotFoundError(f"{folder} is not a pipeline folder (no {PIPELINE_INFO}); make one with t2i compose")
        info = json.loads((folder / PIPELINE_INFO).read_text())
        text_encoder = load_text_encoder(folder / "text_encoder", tokenizer_folder=folder / "tokenizer")
        # float32 whatever the files hold (a shipped folder stores float16: recipes/ship_model.py)
        transformer = TokenGenerator.from_pretrained(folder / "transformer").float()
        vq = VQModel.from_pretrained(folder / "vqvae", use_safetensors=True, torch_dtype=torch.float32)
        return cls(text_encoder, transformer, vq, info)

    @property
    def image_size(self) -> int:
        return int(self.vq.config.sample_size)

    # -- the pieces -------------------------------------------------------------------------------

    @torch.inference_mode()
    def decode(self, tokens: torch.Tensor) -> list[Image.Image]:
        """Tokens (B, t) in raster order, t ≤ h·w, to PIL images; unwritten positions hold the fill code."""
        grid = torch.full((len(tokens), self.grid_size**2), self.fill_code, dtype=torch.long)
        grid[:, : tokens.shape[1]] = tokens
        pixels = decode_indices(self.vq, grid.view(-1, self.grid_size, self.grid_size))  # (B, 3, H, W)
        return [to_pil(p) for p in pixels]

    def request_tokens(self, prompt, negative_prompt, num_images, steps, guidance, seed, sampler, height, width,
                       temperature, top_k, top_p, candidates) -> Request:
        """The shared settings (`Pipeline.request`) for `draws` images per prompt, plus this variant's own. The
        grid fixes the steps (one per token), the sampler and the image size: only their one value passes."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if num_images < 1:
            raise ValueError(f"number of images must be at least 1, got {num_images}")
        draws = num_images if candidates is None else int(candidates)
        if draws < num_images:
            raise ValueError(f"cannot keep {num_images} images of {draws} candidates")
        if isinstance(negative_prompt, list):  # one per prompt here; one per image drawn in the request
            if len(negative_prompt) != len(prompts):
                raise ValueError(f"{len(negative_prompt)} negative prompts for {len(prompts)} prompts")
            negative_prompt = [g for g in negative_prompt for _ in range(draws)]
        tokens = self.grid_size**2
        if steps is not None and int(steps) != tokens:
            raise ValueError(f"the tokens pipeline writes all {tokens} tokens of its {self.grid_size}×{self.grid_size} "
                             f"grid, one per step; steps={steps} does not apply")
        if sampler is not None and sampler not in self.samplers:
            raise ValueError(f"unknown sampler {sampler!r} for a tokens pipeline; choose from {', '.join(self.samplers)}")
        for name, v in (("height", height), ("width", width)):
            if v is not None and v != self.image_size:
                raise ValueError(f"{name} {v} is not {self.image_size}: the token grid fixes the image size")
        temperature = float(temperature if temperature is not None else self.defaults["temperature"])
        top_k = top_k if top_k is not None else self.defaults["top_k"]
        top_p = float(top_p if top_p is not None else self.defaults["top_p"])
        check_sampling_settings(temperature, top_k, top_p)
        return self.request(prompts, negative_prompt=negative_prompt, num_images=draws, steps=tokens,
                            guidance=guidance, seed=seed, sampler=self.samplers[0],
                            options=TokensOptions(temperature, top_k, top_p, draws, num_images))

    @torch.inference_mode()
    def sample_tokens(self, r: Request, *, kv_cache: bool = True,
                      on_token: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
        """The token grids (B, h·w) for request `r` (from `request_tokens`)."""
        o: TokensOptions = r.options
        text = self.encode_prompts(r.prompts)
        uncond = self.unconditional(r.negatives) if r.guidance != 1 else None
        next_logits = transformer_logits(self.transformer, text, uncond_text=uncond, guidance=r.guidance,
                                         kv_cache=kv_cache)
        generators = [torch.Generator().manual_seed(k) for k in r.seeds]
        return sample_tokens(next_logits, r.steps, generators=generators, temperature=o.temperature,
                             top_k=o.top_k, top_p=o.top_p, callback=on_token)

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
        r = self.request_tokens(prompt, negative_prompt, num_images, steps, guidance, seed, sampler, height, width,
                                temperature, top_k, top_p, candidates)
        o: TokensOptions = r.options
        if o.draws > o.keep and scorer is None:
            raise ValueError("re-ranking candidates needs a scoring function (scorer=..., or --clip DIR)")
        rows = self.grid_size
        on_token = None
        if callback:
            def on_token(i, tokens):
                if (i + 1) % rows == 0:  # one preview per row of the grid: 8 decodes, not 64
                    callback((i + 1) // rows, rows, self.decode(tokens))
        images = self.label(self.decode(self.sample_tokens(r, kv_cache=kv_cache, on_token=on_token)), r,
                            f", Temperature: {o.temperature}, Top-k: {o.top_k or 'off'}, Top-p: {o.top_p}")
        if o.draws == o.keep:
            return images
        scores = torch.as_tensor(scorer(images, list(r.prompts)), dtype=torch.float32).view(-1, o.draws)  # (P, N)
        keep = best_of(scores, o.keep)  # (P, k)
        return [images[p * o.draws + int(j)] for p in range(len(keep)) for j in keep[p]]
