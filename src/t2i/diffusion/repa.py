"""Representation alignment (REPA; Yu et al. 2024, "Representation Alignment for Generation: Training Diffusion
Transformers Is Easier Than You Think", https://arxiv.org/abs/2410.06940): besides denoising, an intermediate
layer of the generator, seen through a small projector, is pulled towards a frozen encoder's features of the
clean image (1 − cosine similarity per position, weighted by λ; the paper's λ = 0.5 with DINOv2 reported
> 17× faster SiT training). No DINOv2 is installable here, so the target is a frozen encoder t2i has:

- "autoencoder": the autoencoder's encoder just before its latent projection (conv_norm_out + act, the widest
  features it has at the latent's resolution);
- a CLIP folder (t2i train clip, or a real CLIP): the vision tower's patch tokens on a grid.

The targets are cached once per image (like the latents), average-pooled to the grid of the generator's layer:
the U-Net's middle block, or the transformer's block a third of the way up. The projector (two 1×1 convolutions)
trains with the generator and is dropped when the generator is saved: the saved weights stay a plain diffusers
model.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

AUTOENCODER = "autoencoder"
PROJECTOR = "repa_projector"  # the attribute the projector lives under on the generator while it trains
PROJECTOR_HIDDEN = 256


class FrozenFeatures:
    """Images (B, 3, S, S) in [-1, 1] → the target encoder's features (B, D, h, w), float32, no gradients."""

    def __init__(self, source: str, vae):
        self.source = source
        self.device = vae.device  # where the frozen encoders run (a GPU if there is one)
        if source == AUTOENCODER:
            self.encoder, self.name = vae.encoder, AUTOENCODER
            return
        folder = Path(source)
        if not (folder / "config.json").is_file():
            raise ValueError(f"REPA target {source!r}: neither 'autoencoder' nor a CLIP model folder")
        from transformers import CLIPModel

        self.encoder = CLIPModel.from_pretrained(folder).vision_model.eval().requires_grad_(False).to(self.device)
        processor = folder / "preprocessor_config.json"
        p = json.loads(processor.read_text()) if processor.is_file() else {}
        self.mean = torch.tensor(p.get("image_mean", [0.48145466, 0.4578275, 0.40821073])).view(1, 3, 1, 1)
        self.std = torch.tensor(p.get("image_std", [0.26862954, 0.26130258, 0.27577711])).view(1, 3, 1, 1)
        self.size = int(self.encoder.config.image_size)
        self.name = f"clip:{folder.resolve()}"

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device)
        if self.source == AUTOENCODER:
            return autoencoder_features(self.encoder, images).float().cpu()
        x = F.interpolate((images + 1) / 2, size=(self.size, self.size), mode="bilinear", antialias=True,
                          align_corners=False)
        x = (x - self.mean.to(x.device)) / self.std.to(x.device)
        tokens = self.encoder(pixel_values=x).last_hidden_state[:, 1:]  # (B, N, D)
        return tokens_to_grid(tokens).float().cpu()


def autoencoder_features(encoder, x: torch.Tensor) -> torch.Tensor:
    """diffusers' Encoder up to (not including) conv_out: (B, C_last, h, w) at the latent's resolution."""
    h = encoder.conv_in(x)
    for block in encoder.down_blocks:
        h = block(h)
    h = encoder.mid_block(h)
    return encoder.conv_act(encoder.conv_norm_out(h))


def tokens_to_grid(tokens: torch.Tensor) -> torch.Tensor:
    """(B, N, D) patch tokens of a square grid → (B, D, √N, √N)."""
    b, n, d = tokens.shape
    side = int(round(n**0.5))
    if side * side != n:
        raise ValueError(f"{n} tokens are not a square grid")
    return tokens.transpose(1, 2).reshape(b, d, side, side)


def aligned_layer(network: nn.Module) -> nn.Module:
    """The generator layer REPA aligns: the U-Net's middle block, the transformer's block a third of the way up."""
    if getattr(network, "mid_block", None) is not None:
        return network.mid_block
    blocks = getattr(network, "transformer_blocks", None)
    if blocks:
        return blocks[len(blocks) // 3]
    raise ValueError(f"REPA: no middle block or transformer blocks on {type(network).__name__}")


def as_grid(hidden: torch.Tensor) -> torch.Tensor:
    """A layer's output as (B, C, h, w): a U-Net's already is; a transformer's (B, N, C) tokens are reshaped."""
    return hidden if hidden.ndim == 4 else tokens_to_grid(hidden)


@contextmanager
def capture(layer: nn.Module):
    """Within the block, every forward of `layer` stores its output in the yielded dict under "hidden"."""
    seen: dict = {}

    def hook(_module, _inputs, output):
        seen["hidden"] = output[0] if isinstance(output, tuple) else output

    handle = layer.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def layer_shape(network: nn.Module, *inputs, **kwargs) -> tuple[int, int]:
    """(channels, grid side) of the aligned layer's output, from one forward with the given dummy inputs."""
    with torch.no_grad(), capture(aligned_layer(network)) as seen:
        network(*inputs, **kwargs)
    grid = as_grid(seen["hidden"])
    return grid.shape[1], grid.shape[-1]


def make_projector(channels: int, target_dim: int, hidden: int = PROJECTOR_HIDDEN) -> nn.Module:
    """REPA's MLP per position (here two 1×1 convolutions): generator channels → target features."""
    return nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.SiLU(), nn.Conv2d(hidden, target_dim, 1))


def alignment_loss(projector: nn.Module, hidden: torch.Tensor, target: torch.Tensor,
                   keep: torch.Tensor | None = None) -> torch.Tensor:
    """1 − mean over positions and batch of cos(projector(hidden), target): REPA maximises the cosine, and the 1
    keeps the total loss positive. hidden (B, C, h, w) or (B, N, C), target (B, D, h, w). With `keep` (B, K), the
    patch indices a masked transformer kept, hidden is those K tokens (B, K, C) and is compared with the target
    at those positions."""
    if keep is None:
        projected = projector(as_grid(hidden).float())  # (B, D, h, w)
        return 1 - F.cosine_similarity(projected, target.float(), dim=1).mean()
    flat = target.flatten(2)  # (B, D, h·w)
    kept = flat.gather(2, keep[:, None, :].expand(-1, flat.shape[1], -1))  # (B, D, K)
    projected = projector(hidden.transpose(1, 2)[..., None].float())  # the 1×1 projector on (B, C, K, 1)
    return 1 - F.cosine_similarity(projected[..., 0], kept.float(), dim=1).mean()


@torch.no_grad()
def target_rows(features: FrozenFeatures, images, grid: int, *, batch_size: int = 128):
    """compute_rows for `sharded_cache`: the target features of images[start:end], average-pooled to grid×grid,
    stored as float16 (cosine similarity does not need more)."""

    def compute(start: int, end: int) -> dict[str, torch.Tensor]:
        out = []
        for i in range(start, end, batch_size):
            x = images[torch.arange(i, min(i + batch_size, end))]  # (b, 3, S, S) in [-1, 1]
            out.append(F.adaptive_avg_pool2d(features(x), grid).half())
        return {"repa_target": torch.cat(out)}

    return compute
