"""What every t2i pipeline offers, whatever its intermediate (latent, small image or tokens).

A pipeline is called with prompts and returns PIL images; `stream` turns any such call into a preview per
step followed by the result. The server, `t2i generate` and `t2i eval` rely on this interface alone, so a new
variant gets them by implementing `__call__`. The base class also owns what every variant does the same way:
prompt encoding with the unconditional embedding cached, one seed per image, the size check, and the PNG
parameters; a call's settings travel as a frozen `Request`.
"""

from __future__ import annotations

import queue
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

DEFAULTS = {"sampler": "dpmpp_2m", "steps": 20, "guidance": 3.0}  # sampling settings stored in a pipeline folder


@dataclass(frozen=True)
class Request:
    """One call's settings, checked, with the pipeline's defaults filled in: one entry per image drawn."""

    prompts: tuple[str, ...]  # the prompt of each image
    negatives: tuple[str, ...]  # the negative prompt of each image ("" = the unconditional input)
    seeds: tuple[int, ...]  # image i depends only on seeds[i]
    steps: int  # denoising steps (the tokens variant: tokens written)
    guidance: float  # classifier-free guidance scale; 1 = conditional only
    sampler: str  # one of the pipeline's `samplers`
    height: int  # output size in pixels
    width: int
    options: Any = None  # the variant's own settings (a frozen dataclass of its `options`), or None


@dataclass
class StreamEvent:
    step: int  # steps done so far (1-based); equals `total` for the final event
    total: int  # steps of the run
    images: list[Image.Image]  # the decoded prediction of the clean image at this step, or the result
    final: bool  # True once, for the finished images


class _Cancelled(Exception):
    pass


