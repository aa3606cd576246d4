"""`t2i train generator`: a noise predictor on cached autoencoder latents, conditioned on text embeddings.

The training loss (Ho et al. 2020; v-target of Salimans & Ho 2022) in one place: sample a latent from
the cached posterior, scale it, noise it at a random step t, and regress the network output onto the
parameterisation's target. Caption dropout replaces the text with the empty prompt's embedding.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from t2i.autoencoder.model import downsampling_factor
from t2i.components import read_component_info, weights_digest
from t2i.data.layout import TRAIN
from t2i.data.sources import ImageRows, open_source
from t2i.training.cache import SHARD_ROWS, latent_rows, sharded_cache
from t2i.text.conditioning import caption_embeddings, prepare_text, save_trained, text_encoder_info, trainable
from t2i.diffusion import repa
from t2i.diffusion.loss import diffusion_loss, flow_loss
from t2i.diffusion.transformer import build_transformer, kept_patches, patch_loss_mask, patch_masking
from t2i.diffusion.unet import GeneratorConfig, build_unet, check_objective
from t2i.images import grid
from t2i.latent.pipeline import LatentPipeline
from t2i.sampling import Denoiser, FlowDenoiser, alphas_cumprod, diffusers_scheduler_config, flow_scheduler_config
from t2i.text import SCRATCH, TextEncoderConfig
from t2i.training.batches import sample_rand, sample_randn
from t2i.training.finish import finish_training
from t2i.training.trainer import TrainConfig, process_state, random_batches, resume_point, train

log = logging.getLogger("t2i.latent")

GRID_STEPS = 20  # sampler steps of the sample grids drawn during training (DPM-Solver++(2M); flow Euler for flow)
GRID_GUIDANCE = 2.0  # classifier-free guidance scale of the grids


@dataclass
class GeneratorTrainConfig:
    model: GeneratorConfig = field(default_factory=GeneratorConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(steps=1500, batch_size=64, lr=2e-3, warmup_steps=100, ema_decay=0.999)
    )
    cache_shard_rows: int = SHARD_ROWS  # samples (or distinct captions) per cache shard file: the unit of work
    # split across processes and of what a resumed cache computation reuses
    eval_every: int = 0  # steps between FID / CLIP-score checks on the current (not EMA) weights; 0: off
    eval_images: int = 100  # generated images per check (at least 50; small-N FIDs compare only with each other)
    eval_clip: str | None = None  # CLIPModel folder for the checks (t2i train clip); required when eval_every > 0
    # REPA (t2i.diffusion.repa): weight λ of the alignment loss (0: off). On by default since it reached the former
    # recipe's final colour accuracy on shapes in 0.75× its steps, ~0.8× its CPU time (BENCHMARKS.md, time to target)
    repa_weight: float = 0.5
    repa_target: str = repa.AUTOENCODER  # the frozen encoder aligned to: "autoencoder" or a CLIP model folder


def generator_loss(denoiser: Denoiser | FlowDenoiser, cfg: GeneratorConfig, scaling_factor: float,
                   uncond: torch.Tensor, text_table=None, *, repa_weight: float = 0.0):
    """The diffusion (for a FlowDenoiser, rectified-flow) loss on latents sampled from the cached posterior. With
    `text_table` (rows indexed by caption) the text is cached; without, the model holds a trainable encoder. Noise,
    timesteps, dropout and, for an image with several captions, which one, are drawn per sample (`sample_randn`...),
    so a multi-process run draws for each sample what a single process would. With `repa_weight` > 0, plus that
    times REPA's alignment loss against the batch's "repa_target" (the generator then carries a projector)."""

    def loss_fn(model: nn.Module, batch: dict, generator: torch.Generator) -> torch.Tensor:
        mean, std = batch["latent_mean"], batch["latent_std"]
        b, device = mean.shape[0], mean.device
        x0 = (mean + std * sample_randn(mean.shape, generator, device=device)) * scaling_factor  # (B, c, h, w)
        drop = sample_rand((b,), generator, device=device) < cfg.caption_dropout  # (B,)
        unet, emb = caption_embeddings(model, batch, drop, text_table, uncond, generator)
        network = _unwrapped(unet)
        # timestep by name: the U-Net takes it second, the transformer third
        predict = lambda x_t, t: unet(x_t, timestep=t, encoder_hidden_states=emb).sample  # noqa: E731
        keep = mask = None
        with ExitStack() as stack:
            if cfg.patch_mask_ratio > 0:  # deferred patch masking: the blocks after the mixer see the kept patches
                keep = kept_patches(network, b, cfg.patch_mask_ratio, generator, device=device)
                mask = patch_loss_mask(network, keep)
                stack.enter_context(patch_masking(network, keep, cfg.patch_mixer_layers))
            if repa_weight <= 0:
                return denoising(denoiser, x0, predict, generator, mask)
            layer = repa.aligned_layer(network)
            seen = stack.enter_context(repa.capture(layer))
            loss = denoising(denoiser, x0, predict, generator, mask)
        masked = keep is not None and _block_index(network, layer) >= cfg.patch_mixer_layers
        return loss + repa_weight * repa.alignment_loss(getattr(network, repa.PROJECTOR), seen["hidden"],
                                                        batch["repa_target"].to(device), keep if masked else None)

    def denoising(denoiser, x0, predict, generator, mask) -> torch.Tensor:
        if isinstance(denoiser, FlowDenoiser):
            return flow_loss(denoiser, x0, predict, generator, logit_mean=cfg.flow_logit_mean,
                             logit_std=cfg.flow_logit_std, mask=mask)
        return diffusion_loss(denoiser, x0, predict, generator, min_snr_gamma=cfg.min_snr_gamma, mask=mask)

    return loss_fn


def _block_index(network: nn.Module, layer: nn.Module) -> int:
    """Which transformer block `layer` is (-1 for a layer that is none, such as a U-Net's middle block)."""
    blocks = list(getattr(network, "transformer_blocks", None) or [])
    return next((i for i, block in enumerate(blocks) if block is layer), -1)


def _unwrapped(module: nn.Module) -> nn.Module:
    """The network inside a DistributedDataParallel or torch.compile wrapper (itself if none)."""
    while True:
        inner = getattr(module, "module", None) or getattr(module, "_orig_mod", None)
        if inner is None:
            return module
        module = inner


def train_generator(data_dir: str | Path, autoencoder_dir: str | Path, out_dir: str | Path,
                    cfg: GeneratorTrainConfig, *, cache_dir: str | Path | None = None,
                    command: str | None = None, resume: bool | str | Path = False,
                    reset_data_position: bool = False, split: str | None = TRAIN,
                    make_evaluator: Callable[[int, Path], Callable] | None = None) -> dict:
    """Cache latents and text embeddings, train the U-Net or transformer (cfg.model.backbone; and a from-scratch
    encoder), save the component.

    `data_dir`: any source `open_source` reads (imagefolder, WebDataset shards, a `datasets` folder);
    `split`: only the rows of that split are trained on ("train" by default: rows marked "held_out" never
    are; None: all rows). Images with several captions (metadata "captions") are trained on one drawn
    at random each time; a from-scratch text encoder (tokens, not a cache) uses the first caption only.
    `resume`/`reset_data_position`: see `t2i.training.trainer.train` (checkpoints need
    cfg.train.checkpoint_every > 0). Under `accelerate launch`/`torchrun`, the caches are computed by all
    processes in parallel and only rank 0 writes the component. A run stopped by SIGTERM/SIGINT returns
    {"stopped": ...} with the checkpoint to resume from, and writes no component. With cfg.eval_every > 0,
    `make_evaluator(image_size, cache_dir)` builds the check run every cfg.eval_every steps as
    `check(step, make_pipeline)` (t2i.evaluation.during_training.periodic_evaluator); training imports no
    evaluation code itself.
    """
    from diffusers import AutoencoderKL

    out_dir = Path(out_dir)
    start = resume_point(out_dir / "checkpoints" if cfg.train.checkpoint_every > 0 else None, resume)  # refuse early
    _check_repa_matches(start, cfg.repa_weight)
    if cfg.eval_every > 0 and not cfg.eval_clip:  # before anything is written
        raise ValueError("FID during training needs a CLIP folder (--eval-clip; make one with t2i train clip)")
    if cfg.eval_every > 0 and make_evaluator is None:
        raise ValueError("FID during training needs make_evaluator= (t2i.evaluation.during_training."
                         "periodic_evaluator builds one from the config)")
    check_objective(cfg.model)  # before anything is read or cached
    ae_info = read_component_info(autoencoder_dir, "autoencoder")
    vae = AutoencoderKL.from_pretrained(autoencoder_dir, use_safetensors=True).eval().requires_grad_(False)
    scaling_factor = float(vae.config.scaling_factor)
    image_size = int(ae_info["image_size"])
    f = downsampling_factor(vae)
    latent_size = image_size // f
    if latent_size % cfg.model.downsampling_factor:  # fail before caching anything
        raise ValueError(f"{image_size} px images give {latent_size}×{latent_size} latents, not divisible by the "
                         f"{'transformer' if cfg.model.backbone == 'transformer' else 'U-Net'}'s factor "
                         f"{cfg.model.downsampling_factor}")
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(cache_dir) if cache_dir else out_dir / "cache"

    processes = process_state()  # joins the process group under accelerate launch / torchrun (else one process)
    processes_split = dict(rank=processes.process_index, world_size=processes.num_processes,
                           barrier=processes.wait_for_everyone, shard_rows=cfg.cache_shard_rows)
    vae.to(processes.device)  # the frozen encoders run where training will (a GPU if there is one)
    source = open_source(data_dir, split=split)
    captions = source.captions
    choices = source.caption_choices
    several = not cfg.text.source == SCRATCH and any(len(c) > 1 for c in choices)
    fingerprint = source.fingerprint()
    vae_digest = weights_digest(autoencoder_dir)
    latents = sharded_cache(cache_dir, "latents", {"data": fingerprint, "vae": vae_digest, "size": image_size},
                            len(source), latent_rows(vae, ImageRows(source, image_size)), **processes_split)

    text = prepare_text(cfg.text, captions, cache_dir=cache_dir, fingerprint=fingerprint, device=processes.device,
                        split=processes_split, choices=choices)
    tensors = {**latents, **text.tensors}

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)  # diffusers initialises from the global RNG; keep it contained
        unet = build_generator(cfg.model, sample_size=latent_size, latent_channels=latents["latent_mean"].shape[1],
                               cross_attention_dim=text.encoder.hidden_size)
    if cfg.repa_weight > 0:
        tensors.update(_attach_repa(unet, cfg, vae, source, image_size, latent_size, text, cache_dir,
                                    fingerprint, vae_digest, processes_split))
    model = trainable(unet, text)
    denoiser = make_denoiser(unet, cfg.model)
    loss_fn = generator_loss(denoiser, cfg.model, scaling_factor, text.uncond, text.text_table,
                             repa_weight=cfg.repa_weight)
    batches = random_batches(tensors, cfg.train.micro_batch_size, seed=cfg.train.seed, names=source.names)
    prompts = sorted(set(captions))[:4]
    on_sample = sample_grid_hook(out_dir / "samples", vae, cfg.model, prompts, text.encoder, text.scratch)
    # FID checks on rank 0 only, each on a CPU snapshot of the current weights
    evaluator = make_evaluator(image_size, cache_dir) if cfg.eval_every > 0 and processes.is_main_process else None

    def on_log(step: int, loss: float) -> None:
        evaluator(step, lambda: snapshot_pipeline(model, text.encoder, text.scratch, vae, cfg.model))

    result = train(model, loss_fn, batches, cfg.train, log_dir=out_dir, desc="generator", resume=resume,
                   reset_data_position=reset_data_position, data_fingerprint=fingerprint, on_sample=on_sample,
                   on_log=on_log if evaluator is not None else None)

    def save() -> dict:
        final_unet = save_trained(result.ema if result.ema is not None else model, out_dir, text)
        if hasattr(final_unet, repa.PROJECTOR):  # training-only: the saved generator is a plain diffusers model
            delattr(final_unet, repa.PROJECTOR)
        final_unet.save_pretrained(out_dir, safe_serialization=True)
        info = {
            "component": "generator",
            "kind": "latent-diffusion",
            "objective": cfg.model.objective,
            "backbone": cfg.model.backbone,  # "unet" or "transformer"; its config.json's _class_name says the same
            "prediction_type": cfg.model.prediction_type if cfg.model.objective == "diffusion" else "flow",
            "schedule": asdict(cfg.model.schedule),
            "image_size": image_size,
            "latent_size": latent_size,
            "text_encoder": text_encoder_info(cfg.text, text),
            "autoencoder": {
                "folder": str(autoencoder_dir),
                "weights_digest": vae_digest,
                "latent_scaling_factor": scaling_factor,
                "downsampling_factor": f,
            },
            "data": str(data_dir),
            "data_split": split,
            "data_fingerprint": fingerprint,
            "data_report": source.report.summary(),
            "captions_per_image": "all (one drawn per step)" if several else "first",
            "config": asdict(cfg),
            "command": command,
            "metrics": result.metrics(),
            "losses": result.losses,
        }
        if evaluator is not None:
            info["eval_during_training"] = evaluator.rows
        return info

    return finish_training(result, "generator", out_dir, save)


