"""Experiment sizes: `full` (the demo's recipe, two seeds; about two hours per experiment on 2 idle CPU cores),
`quick` (half the training, small samples, one seed: a look in tens of minutes), `tiny` (seconds, for CI: exercises
every stage, measures nothing); on shapes. `corpus` (both experiments, two seeds, within 3 hours on 2 idle CPU
cores: see `_corpus`) and `corpus-tiny` (its `tiny`): on the multi-style emoji corpus at 32 px, trained on its
training split, evaluated on its held-out concept families, with held-out words.

The generator recipe is the demo's (`GeneratorConfig()` and `GeneratorTrainConfig()` defaults, whatever they are
on this version), so the experiments follow it when it changes; each experiment changes one thing in it.
"""

from __future__ import annotations

from dataclasses import replace

from t2i.autoencoder import AUTOENCODER_PRESETS, AutoencoderTrainConfig
from t2i.data import EmojiSetsConfig, ShapesConfig
from t2i.data.families import HELD_OUT
from t2i.evaluation.clip import CLIP_PRESETS, ClipTrainConfig
from t2i.evaluation.evaluate import EvalConfig
from t2i.evaluation.shapes_classifier import ShapesClassifierConfig, ShapesClassifierTrainConfig
from t2i.experiments.runner import ExperimentConfig, SharedConfig
from t2i.diffusion.unet import GENERATOR_PRESETS
from t2i.latent.train import GeneratorTrainConfig
from t2i.text import MPNET, TextEncoderConfig
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


# The `corpus` preset's budget: ≤ 3 h on 2 idle cores, counted as 3 h of ONE thread (10,800 CPU s), so the
# second core (--threads 2) is margin, not plan. Per-step CPU seconds at 1 thread, measured with
# benchmarks/corpus_experiment_cost.py (3 steps, fastest of 2, nice 19 on a machine whose 2 cores were busy with
# another training run, so if anything too high): U-Net train step, batch 64, 8×8×4 latents, 20 tokens:
# (32, 64) 0.166 s (mpnet's 768-wide cross-attention 0.165, scratch 0.146 + its encoder's ~0.03),
# (64, 128) 0.431 s (2.6×), (128, 256) 1.310 s (7.9×); one sampling step of 64 images with guidance (128 rows):
# 0.091 / 0.229 / 0.726 s, so an image at 20 steps ≈ 0.028 / 0.072 / 0.227 s, counted as 0.035 / 0.085 / 0.24 s
# with decoding and CLIP features (not measured);
# autoencoder (medium) step, batch 32: 0.465 s; CLIP (small) step, batch 128: 0.302 s; encoding one caption:
# MiniLM 4.1 ms, mpnet 27 ms.
#   shared, once:  data 240 s (the 64-px build took 206 s) + autoencoder 600 × 0.465 = 280 s + CLIP 1,000 × 0.302
#                  = 300 s + latents 40 s + features of all 17.9k images 30 s + text caches of ~27k distinct
#                  training captions: MiniLM 110 s, 3 layers 60 s, random MiniLM 110 s × 2 seeds, mpnet 730 s
#                  ≈ 2,010 s
#   train, per seed (S steps): text encoders S × (0.18 + 4 × 0.166) = 0.84 S; U-Nets beyond the shared
#                  (32, 64) run: equal steps S × (0.431 + 1.310), equal compute 2 × 0.166 S = 2.07 S; both seeds
#                  5.82 S; the trainer's own work per step (EMA, batches) is not in it: the shapes runs took
#                  1.05–1.7× the bare step (docs/experiments.md), so count 1.2 × 5.82 S ≈ 7 S
#   evaluate, per run: 4 guidance scales × 200 images + 582 recognition prompts × 1 image = 1,382 images:
#                  (32, 64) 48 s (mpnet 86 s), (64, 128) 117 s, (128, 256) 332 s; per seed 4 × 48 + 86 +
#                  2 × (117 + 332) = 1,176 s; both seeds 2,350 s; loading and composing 18 runs ≈ 180 s
#   total: 2,010 + 2,350 + 180 + 7 S ≤ 10,800 → S ≤ 894; S = 800: ≈ 10,140 CPU s ≈ 2.8 h of one thread
#                  (9,200 s without the trainer's overhead), leaving the second core and ~6 % as margin.
# Measured (one run of both experiments, --threads 2, an otherwise idle Intel Xeon): 11,730 CPU s (both threads)
# in 1 h 43 min of wall time (docs/experiments.md).
CORPUS_STEPS = 800
CORPUS_SIZE = 32


