"""Feature extractors: images in, one feature vector per image out, behind one small interface.

FID, KID and CLIP score are only as comparable as the features they are computed on, so every
extractor has a `name` that identifies its weights; reports and caches carry it. Images are prepared
the clean-fid way (Parmar et al. 2022, "On Aliased Resizing and Surprising Subtleties in GAN
Evaluation"): 8-bit RGB images, resized with PIL's bicubic filter per channel in float, not
re-quantised, and only then handed to the network.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm


def clean_resize(img: Image.Image, size: int) -> np.ndarray:
    """An 8-bit RGB image as (size, size, 3) float32 in [0, 255], resized like clean-fid's "clean" mode.

    Each channel is resized as a float image with PIL's bicubic filter (antialiased when shrinking) and
    kept in float; an image already at `size` is passed through exactly.
    """
    pixels = np.asarray(img.convert("RGB"), dtype=np.uint8)  # (H, W, 3): the uint8 quantisation
    if pixels.shape[0] == size and pixels.shape[1] == size:
        return pixels.astype(np.float32)
    channels = [np.asarray(Image.fromarray(pixels[:, :, c].astype(np.float32))
                           .resize((size, size), Image.Resampling.BICUBIC)) for c in range(3)]
    return np.stack(channels, axis=2)  # (size, size, 3)


def to_batch(images: list[Image.Image], size: int) -> torch.Tensor:
    """PIL images as one (B, 3, size, size) float32 tensor in [0, 255] (see `clean_resize`)."""
    arrays = np.stack([clean_resize(img, size) for img in images])  # (B, size, size, 3)
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous()


class FeatureExtractor:
    """Images → features (N, D). Subclasses set `name`, `resolution`, `dim` and implement `forward_batch`.

    `name` identifies the network and its weights (it keys caches and is printed in every report);
    `resolution` is the side in pixels the network sees.
    """

    name: str
    resolution: int
    dim: int
    batch_size: int = 128  # images per forward pass

    def forward_batch(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, resolution, resolution) float32 in [0, 255] → (B, dim) float32."""
        raise NotImplementedError

    @torch.inference_mode()
    def __call__(self, images: list[Image.Image], *, progress: str | None = None) -> torch.Tensor:
        """Features (N, dim) float32 of PIL images, computed in batches; `progress` names a progress bar."""
        if not images:
            raise ValueError("no images to compute features of")
        out = []
        starts = range(0, len(images), self.batch_size)
        for i in tqdm(starts, desc=progress, unit="batch", disable=None if progress else True):
            out.append(self.forward_batch(to_batch(images[i : i + self.batch_size], self.resolution)).float())
        return torch.cat(out)