def _check_repa_matches(checkpoint: Path | None, repa_weight: float) -> None:
    """Refuse to resume a checkpoint with REPA on when it was written with REPA off, or the other way round."""
    from safetensors import safe_open

    from t2i.training.trainer import MODEL_FILE

    if checkpoint is None or not (checkpoint / MODEL_FILE).is_file():
        return
    with safe_open(checkpoint / MODEL_FILE, "pt") as f:
        had = any(repa.PROJECTOR in k for k in f.keys())
    if had != (repa_weight > 0):
        raise ValueError(f"{checkpoint} was written with REPA {'on' if had else 'off'}; resume it with "
                         f"{'--repa-weight > 0 (as it was trained)' if had else '--repa-weight 0'}")


def _attach_repa(unet, cfg: GeneratorTrainConfig, vae, source, image_size: int, latent_size: int, text,
                 cache_dir: Path, fingerprint: str, vae_digest: str, split: dict) -> dict:
    """REPA's targets, cached once per image at the aligned layer's grid, and its projector, attached to the
    generator (so that the optimiser, EMA and checkpoints hold it); returns {"repa_target": rows}."""
    features = repa.FrozenFeatures(cfg.repa_target, vae)
    latent_channels = vae.config.latent_channels
    dummy = dict(timestep=torch.zeros(1), encoder_hidden_states=torch.zeros(1, text.encoder.max_length,
                                                                          text.encoder.hidden_size))
    channels, grid = repa.layer_shape(unet, torch.zeros(1, latent_channels, latent_size, latent_size), **dummy)
    images = ImageRows(source, image_size)
    target_dim = features(images[torch.arange(1)]).shape[1]
    digest = vae_digest if cfg.repa_target == repa.AUTOENCODER else weights_digest(cfg.repa_target)
    rows = sharded_cache(cache_dir, "repa", {"data": fingerprint, "target": features.name, "weights": digest,
                                             "size": image_size, "grid": grid}, len(source),
                         repa.target_rows(features, images, grid), **split)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed + 1)
        unet.add_module(repa.PROJECTOR, repa.make_projector(channels, target_dim))
    log.info("REPA: aligning the %s-channel %d×%d layer to %s (%d features), weight %g", channels, grid, grid,
             features.name, target_dim, cfg.repa_weight)
    return rows


