"""A request checked against the server's limits and filled in with the model's defaults."""

from __future__ import annotations

import math
import secrets
import unicodedata

from t2i.server.config import ServerConfig
from t2i.server.jobs import JobSettings
from t2i.server.schema import MAX_SEED, GenerateRequest


class RequestError(ValueError):
    """A request the server refuses; becomes a 4xx with this message."""

    def __init__(self, message: str, status: int = 422, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers


def _check_text(name: str, text: str, limit: int) -> str:
    if len(text) > limit:
        raise RequestError(f"{name} has {len(text)} characters, over the limit of {limit}")
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Cs") and ch not in "\t\n\r":
            raise RequestError(f"{name} contains a control character (U+{ord(ch):04X})")
    return text


def resolve(req: GenerateRequest, pipe, config: ServerConfig) -> JobSettings:
    """Fill in the model's defaults and check every value against the server's limits."""
    prompt = _check_text("prompt", req.prompt, config.max_prompt_chars)
    if not prompt.strip():
        raise RequestError("prompt is empty")
    negative = _check_text("negative_prompt", req.negative_prompt, config.max_prompt_chars)
    steps = req.steps if req.steps is not None else int(pipe.defaults["steps"])
    if not 1 <= steps <= config.max_steps:
        raise RequestError(f"steps must be between 1 and {config.max_steps}, got {steps}")
    guidance = req.guidance if req.guidance is not None else float(pipe.defaults["guidance"])
    if not (math.isfinite(guidance) and 0 <= guidance <= config.max_guidance):
        raise RequestError(f"guidance must be between 0 and {config.max_guidance:g}, got {guidance}")
    sampler = req.sampler if req.sampler is not None else pipe.defaults.get("sampler")
    if not pipe.samplers and req.sampler is not None:
        raise RequestError("this model has no choice of sampler; leave sampler out")
    if pipe.samplers and sampler not in pipe.samplers:
        raise RequestError(f"unknown sampler {sampler[:40]!r}; this model has {', '.join(pipe.samplers)}")
    if not 1 <= req.num_images <= config.max_images:
        raise RequestError(f"num_images must be between 1 and {config.max_images}, got {req.num_images}")
    width = req.width if req.width is not None else pipe.image_size
    height = req.height if req.height is not None else pipe.image_size
    if not 1 <= width <= config.max_width:
        raise RequestError(f"width must be between 1 and {config.max_width}, got {width}")
    if not 1 <= height <= config.max_height:
        raise RequestError(f"height must be between 1 and {config.max_height}, got {height}")
    if width * height > config.max_pixels:
        raise RequestError(f"{width}×{height} is {width * height} pixels, over the limit of {config.max_pixels}")
    seed = req.seed if req.seed is not None else secrets.randbelow(MAX_SEED + 1)
    if not 0 <= seed <= MAX_SEED:
        raise RequestError(f"seed must be between 0 and {MAX_SEED}, got {seed}")
    return JobSettings(prompt=prompt, negative_prompt=negative, steps=steps, guidance=float(guidance), seed=seed,
                       sampler=sampler, width=width, height=height, num_images=req.num_images)


def offered_sizes(image_size: int, config: ServerConfig) -> list[int]:
    """Half-steps of the training size, from half of it to twice it, within the limits."""
    sizes = [image_size * k // 2 for k in range(1, 5) if image_size * k % 2 == 0]
    fit = [s for s in sizes if s <= min(config.max_width, config.max_height) and s * s <= config.max_pixels]
    return fit or [image_size]
