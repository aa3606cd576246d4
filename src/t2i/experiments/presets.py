"""Experiment sizes: `full` (the demo's recipe, two seeds; about two hours per experiment on 2 idle CPU cores),
`quick` (half the training, small samples, one seed: a look in tens of minutes), `tiny` (seconds, for CI: exercises
every stage, measures nothing).

The generator recipe is the demo's (`GeneratorConfig()` and `GeneratorTrainConfig()` defaults, whatever they are
on this version), so the experiments follow it when it changes; each experiment changes one thing in it.
"""

from __future__ import annotations

from dataclasses import replace

from t2i.autoencoder import AUTOENCODER_PRESETS, AutoencoderTrainConfig
from t2i.data import ShapesConfig
from t2i.evaluation.clip import CLIP_PRESETS, ClipTrainConfig
from t2i.evaluation.evaluate import EvalConfig
from t2i.evaluation.shapes_classifier import ShapesClassifierConfig, ShapesClassifierTrainConfig
from t2i.experiments.runner import ExperimentConfig, SharedConfig
from t2i.diffusion.unet import GENERATOR_PRESETS
from t2i.latent.train import GeneratorTrainConfig
from t2i.text import TextEncoderConfig
from t2i.training.trainer import TrainConfig

CHECKPOINT_EVERY = 200  # generator steps between checkpoints (an interrupted run loses at most this many)


def _with_checkpoints(train: TrainConfig, every: int = CHECKPOINT_EVERY) -> TrainConfig:
    return replace(train, checkpoint_every=every, keep_checkpoints=1)


def _full() -> ExperimentConfig:
    generator = GeneratorTrainConfig(model=GENERATOR_PRESETS["small"](), text=TextEncoderConfig(max_length=16))
    generator.train = _with_checkpoints(generator.train)
    return ExperimentConfig(
        shared=SharedConfig(
            data=ShapesConfig(n=4000, size=32, seed=0),
            autoencoder=AutoencoderTrainConfig(train=_with_checkpoints(AutoencoderTrainConfig().train)),
            clip=ClipTrainConfig(model=CLIP_PRESETS["small"](32),
                                 train=_with_checkpoints(ClipTrainConfig().train, 250)),
            classifier=ShapesClassifierTrainConfig(train=_with_checkpoints(ShapesClassifierTrainConfig().train, 250))),
        generator=generator,
        eval=EvalConfig(n=500, n_real=4000, guidance=(1.0, 2.0, 3.0, 5.0), compositional_images=4),
        headline_guidance=3.0, synonym_images=4, sampling_steps=20, seeds=(0, 1))


def _quick() -> ExperimentConfig:
    """The full preset's data and autoencoder; half the generator steps, lighter evaluators, smaller samples."""
    cfg = _full()
    cfg.shared.clip.train = replace(cfg.shared.clip.train, steps=500)
    cfg.shared.classifier = replace(cfg.shared.classifier, n_train=8000,
                                    train=replace(cfg.shared.classifier.train, steps=1000))
    cfg.generator.train = replace(cfg.generator.train, steps=600, warmup_steps=50)
    cfg.eval = replace(cfg.eval, n=200, compositional_images=2)
    cfg.seeds = (0,)
    return cfg


def _tiny() -> ExperimentConfig:
    """Every stage for a few steps at 16 px: for tests; the numbers mean nothing."""
    return ExperimentConfig(
        shared=SharedConfig(
            data=ShapesConfig(n=96, size=16, seed=0),
            autoencoder=AutoencoderTrainConfig(
                model=AUTOENCODER_PRESETS["tiny"](16),
                train=TrainConfig(steps=8, batch_size=16, lr=2e-3, warmup_steps=2), held_out=16),
            clip=ClipTrainConfig(model=CLIP_PRESETS["tiny"](16),
                                 train=TrainConfig(steps=20, batch_size=32, lr=2e-3, warmup_steps=2), held_out=16),
            classifier=ShapesClassifierTrainConfig(
                model=ShapesClassifierConfig(image_size=16, channels=(8, 16), hidden=32), n_train=256, n_test=64,
                train=TrainConfig(steps=20, batch_size=64, lr=2e-3, warmup_steps=2))),
        generator=GeneratorTrainConfig(
            model=GENERATOR_PRESETS["tiny"](), text=TextEncoderConfig(max_length=16),
            train=TrainConfig(steps=4, batch_size=16, lr=1e-3, warmup_steps=1, ema_decay=0.9, checkpoint_every=2,
                              keep_checkpoints=1)),
        eval=EvalConfig(n=50, n_real=96, guidance=(1.0, 3.0), compositional_images=1, batch_size=128),
        headline_guidance=3.0, synonym_images=1, sampling_steps=2, seeds=(0,))


EXPERIMENT_PRESETS = {"full": _full, "quick": _quick, "tiny": _tiny}

# U-Net widths (channels per level) from small to large for `t2i experiment unet-sizes`, per preset; the
# reference for equal compute is the recipe's own U-Net (the preset's generator config).
UNET_LADDERS = {
    "full": ((16, 32), (32, 64), (64, 128)),
    "quick": ((16, 32), (32, 64), (64, 128)),
    "tiny": ((8, 16), (16, 32)),
}