def build_generator(cfg: GeneratorConfig, *, sample_size: int, latent_channels: int, cross_attention_dim: int):
    """The network cfg.backbone names: the U-Net (UNet2DConditionModel) or the transformer (PixArtTransformer2DModel);
    either is called as net(x_t, timestep=t, encoder_hidden_states=text)."""
    build = build_transformer if cfg.backbone == "transformer" else build_unet
    return build(cfg, sample_size=sample_size, latent_channels=latent_channels, cross_attention_dim=cross_attention_dim)


def make_denoiser(unet, cfg: GeneratorConfig) -> Denoiser | FlowDenoiser:
    """The parameterisation the generator trains under: VP diffusion with cfg.prediction_type, or flow."""
    if cfg.objective == "flow":
        return FlowDenoiser(unet)
    return Denoiser(unet, alphas_cumprod(cfg.schedule), cfg.prediction_type)


def scheduler_config(cfg: GeneratorConfig) -> dict:
    """The diffusers scheduler config a pipeline of this generator runs with (what LatentPipeline reads the
    objective from): DDIM-family keys on the VP schedule, or FlowMatchEulerDiscreteScheduler's for flow."""
    if cfg.objective == "flow":
        return flow_scheduler_config()
    return diffusers_scheduler_config(cfg.schedule, cfg.prediction_type)


