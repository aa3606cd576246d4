"""Image I/O in one place: PIL ↔ tensor, fitting to a square, PNGs (with their generation parameters),
grids and the preview GIF."""

from __future__ import annotations

import re
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, PngImagePlugin

WHITE = (255, 255, 255)


def fit_square(img: Image.Image, size: int) -> Image.Image:
    """RGB, transparency composited onto white, short side resized to `size` (bicubic), centre-cropped."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, WHITE + (255,)), rgba)
    img = img.convert("RGB")
    width, height = img.size
    scale = size / min(width, height)
    new_size = (max(size, round(width * scale)), max(size, round(height * scale)))
    if new_size != img.size:
        img = img.resize(new_size, Image.Resampling.BICUBIC)
    left, top = (new_size[0] - size) // 2, (new_size[1] - size) // 2
    return img.crop((left, top, left + size, top + size))


def load_image(path: str | Path, size: int) -> Image.Image:
    """Open an image file as a size×size RGB image (EXIF rotation applied, alpha on white, see `fit_square`)."""
    with Image.open(path) as im:
        return fit_square(ImageOps.exif_transpose(im), size)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """An RGB PIL image as a (3, H, W) float32 tensor in [-1, 1]."""
    if img.mode != "RGB":
        raise ValueError(f"expected an RGB image, got mode {img.mode}")
    pixels = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy())  # (H, W, 3)
    return pixels.permute(2, 0, 1).float() / 127.5 - 1.0  # (3, H, W)


def to_pil(tensor: torch.Tensor) -> Image.Image:
    """The inverse of `to_tensor`: a (3, H, W) tensor in [-1, 1] (clamped, rounded) as an RGB image."""
    if tensor.ndim != 3 or tensor.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) tensor, got shape {tuple(tensor.shape)}")
    pixels = ((tensor.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return Image.fromarray(pixels.permute(1, 2, 0).numpy())  # (H, W, 3)


def save_dataset_png(img: Image.Image, path: Path) -> None:
    """A dataset image: PIL writes no tIME or text chunks unless given `pnginfo`, and zlib at a fixed level is
    deterministic, so the same image always gives the same bytes."""
    img.save(path, format="PNG", compress_level=6)


def save_png(img: Image.Image, path: Path | BinaryIO) -> None:
    """A generated image: PNG with the generation parameters in a 'parameters' text chunk (AUTOMATIC1111's
    convention)."""
    meta = PngImagePlugin.PngInfo()
    if "parameters" in img.info:
        meta.add_text("parameters", img.info["parameters"])
    img.save(path, format="PNG", pnginfo=meta)


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


def save_gif(frames: list[Image.Image], path: Path, *, ms_per_frame: int = 120, hold_last_ms: int = 1500) -> None:
    durations = [ms_per_frame] * (len(frames) - 1) + [hold_last_ms]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, loop=0)


def slug(text: str, limit: int = 48) -> str:
    """A file-name-safe form of a prompt."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:limit] or "prompt"