class Pipeline:
    """The interface of a composed text-to-image pipeline.

    A variant sets `info` (the folder's t2i.json), `defaults` (sampler, steps, guidance, ...), `samplers`,
    `options` and `image_size`, calls `Pipeline.__init__` with its text encoder, and implements
    `__call__(prompt, *, negative_prompt, num_images, steps, guidance, seed, sampler, height, width, callback,
    **its options) -> list[Image]`, where `callback(step, total, previews)` is called once per step.
    """

    info: dict
    defaults: dict
    samplers: tuple[str, ...] = ()  # the sampler names `__call__` accepts
    options: tuple[str, ...] = ()  # keyword arguments of `__call__` beyond the common ones, for this variant only

    def __init__(self, text_encoder, info: dict, defaults: dict):
        self.text_encoder = text_encoder.eval().requires_grad_(False)
        self.info = info
        self.defaults = defaults
        self._uncond_cache: dict[str, torch.Tensor] = {}

    @property
    def image_size(self) -> int:
        raise NotImplementedError

    @property
    def size_multiple(self) -> int:
        """Output sides must be positive multiples of this."""
        return 1

    def size_reason(self) -> str:
        """Why sides must be multiples of `size_multiple`, for the error message."""
        return ""

    def __call__(self, prompt: str | list[str], *, callback: Callable[[int, int, list[Image.Image]], None] | None = None,
                 **kwargs) -> list[Image.Image]:
        raise NotImplementedError

    # -- what every variant does the same way ----------------------------------------------------

    @torch.inference_mode()
    def encode_prompts(self, prompts: list[str] | tuple[str, ...]) -> torch.Tensor:
        return self.text_encoder.encode(list(prompts))[0]  # (B, L, D)

    def unconditional(self, negatives: tuple[str, ...]) -> torch.Tensor:
        """The guidance's other input (B, L, D): each image's negative prompt; "" is the unconditional input,
        whose embedding is the same for every call and computed once."""
        if all(neg == "" for neg in negatives):
            if "" not in self._uncond_cache:
                self._uncond_cache[""] = self.encode_prompts([""])
            return self._uncond_cache[""].expand(len(negatives), -1, -1)
        return self.encode_prompts(negatives)

    def request(self, prompt, *, negative_prompt=None, num_images: int = 1, steps=None, guidance=None, seed=None,
                sampler=None, height=None, width=None, options=None) -> Request:
        """The settings every variant shares, checked, with this pipeline's defaults filled in: one prompt, one
        negative prompt and one seed per image (`seed` + k for image k, or one each), steps, guidance, sampler,
        and the output size (a positive multiple of `size_multiple`). `options`: the variant's own settings."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts:
            raise ValueError("no prompt given")
        if num_images < 1:
            raise ValueError(f"number of images must be at least 1, got {num_images}")
        prompts = [p for p in prompts for _ in range(num_images)]
        n = len(prompts)
        negatives = [negative_prompt or ""] * n if not isinstance(negative_prompt, list) else negative_prompt
        if len(negatives) != n:
            raise ValueError(f"{len(negatives)} negative prompts for {n} images")
        steps = int(steps if steps is not None else self.defaults["steps"])
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        guidance = float(guidance if guidance is not None else self.defaults["guidance"])
        if guidance < 0:
            raise ValueError(f"guidance scale must be ≥ 0, got {guidance}")
        sampler = sampler or self.defaults["sampler"]
        if sampler not in self.samplers:
            raise ValueError(f"unknown sampler {sampler!r}; choose from {', '.join(self.samplers)}")
        if seed is None:
            seeds = [secrets.randbelow(2**31) for _ in range(n)]
        elif isinstance(seed, int):
            seeds = [seed + i for i in range(n)]
        else:
            seeds = [int(s) for s in seed]
            if len(seeds) != n:
                raise ValueError(f"{len(seeds)} seeds for {n} images")
        height, width = height or self.image_size, width or self.image_size
        multiple = self.size_multiple
        for name, v in (("height", height), ("width", width)):
            if v < multiple or v % multiple:
                raise ValueError(f"{name} {v} is not a positive multiple of {multiple} ({self.size_reason()})")
        return Request(prompts=tuple(prompts), negatives=tuple(negatives), seeds=tuple(seeds), steps=steps,
                       guidance=guidance, sampler=sampler, height=height, width=width, options=options)

    def label(self, images: list[Image.Image], r: Request, extra: str = "") -> list[Image.Image]:
        """Write each image's generation parameters into it (`parameters_text`; saved as a PNG text chunk)."""
        for img, p, neg, k in zip(images, r.prompts, r.negatives, r.seeds):
            img.info["parameters"] = parameters_text(p, neg, r, k) + extra
        return images

    def stream(self, prompt: str | list[str], **kwargs) -> Iterator[StreamEvent]:
        """Yield a preview per step, then the finished images (`final=True`).

        The run happens in a worker thread; stopping the iteration early cancels it at the next step.
        """
        events: queue.Queue = queue.Queue()
        cancel = threading.Event()

        def on_preview(step, total, images):
            if cancel.is_set():
                raise _Cancelled
            events.put(StreamEvent(step, total, images, final=False))

        def run():
            try:
                events.put(self(prompt, callback=on_preview, **kwargs))  # the finished images
            except _Cancelled:
                events.put(None)
            except BaseException as e:  # handed to the consumer, raised there
                events.put(e)

        worker = threading.Thread(target=run, name="t2i-stream", daemon=True)
        worker.start()
        try:
            total = 0
            while True:
                event = events.get()
                if event is None:
                    return
                if isinstance(event, BaseException):
                    raise event
                if isinstance(event, list):
                    yield StreamEvent(total, total, event, final=True)
                    return
                total = event.total
                yield event
        finally:
            cancel.set()


def parameters_text(prompt: str, negative: str, r: Request, seed: int) -> str:
    """AUTOMATIC1111's "parameters" convention, so a PNG carries what reproduces it."""
    text = prompt + (f"\nNegative prompt: {negative}" if negative else "")
    return (f"{text}\nSteps: {r.steps}, Sampler: {r.sampler}, CFG scale: {r.guidance}, "
            f"Seed: {seed}, Size: {r.width}x{r.height}")