def snapshot_pipeline(model: nn.Module, text_encoder, scratch: bool, vae, cfg: GeneratorConfig) -> LatentPipeline:
    """A pipeline of the current weights: CPU copies, since the pipeline freezes what it is given and samples on
    the CPU, while training goes on with the originals. `model` is the U-Net, or {"unet", "text_encoder"} when
    the encoder trains from scratch (then `text_encoder` is ignored)."""
    unet = model["unet"] if scratch else model
    encoder = model["text_encoder"] if scratch else text_encoder
    return LatentPipeline(copy.deepcopy(encoder).cpu(), copy.deepcopy(unet).cpu(), copy.deepcopy(vae).cpu(),
                          scheduler_config(cfg), {})


def sample_grid_hook(folder: Path, vae, cfg: GeneratorConfig, prompts: list[str], text_encoder, scratch: bool):
    """`on_sample(step, module)` for the trainer: writes FOLDER/step-NNNNNNNNN.png, one image per prompt (seeds
    0, 1, ...), drawn by the variant's own pipeline from the module it is given (the EMA copy when there is one)."""

    def on_sample(step: int, module: nn.Module) -> None:
        pipe = snapshot_pipeline(module, text_encoder, scratch, vae, cfg)
        images = pipe(prompts, steps=GRID_STEPS, guidance=GRID_GUIDANCE, seed=0)  # the objective's default sampler
        folder.mkdir(parents=True, exist_ok=True)
        grid(images, scale=2).save(folder / f"step-{step:09d}.png")

    return on_sample
