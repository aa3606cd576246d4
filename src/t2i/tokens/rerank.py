"""Scoring functions for re-ranking (DALL-E: draw N candidates per prompt, keep the best k by CLIP score).

A scoring function takes images and their prompts (one prompt per image) and returns one score per image,
higher is better: `score(images, prompts) -> tensor (N,)`. `clip_scorer` builds one from any local
transformers CLIPModel folder; `palette_scorer` is a pixel-counting one for the shapes data.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from t2i.data.shapes import BACKGROUND, COLOURS

ScoreFn = Callable[[list[Image.Image], list[str]], torch.Tensor]

# OpenAI CLIP's pixel normalisation, used when the folder has no preprocessor_config.json.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_scorer(folder: str | Path, *, batch_size: int = 64) -> ScoreFn:
    """100 · cos(image embedding, text embedding) from a transformers CLIPModel folder (weights, config and
    tokenizer files; image mean/std from preprocessor_config.json when present). Unlike the CLIP score metric
    it does not clip at 0, so that candidates below 0 still rank."""
    from transformers import AutoTokenizer, CLIPModel

    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"CLIP folder {folder} has no config.json")
    model = CLIPModel.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    size = model.config.vision_config.image_size
    pre = json.loads((folder / "preprocessor_config.json").read_text()) if (folder / "preprocessor_config.json").exists() else {}
    mean = torch.tensor(pre.get("image_mean", CLIP_MEAN)).view(1, 3, 1, 1)
    std = torch.tensor(pre.get("image_std", CLIP_STD)).view(1, 3, 1, 1)
    max_length = model.config.text_config.max_position_embeddings

    @torch.inference_mode()
    def score(images: list[Image.Image], prompts: list[str]) -> torch.Tensor:
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        out = []
        for i in range(0, len(images), batch_size):
            batch = [np.asarray(img.convert("RGB").resize((size, size), Image.BICUBIC), dtype=np.float32)
                     for img in images[i : i + batch_size]]
            pixels = (torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2) / 255 - mean) / std  # (B, 3, S, S)
            text = tokenizer(prompts[i : i + batch_size], padding=True, truncation=True, max_length=max_length,
                             return_tensors="pt")
            o = model(input_ids=text["input_ids"], attention_mask=text["attention_mask"], pixel_values=pixels)
            out.append(100 * (o.image_embeds * o.text_embeds).sum(-1))  # both unit length
        return torch.cat(out)

    return score


def palette_scorer(palette: dict[str, tuple[int, int, int]] = COLOURS,
                   background: tuple[int, int, int] = BACKGROUND, min_distance: float = 80.0) -> ScoreFn:
    """Share of an image's foreground pixels nearest to the first palette colour its prompt names (0 when the
    prompt names none): a real, learning-free scorer for shapes prompts."""
    names = list(palette)
    centres = np.asarray([palette[n] for n in names], np.float32)  # (K, 3)

    def score(images: list[Image.Image], prompts: list[str]) -> torch.Tensor:
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        out = []
        for img, prompt in zip(images, prompts):
            wanted = next((names.index(w) for w in prompt.lower().split() if w in palette), None)
            pixels = np.asarray(img.convert("RGB"), dtype=np.float32).reshape(-1, 3)  # (H·W, 3)
            fg = pixels[np.linalg.norm(pixels - np.asarray(background, np.float32), axis=1) >= min_distance]
            if wanted is None or len(fg) == 0:
                out.append(0.0)
                continue
            nearest = np.linalg.norm(fg[:, None, :] - centres[None], axis=2).argmin(1)  # (P,)
            out.append(float((nearest == wanted).mean()))
        return torch.tensor(out)

    return score
