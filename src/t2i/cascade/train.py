"""`t2i train base` and `t2i train upsampler`: the cascade's two kinds of diffusion model, each on its own.

The base learns to draw small images from text exactly as the latent generator learns latents (same loss,
text caching, caption dropout, EMA, trainer), with pixels in place of latents. An upsampler learns to
enlarge images from (small, large) pairs of any image folder: the large image is denoised while the enlarged
small one, noised to a random augmentation level, is concatenated to x_t and the level is given to the network
(Ho et al. 2022, "Cascaded Diffusion Models", Sec. 3.2; Imagen). A text-conditioned upsampler also gets the
caption, through the base's frozen text encoder and its cached embeddings (Imagen's super-resolution U-Nets
are text-conditioned too); otherwise captions are unused.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from t2i.autoencoder.model import psnr
from t2i.cascade.model import UpsamplerConfig, build_upsampler, check_upsampler_config, pixel_schedule, upsample, \
    upsampler_network
from t2i.cascade.sample import super_resolve
from t2i.data.layout import TRAIN
from t2i.data.sources import ImageRows, open_source
from t2i.training.cache import SHARD_ROWS
from t2i.text.conditioning import caption_embeddings, prepare_text, save_trained, text_encoder_info, trainable
from t2i.diffusion.loss import diffusion_loss
from t2i.diffusion.unet import GeneratorConfig, build_unet
from t2i.sampling import Denoiser, alphas_cumprod, spaced_timesteps
from t2i.text import SCRATCH, TextEncoderConfig, text_width
from t2i.training.batches import sample_rand, sample_randint, sample_randn
from t2i.training.finish import finish_training
from t2i.training.trainer import TrainConfig, process_state, random_batches, resume_point, train

log = logging.getLogger("t2i.cascade")


# -- the base: text → small image ------------------------------------------------------------------------


# The base's sizes: the latent generator's configuration (fields documented there) with the pixel schedule.
BASE_PRESETS = {
    "tiny": lambda: GeneratorConfig(block_out_channels=(16, 32), norm_num_groups=8, schedule=pixel_schedule()),
    "small": lambda: GeneratorConfig(schedule=pixel_schedule()),
    # The 64-px emoji recipe's (recipes/emoji64.sh): the latent generator's medium U-Net on 16×16 pixels.
    "medium": lambda: GeneratorConfig(block_out_channels=(64, 128), norm_num_groups=32, schedule=pixel_schedule()),
    "base": lambda: GeneratorConfig(block_out_channels=(64, 128, 128), attention_levels=(False, True, True),
                                    layers_per_block=2, norm_num_groups=32, schedule=pixel_schedule()),
}


# Captions whose image a mirror would contradict: directions, flags, keycaps, clock faces, letters, text. Their images
# are never flipped by `random_flip` (a crude word test: it errs on the side of not flipping).
MIRROR_WORDS = re.compile(r"\b(left|right|leftwards|rightwards|flag|keycap|clock|o['’]clock|letters?|text)\b",
                          re.IGNORECASE)


def flippable_rows(caption_choices: list[list[str]]) -> torch.Tensor:
    """(N,) bool: whether no caption of the sample names something a horizontal mirror would contradict."""
    return torch.tensor([not any(MIRROR_WORDS.search(c) for c in options) for options in caption_choices],
                        dtype=torch.bool)


@dataclass
class BaseTrainConfig:
    image_size: int = 16  # side of the small images the base learns to draw, in pixels (images are resized to it)
    random_flip: float = 0.0  # probability of mirroring a training image left to right (diffusers' --random_flip),
    # except images whose captions name a direction, flag, keycap, clock, letters or text (MIRROR_WORDS); 0: never
    model: GeneratorConfig = field(default_factory=BASE_PRESETS["small"])
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(steps=1200, batch_size=64, lr=2e-3, warmup_steps=100, ema_decay=0.999)
    )


def base_loss(denoiser: Denoiser, cfg: GeneratorConfig, uncond: torch.Tensor | None,
              text_table: torch.Tensor | None = None, random_flip: float = 0.0):
    """The latent generator's loss on pixels in [−1, 1]; caption dropout swaps in the empty prompt; with
    `random_flip`, rows the batch marks "flippable" are mirrored left to right with that probability."""

    def loss_fn(model: nn.Module, batch: dict, generator: torch.Generator) -> torch.Tensor:
        x0 = batch["pixel_values"]  # (B, 3, h, w)
        if random_flip > 0:  # drawn only when on, so runs without it keep their random stream
            flip = (sample_rand((x0.shape[0],), generator, device=x0.device) < random_flip) & batch["flippable"]
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        drop = sample_rand((x0.shape[0],), generator, device=x0.device) < cfg.caption_dropout  # (B,)
        unet, emb = caption_embeddings(model, batch, drop, text_table, uncond, generator)
        return diffusion_loss(denoiser, x0, lambda x_t, t: unet(x_t, t, encoder_hidden_states=emb).sample, generator,
                              min_snr_gamma=cfg.min_snr_gamma)

    return loss_fn


def train_base(data_dir: str | Path, out_dir: str | Path, cfg: BaseTrainConfig, *, cache_dir: str | Path | None = None,
               command: str | None = None, resume: bool | str | Path = False, reset_data_position: bool = False,
               split: str | None = TRAIN) -> dict:
    """Cache the text embeddings, train the pixel U-Net (and a from-scratch encoder), save the component.

    `data_dir`, `resume`, `reset_data_position`, `split`, multi-process runs and stop signals: as
    `train_generator`.
    """
    out_dir = Path(out_dir)
    resume_point(out_dir / "checkpoints" if cfg.train.checkpoint_every > 0 else None, resume)  # refuse early
    if cfg.model.objective != "diffusion":  # the cascade's samplers and compose know the VP schedule only
        raise ValueError(f"the cascade's base trains with the diffusion objective, not {cfg.model.objective!r}")
    if cfg.image_size % cfg.model.downsampling_factor:  # fail before reading anything
        raise ValueError(f"base image size {cfg.image_size} is not divisible by the U-Net's factor "
                         f"{cfg.model.downsampling_factor}")
    heads = cfg.model.pooled_text_heads
    if heads and (width := text_width(cfg.text)) % heads:  # before anything is written or encoded
        raise ValueError(f"pooled_text_heads {heads} does not divide the text width {width}")
    if not 0 <= cfg.random_flip <= 1:
        raise ValueError(f"random_flip is a probability in [0, 1], got {cfg.random_flip}")
    source = open_source(data_dir, split=split)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(cache_dir) if cache_dir else out_dir / "cache"
    processes = process_state()  # joins the process group under accelerate launch / torchrun (else one process)
    processes_split = dict(rank=processes.process_index, world_size=processes.num_processes,
                           barrier=processes.wait_for_everyone, shard_rows=SHARD_ROWS)
    fingerprint = source.fingerprint()
    text = prepare_text(cfg.text, source.captions, cache_dir=cache_dir, fingerprint=fingerprint,
                        device=processes.device, split=processes_split)
    # Images are decoded per batch, at the base's size, by the same resize that makes an upsampler's inputs.
    tensors = {"pixel_values": ImageRows(source, cfg.image_size), **text.tensors}
    if cfg.random_flip > 0:
        tensors["flippable"] = flippable_rows(source.caption_choices)
        log.info("random flips: %d of %d images may be mirrored", int(tensors["flippable"].sum()), len(source))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)  # diffusers initialises from the global RNG; keep it contained
        unet = build_unet(cfg.model, sample_size=cfg.image_size, latent_channels=3,
                          cross_attention_dim=text.encoder.hidden_size)
    model = trainable(unet, text)
    denoiser = Denoiser(unet, alphas_cumprod(cfg.model.schedule), cfg.model.prediction_type)
    loss_fn = base_loss(denoiser, cfg.model, text.uncond, text.text_table, cfg.random_flip)
    batches = random_batches(tensors, cfg.train.micro_batch_size, seed=cfg.train.seed, names=source.names)
    result = train(model, loss_fn, batches, cfg.train, log_dir=out_dir, desc="base", resume=resume,
                   reset_data_position=reset_data_position, data_fingerprint=fingerprint)

    def save() -> dict:
        final_unet = save_trained(result.ema if result.ema is not None else model, out_dir, text)
        final_unet.save_pretrained(out_dir, safe_serialization=True)
        info = {
            "component": "base",
            "kind": "pixel-diffusion",
            "data_split": split,
            "prediction_type": cfg.model.prediction_type,
            "schedule": asdict(cfg.model.schedule),
            "image_size": cfg.image_size,
            "text_encoder": text_encoder_info(cfg.text, text),
            "data": str(data_dir),
            "data_fingerprint": fingerprint,
            "data_report": source.report.summary(),
            "config": asdict(cfg),
            "command": command,
            "metrics": result.metrics(),
            "losses": result.losses,
        }
        return info

    return finish_training(result, "base", out_dir, save)


# -- an upsampler: small image → large image, with or without the text ------------------------------------


@dataclass
class UpsamplerTrainConfig:
    model: UpsamplerConfig = field(default_factory=UpsamplerConfig)
    text: TextEncoderConfig | None = None  # the frozen text encoder of a text-conditioned upsampler
    # (model.pooled_text_heads > 0): the base's, with its max_length, so a cascade can hand the prompt's embeddings
    # from the base to the upsampler; None: no text
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(steps=800, batch_size=32, lr=2e-3, warmup_steps=50, ema_decay=0.999)
    )
    held_out: int = 128  # images kept out of training to measure PSNR against bicubic enlargement
    eval_steps: int = 20  # sampling steps (DPM-Solver++(2M)) for the held-out PSNR


def upsampler_loss(denoiser: Denoiser, cfg: UpsamplerConfig, text_table: torch.Tensor | None = None,
                   uncond: torch.Tensor | None = None):
    """Denoise the large image given the enlarged small one, noise-augmented to a random level in 0..max; with
    `text_table` (cached caption embeddings) also given the caption, or the empty prompt `uncond` for a share
    `cfg.caption_dropout` of the samples."""

    def loss_fn(unet: nn.Module, batch: dict, generator: torch.Generator) -> torch.Tensor:
        x0, low = batch["pixel_values"], batch["low_res"]  # (B, 3, H, W), (B, 3, h, w)
        level = sample_randint(cfg.max_noise_level + 1, (x0.shape[0],), generator, device=x0.device)  # (B,)
        enlarged = upsample(low, cfg.factor)  # (B, 3, H, W)
        cond = denoiser.add_noise(enlarged, sample_randn(enlarged.shape, generator, device=x0.device), level)
        text = None
        if text_table is not None:  # drawn after the level and noise: an upsampler without text trains as before
            drop = sample_rand((x0.shape[0],), generator, device=x0.device) < cfg.caption_dropout  # (B,)
            text = caption_embeddings(unet, batch, drop, text_table, uncond, generator)[1]  # (B, L, D)
        net = upsampler_network(unet, level, text=text)
        return diffusion_loss(denoiser, x0, lambda x_t, t: net(x_t, t, cond), generator,
                              min_snr_gamma=cfg.min_snr_gamma)

    return loss_fn


def held_out_psnr(unet, cfg: UpsamplerConfig, low: torch.Tensor, high: torch.Tensor, *, steps: int,
                  noise_level: int | None = None, batch_size: int = 64,
                  text: torch.Tensor | None = None) -> tuple[float, float]:
    """(mean PSNR of the upsampler's samples, of bicubic enlargement) against `high`, in dB; image k uses seed k.
    `text` (N, L, D): the captions' embeddings, for a text-conditioned upsampler."""
    ac = alphas_cumprod(cfg.schedule)
    timesteps = spaced_timesteps(cfg.schedule.num_train_timesteps, steps)
    level = cfg.sampling_noise_level if noise_level is None else noise_level
    ours = []
    for i in range(0, len(low), batch_size):
        generators = [torch.Generator().manual_seed(k) for k in range(i, min(i + batch_size, len(low)))]
        ours.append(super_resolve(unet, low[i : i + batch_size], factor=cfg.factor, alphas_cumprod=ac,
                                  prediction_type=cfg.prediction_type, noise_level=level, timesteps=timesteps,
                                  sampler="dpmpp_2m", generators=generators,
                                  text=None if text is None else text[i : i + batch_size]))
    bicubic = upsample(low, cfg.factor)
    return psnr(torch.cat(ours), high).mean().item(), psnr(bicubic, high).mean().item()


def train_upsampler(data_dir: str | Path, out_dir: str | Path, cfg: UpsamplerTrainConfig, *,
                    cache_dir: str | Path | None = None, command: str | None = None, resume: bool | str | Path = False,
                    reset_data_position: bool = False, split: str | None = TRAIN) -> dict:
    """Train on (small, large) pairs of the source's images (and, text-conditioned, their captions), measure
    held-out PSNR against bicubic, save.

    `split`: only that split's rows are read ("train" by default, so held-out concepts stay unseen; the PSNR
    images are the first `held_out` rows of it). `cache_dir`: where caption embeddings are cached (default
    OUT/cache). `data_dir`, `resume`, `reset_data_position`, multi-process runs and stop signals: as
    `train_autoencoder`.
    """
    out_dir = Path(out_dir)
    resume_point(out_dir / "checkpoints" if cfg.train.checkpoint_every > 0 else None, resume)  # refuse early
    check_upsampler_config(cfg.model)  # a bad config fails before any data is read
    m = cfg.model
    if bool(m.pooled_text_heads) != (cfg.text is not None):
        raise ValueError("a text-conditioned upsampler (pooled_text_heads > 0) needs a text encoder (cfg.text)"
                         if cfg.text is None else "a text encoder was given to an upsampler without text "
                         "(pooled_text_heads 0)")
    if cfg.text is not None and cfg.text.source == SCRATCH:
        raise ValueError("an upsampler takes the base's frozen text encoder, not one trained from scratch")
    if cfg.text is not None and (width := text_width(cfg.text)) % m.pooled_text_heads:  # before captions are encoded
        raise ValueError(f"pooled_text_heads {m.pooled_text_heads} must divide the text width {width}")
    source = open_source(data_dir, split=split)
    held = min(cfg.held_out, len(source) // 10)
    # Both sizes come from the source file through one resize (load_image), exactly as the base's training
    # images do: the small images an upsampler is trained on are distributed like those the base draws.
    rows = range(held, len(source))
    pairs = {"pixel_values": ImageRows(source, m.image_size, rows), "low_res": ImageRows(source, m.low_size, rows)}
    out_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = source.fingerprint()
    text = held_text = None
    if cfg.text is not None:  # every caption's embeddings (held-out rows first), cached like the base's
        processes = process_state()
        text = prepare_text(cfg.text, source.captions, cache_dir=Path(cache_dir) if cache_dir else out_dir / "cache",
                            fingerprint=fingerprint, device=processes.device,
                            split=dict(rank=processes.process_index, world_size=processes.num_processes,
                                       barrier=processes.wait_for_everyone, shard_rows=SHARD_ROWS))
        index = text.tensors["caption_index"]
        pairs["caption_index"] = index[held:]
        held_text = text.text_table[index[:held]]  # (held, L, D)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        unet = build_upsampler(m, text_width=text.encoder.hidden_size if text else None)
    denoiser = Denoiser(unet, alphas_cumprod(m.schedule), m.prediction_type)
    batches = random_batches(pairs, cfg.train.micro_batch_size, seed=cfg.train.seed, names=source.names[held:])
    loss_fn = upsampler_loss(denoiser, m, text.text_table if text else None, text.uncond if text else None)
    result = train(unet, loss_fn, batches, cfg.train, log_dir=out_dir, desc="upsampler",
                   resume=resume, reset_data_position=reset_data_position, data_fingerprint=fingerprint)

    def save() -> dict:
        final = (result.ema if result.ema is not None else unet).cpu()  # measured on the CPU, where the images are
        start = time.perf_counter()
        ours, bicubic = None, None
        if held:
            test = torch.arange(held)
            ours, bicubic = held_out_psnr(final, m, ImageRows(source, m.low_size, range(held))[test],
                                          ImageRows(source, m.image_size, range(held))[test], steps=cfg.eval_steps,
                                          text=held_text)
        final.save_pretrained(out_dir, safe_serialization=True)
        info = {
            "component": "upsampler",
            "kind": "super-resolution-diffusion",
            "prediction_type": m.prediction_type,
            "schedule": asdict(m.schedule),
            "low_size": m.low_size,
            "image_size": m.image_size,
            "sampling_noise_level": m.sampling_noise_level,
            "text_encoder": text_encoder_info(cfg.text, text) if text else None,
            "data": str(data_dir),
            "data_split": split,
            "data_fingerprint": fingerprint,
            "data_report": source.report.summary(),
            "config": asdict(cfg),
            "command": command,
            "metrics": {"psnr_held_out": ours, "psnr_bicubic_held_out": bicubic, "held_out_images": held,
                        "eval_steps": cfg.eval_steps, "eval_seconds": time.perf_counter() - start,
                        **result.metrics()},
            "losses": result.losses,
        }
        return info

    return finish_training(result, "upsampler", out_dir, save)