def _corpus() -> ExperimentConfig:
    """The emoji corpus (t2i data emoji-sets) at 32 px: the demo's U-Net and recipe at 800 steps, the emoji
    recipe's autoencoder; trained on the training split, evaluated on the held-out concept families."""
    generator = GeneratorTrainConfig(model=GENERATOR_PRESETS["small"](), text=TextEncoderConfig(max_length=20))
    generator.train = _with_checkpoints(replace(generator.train, steps=CORPUS_STEPS))
    return ExperimentConfig(
        shared=SharedConfig(
            data=EmojiSetsConfig(size=CORPUS_SIZE),
            autoencoder=AutoencoderTrainConfig(
                model=AUTOENCODER_PRESETS["medium"](CORPUS_SIZE),
                train=_with_checkpoints(TrainConfig(steps=600, batch_size=32, lr=2e-3, warmup_steps=50))),
            clip=ClipTrainConfig(model=CLIP_PRESETS["small"](CORPUS_SIZE),
                                 train=_with_checkpoints(ClipTrainConfig().train, 250)),
            classifier=ShapesClassifierTrainConfig()),  # unused: emoji have no shapes attributes
        generator=generator,
        # n_real: every held-out image (~1,570); the FID of 200 generated images is biased upwards: compare it only
        # within this preset
        eval=EvalConfig(n=200, n_real=10000, guidance=(1.0, 2.0, 3.0, 5.0), compositional_images=0, split=HELD_OUT),
        headline_guidance=3.0, synonym_images=0, recognition_images=1, sampling_steps=20, seeds=(0, 1))


def _corpus_tiny() -> ExperimentConfig:
    """The corpus preset's stages for a few steps at 16 px, on a corpus given with --data: for tests."""
    cfg = _tiny()
    cfg.shared.data = EmojiSetsConfig(size=16, limit=20)
    cfg.eval = replace(cfg.eval, n=50, n_real=1000, compositional_images=0, split=HELD_OUT)
    cfg.synonym_images, cfg.recognition_images = 0, 1
    return cfg


EXPERIMENT_PRESETS = {"full": _full, "quick": _quick, "tiny": _tiny, "corpus": _corpus, "corpus-tiny": _corpus_tiny}

# U-Net widths (channels per level) from small to large for `t2i experiment unet-sizes`, per preset; the
# reference for equal compute is the recipe's own U-Net (the preset's generator config).
UNET_LADDERS = {
    "full": ((16, 32), (32, 64), (64, 128)),
    "quick": ((16, 32), (32, 64), (64, 128)),
    "tiny": ((8, 16), (16, 32)),
    # The recipe's (32, 64) to ~8× its CPU time per step: 1 : 2.6 : 7.9 measured (see the budget above).
    "corpus": ((32, 64), (64, 128), (128, 256)),
    "corpus-tiny": ((8, 16), (16, 32)),
}

# How `t2i experiment unet-sizes` sets each U-Net's learning rate, per preset (unet_sizes.LR_SCALINGS): "none"
# keeps the recipe's for every width (the shapes results in docs/experiments.md were measured so); "width" divides
# it by how much wider the U-Net is than the recipe's, since at the recipe's 2e-3 the corpus preset's (128, 256)
# U-Net diverged on both seeds.
LR_SCALING = {"full": "none", "quick": "none", "tiny": "none", "corpus": "width", "corpus-tiny": "width"}

# MiniLM truncations (layers kept, of 6) that `t2i experiment text-encoders` compares besides all 6, per preset.
TRUNCATIONS = {"full": (1, 2, 3), "quick": (1, 2, 3), "tiny": (1, 2, 3), "corpus": (3,), "corpus-tiny": (1,)}

# Larger encoders a preset compares when they are installed (name → TextEncoderConfig source); one that is not
# is left out with a logged note. mpnet is opt-in (make mpnet); the tiny preset leaves it out to stay fast.
OPTIONAL_ENCODERS = {"corpus": {"mpnet": MPNET}}
