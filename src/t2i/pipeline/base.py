"""What every t2i pipeline offers, whatever its intermediate (latent, small image or tokens).

A pipeline is called with prompts and returns PIL images; `stream` turns any such call into a
preview per step followed by the result. The server, `t2i generate` and `t2i eval` rely on this
interface alone, so a new variant gets them by implementing `__call__`.
"""

from __future__ import annotations

import queue
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from PIL import Image


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

    Subclasses set `info` (the folder's t2i.json), `defaults` (sampler, steps, guidance) and `image_size`,
    and implement `__call__(prompt, *, negative_prompt, num_images, steps, guidance, seed, sampler, height,
    width, callback) -> list[Image]`, where `callback(step, total, previews)` is called once per step.
    """

    info: dict
    defaults: dict
    samplers: tuple[str, ...] = ()  # the sampler names `__call__` accepts
    options: tuple[str, ...] = ()  # keyword arguments of `__call__` beyond the common ones, for this variant only

    @property
    def image_size(self) -> int:
        raise NotImplementedError

    def __call__(self, prompt: str | list[str], *, callback: Callable[[int, int, list[Image.Image]], None] | None = None,
                 **kwargs) -> list[Image.Image]:
        raise NotImplementedError

    def _request(self, prompt, negative_prompt, num_images, steps, guidance, seed, sampler) -> dict:
        """The settings every variant shares, checked, with this pipeline's defaults filled in: one prompt, one
        negative prompt and one seed per image (`seed` + k for image k, or one each), steps, guidance, sampler."""
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
        return dict(prompts=prompts, negatives=negatives, steps=steps, guidance=guidance, sampler=sampler, seeds=seeds)

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


def parameters_text(prompt: str, negative: str, settings: dict, seed: int) -> str:
    """AUTOMATIC1111's "parameters" convention, so a PNG carries what reproduces it."""
    text = prompt + (f"\nNegative prompt: {negative}" if negative else "")
    return (f"{text}\nSteps: {settings['steps']}, Sampler: {settings['sampler']}, CFG scale: {settings['guidance']}, "
            f"Seed: {seed}, Size: {settings['width']}x{settings['height']}")
