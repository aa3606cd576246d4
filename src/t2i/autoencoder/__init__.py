"""Component 3, the decoder: a KL autoencoder trained on images alone."""

from t2i.autoencoder.model import (
    AUTOENCODER_PRESETS,
    AutoencoderConfig,
    build_autoencoder,
    downsampling_factor,
    measure_scaling_factor,
    normalise_latent_channels,
    psnr,
)
from t2i.autoencoder.train import AutoencoderTrainConfig, train_autoencoder

__all__ = [
    "AUTOENCODER_PRESETS",
    "AutoencoderConfig",
    "AutoencoderTrainConfig",
    "build_autoencoder",
    "downsampling_factor",
    "measure_scaling_factor",
    "normalise_latent_channels",
    "psnr",
    "train_autoencoder",
]
