"""Component 2, the generator: a text-conditioned latent diffusion U-Net."""

from t2i.generator.model import GENERATOR_PRESETS, GeneratorConfig, build_unet
from t2i.generator.train import GeneratorTrainConfig, generator_loss, train_generator

__all__ = ["GENERATOR_PRESETS", "GeneratorConfig", "GeneratorTrainConfig", "build_unet", "generator_loss",
           "train_generator"]
