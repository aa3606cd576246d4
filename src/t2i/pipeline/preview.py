"""Writing what a generation produced: image files, grids and the step-by-step preview GIF."""

from __future__ import annotations

import re
from pathlib import Path
from typing import BinaryIO

from PIL import Image, PngImagePlugin


def grid(images: list[Image.Image], *, cols: int | None = None, scale: int = 1, pad: int = 2) -> Image.Image:
    """Tile images (all one size) into a grid, optionally enlarged `scale`× with nearest-neighbour."""
    cols = cols or len(images)
    rows = -(-len(images) // cols)
    w, h = images[0].size
    w, h = w * scale, h * scale
    sheet = Image.new("RGB", (cols * w + (cols + 1) * pad, rows * h + (rows + 1) * pad), (40, 40, 40))
    for k, img in enumerate(images):
        r, c = divmod(k, cols)
        sheet.paste(img.resize((w, h), Image.NEAREST), (pad + c * (w + pad), pad + r * (h + pad)))
    return sheet


def save_png(img: Image.Image, path: Path | BinaryIO) -> None:
    """PNG with the generation parameters in a 'parameters' text chunk (AUTOMATIC1111's convention)."""
    meta = PngImagePlugin.PngInfo()
    if "parameters" in img.info:
        meta.add_text("parameters", img.info["parameters"])
    img.save(path, format="PNG", pnginfo=meta)


def save_gif(frames: list[Image.Image], path: Path, *, ms_per_frame: int = 120, hold_last_ms: int = 1500) -> None:
    durations = [ms_per_frame] * (len(frames) - 1) + [hold_last_ms]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, loop=0)


def slug(text: str, limit: int = 48) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:limit] or "prompt"


def save_generation(pipe, prompts: list[str], out_dir: str | Path, *, n: int, preview: Path | None = None,
                    grid_scale: int = 4, **kwargs) -> list[Path]:
    """Generate `n` images per prompt; write each PNG, one grid per prompt, and optionally the preview GIF."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frames: list[Image.Image] = []

    def on_step(step, total, previews):
        frames.append(grid(previews, cols=n, scale=grid_scale))

    images = pipe(prompts, num_images=n, callback=on_step if preview else None, **kwargs)
    paths = []
    for p, prompt in enumerate(prompts):
        batch = images[p * n : (p + 1) * n]
        for k, img in enumerate(batch):
            path = out_dir / f"{slug(prompt)}_{k}.png"
            save_png(img, path)
            paths.append(path)
        grid(batch, scale=grid_scale).save(out_dir / f"grid_{slug(prompt)}.png")
    if preview:
        frames.append(grid(images, cols=n, scale=grid_scale))
        preview.parent.mkdir(parents=True, exist_ok=True)
        save_gif(frames, preview)
    return paths
