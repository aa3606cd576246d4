"""Writing what a generation produced: image files, one grid per prompt and the step-by-step preview GIF."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from t2i.images import grid, save_gif, save_png, slug


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
