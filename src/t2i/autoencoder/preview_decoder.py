"""A cheap preview decoder: a tiny convolutional network distilled from the autoencoder's real decoder.

Decoding every step's predicted clean latent with the real decoder costs about half a U-Net step on the
demo (previews then add ~50 % to generation time). Previews need colours and layout, not detail, so
after autoencoder training a network of three convolutions at the latent's resolution and a
pixel shuffle to full resolution (in the spirit of TAESD, Bohan 2023, far smaller) is trained to
reproduce the real decoder's output on latents of the data, mixes of two latents and shrunken latents
(the early steps' predictions are blurry averages, which plain data latents do not cover).

A per-pixel linear latent→RGB map, the usual cheap preview, was fitted first (least squares, then
quadratic features): on the demo's autoencoder it drew red, blue and purple shapes all brown (held-out
RMS error 0.26 on the [-1, 1] scale, against 0.43 for one mean colour), because this autoencoder
encodes colour jointly with its neighbours; hence the tiny network.

Stored beside the autoencoder's weights as a subfolder `preview_decoder/` (`config.json` +
`model.safetensors`): a subfolder, so the autoencoder's weights digest (and every cache keyed by it) is
unchanged, and diffusers' `AutoencoderKL.from_pretrained` ignores it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger("t2i.autoencoder")

PREVIEW_FOLDER = "preview_decoder"  # subfolder of an autoencoder folder (or of a pipeline's vae/)


@dataclass
class PreviewDecoderConfig:
    latent_channels: int = 4  # c, the autoencoder's latent channels
    downsampling_factor: int = 4  # f: one latent pixel becomes f×f image pixels
    width: int = 32  # channels of the two hidden convolutions
    metrics: dict = field(default_factory=dict)  # held-out RMS error against the real decoder (written by the fit)


class PreviewDecoder(nn.Module):
    """Unscaled latents (B, c, h, w) → images (B, 3, f·h, f·w) in about [-1, 1]: two 3×3 convolutions and a
    1×1 convolution at latent resolution, then a pixel shuffle (Shi et al. 2016) to full resolution."""

    def __init__(self, config: PreviewDecoderConfig):
        super().__init__()
        self.config = config
        c, w, f = config.latent_channels, config.width, config.downsampling_factor
        self.net = nn.Sequential(nn.Conv2d(c, w, 3, padding=1), nn.SiLU(), nn.Conv2d(w, w, 3, padding=1), nn.SiLU(),
                                 nn.Conv2d(w, 3 * f * f, 1), nn.PixelShuffle(f))

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        if latents.shape[1] != self.config.latent_channels:
            raise ValueError(f"the preview decoder takes {self.config.latent_channels}-channel latents, "
                             f"got {latents.shape[1]}")
        return self.net(latents)

    def save(self, folder: str | Path) -> Path:
        """Write `folder`/preview_decoder/ (config.json + model.safetensors)."""
        from safetensors.torch import save_file

        folder = Path(folder) / PREVIEW_FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, folder / "model.safetensors")
        (folder / "config.json").write_text(json.dumps(asdict(self.config), indent=2) + "\n")
        return folder


def load_preview_decoder(folder: str | Path) -> PreviewDecoder | None:
    """The preview decoder saved under `folder`/preview_decoder, or None when there is none."""
    from safetensors.torch import load_file

    folder = Path(folder) / PREVIEW_FOLDER
    if not (folder / "model.safetensors").is_file():
        return None
    decoder = PreviewDecoder(PreviewDecoderConfig(**json.loads((folder / "config.json").read_text())))
    # load_state_dict copies into the float32 module built above: a shipped float16 file comes back float32.
    decoder.load_state_dict(load_file(folder / "model.safetensors"))
    return decoder.eval().requires_grad_(False)


@dataclass
class PreviewFitConfig:
    width: int = 32  # hidden channels of the preview decoder
    epochs: int = 20  # passes over the distillation set (3 latents per image: the data's, a mix, a shrunken one)
    batch_size: int = 64  # latents per step
    lr: float = 3e-3  # peak learning rate (cosine decay to 0)
    images: int = 1024  # data images whose latents (and mixes and shrunken copies of them) are distilled on
    held_out: int = 128  # of those, kept out of training to measure the error (at most a quarter of them)
    seed: int = 0  # initialisation, mixes and batch order


@torch.no_grad()
def _distillation_set(vae, images: torch.Tensor, generator: torch.Generator, batch_size: int = 128):
    """Latents (data, mixes of two, shrunken towards 0) and what the real decoder draws from them."""
    z = torch.cat([vae.encode(images[i : i + batch_size]).latent_dist.mean
                   for i in range(0, len(images), batch_size)])  # (N, c, h, w)
    n = len(z)
    lam = torch.rand(n, 1, 1, 1, generator=generator)
    mixes = lam * z + (1 - lam) * z[torch.randperm(n, generator=generator)]
    shrunk = z * torch.rand(n, 1, 1, 1, generator=generator)
    latents = torch.stack([z, mixes, shrunk], 1).flatten(0, 1)  # (3N, c, h, w): a data latent and its variants
    targets = torch.cat([vae.decode(latents[i : i + batch_size]).sample.clamp(-1, 1)
                         for i in range(0, len(latents), batch_size)])  # (3N, 3, H, W)
    return latents, targets


def fit_preview_decoder(vae, images: torch.Tensor, cfg: PreviewFitConfig | None = None) -> PreviewDecoder:
    """Distil the autoencoder's decoder into a `PreviewDecoder` on `images` (N, 3, S, S) in [-1, 1] (the
    first `cfg.images`; the last `cfg.held_out` of them, at most a quarter, with their variants, measure the error)."""
    cfg = cfg or PreviewFitConfig()
    images = images[: cfg.images]
    held_out = min(cfg.held_out, len(images) // 4)  # small datasets keep three quarters for training
    if held_out < 1:
        raise ValueError(f"fitting a preview decoder needs at least 4 images, got {len(images)}")
    generator = torch.Generator().manual_seed(cfg.seed)
    split = len(images) - held_out
    latents, targets = _distillation_set(vae, images[:split], generator)  # (n_train, c, h, w), (n_train, 3, H, W)
    test_latents, test_targets = _distillation_set(vae, images[split:], generator)  # mixes only among held-out
    config = PreviewDecoderConfig(latent_channels=latents.shape[1],
                                  downsampling_factor=2 ** (len(vae.config.block_out_channels) - 1), width=cfg.width)
    return distil_preview_decoder(config, (latents, targets), (test_latents, test_targets), cfg)


def distil_preview_decoder(config: PreviewDecoderConfig, train: tuple[torch.Tensor, torch.Tensor],
                           held_out: tuple[torch.Tensor, torch.Tensor], cfg: PreviewFitConfig) -> PreviewDecoder:
    """Train a `PreviewDecoder` of `config` by MSE on `train` = (latents (n, c, h, w), images (n, 3, H, W)),
    Adam with cosine decay, `cfg.epochs` passes; records its RMS error on `held_out` in `config.metrics`."""
    latents, targets = train
    n_train = len(latents)
    generator = torch.Generator().manual_seed(cfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # nn.Conv2d initialises from the global RNG; keep it contained
        decoder = PreviewDecoder(config)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=cfg.lr)
    steps = max(1, cfg.epochs * n_train // cfg.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in range(steps):
        batch = torch.randint(0, n_train, (cfg.batch_size,), generator=generator)
        loss = F.mse_loss(decoder(latents[batch]), targets[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    decoder.eval().requires_grad_(False)
    with torch.no_grad():
        error = (decoder(held_out[0]) - held_out[1]).pow(2).mean().sqrt().item()
    config.metrics = {"rms_error_held_out": error, "held_out_latents": len(held_out[0]),
                      "train_latents": n_train, "steps": steps}
    log.info("preview decoder: held-out RMS error %.3f against the real decoder", error)
    return decoder


def add_preview_decoder(autoencoder_folder: str | Path, data_dir: str | Path | None = None,
                        cfg: PreviewFitConfig | None = None) -> PreviewDecoder:
    """Fit and save a preview decoder for an autoencoder folder that has none (trained before they existed),
    or refit it. Works on a component folder (data: the one it records) or a pipeline's vae/ (pass data_dir)."""
    from diffusers import AutoencoderKL

    from t2i.components import COMPONENT_FILE
    from t2i.data.sources import ImageRows, open_source

    folder = Path(autoencoder_folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} is not an autoencoder folder (no config.json)")
    if data_dir is None:
        info = folder / COMPONENT_FILE
        data_dir = json.loads(info.read_text()).get("data") if info.is_file() else None
        if not data_dir:
            raise ValueError(f"{folder} records no training data; pass the data folder")
    cfg = cfg or PreviewFitConfig()
    vae = AutoencoderKL.from_pretrained(folder, use_safetensors=True).eval().requires_grad_(False)
    source = open_source(data_dir)
    images = ImageRows(source, int(vae.config.sample_size))[torch.arange(min(cfg.images, len(source)))]
    decoder = fit_preview_decoder(vae, images, cfg)
    decoder.save(folder)
    return decoder
