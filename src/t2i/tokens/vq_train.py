"""`t2i train vq`: the VQ autoencoder on images alone, with dead codes re-initialised from the encoder's outputs.

The loss (van den Oord et al. 2017, Eq. 3): reconstruction + codebook term ‖sg[z] − e‖² + β·commitment
‖z − sg[e]‖², with the straight-through gradient through the quantiser. A code that no encoder output
chose for `reinit_every` forward passes is dead: it is moved onto a random encoder output of the current batch
(the restart of Dhariwal et al. 2020, "Jukebox", Sec. 2.2; Williams et al. 2020). At step 0 every code is
dead, so the codebook starts on the data rather than on its near-zero initialisation.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from t2i.autoencoder.model import psnr
from t2i.data.sources import held_out_split, open_source
from t2i.tokens.vq import VQConfig, build_vq, codebook_usage, decode_indices, encode_indices, nearest_codes
from t2i.training.finish import finish_training
from t2i.training.trainer import TrainConfig, process_state, random_batches, resume_point, train

log = logging.getLogger("t2i.tokens")


@dataclass
class VQTrainConfig:
    model: VQConfig = field(default_factory=VQConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=800, batch_size=16, lr=2e-3, warmup_steps=50))
    commitment: float = 0.25  # β, weight of the commitment term (van den Oord et al. 2017 use 0.25)
    reinit_every: int = 50  # forward passes (steps × grad_accum) between dead-code checks; a code unused over
    # that window is re-initialised (0 disables re-initialisation, including the data-dependent start)
    held_out: int = 256  # images kept out of training to measure reconstruction PSNR and code usage


class VQTrainee(nn.Module):
    """The VQModel being trained, with the dead-code bookkeeping as buffers, so that checkpoints hold it and a
    resumed run restarts exactly the codes an uninterrupted one would."""

    def __init__(self, vq, reinit_every: int):
        super().__init__()
        self.vq = vq
        self.reinit_every = reinit_every
        self.register_buffer("code_hits", torch.zeros(vq.config.num_vq_embeddings, dtype=torch.long))  # since the last check
        self.register_buffer("forward_passes", torch.zeros((), dtype=torch.long))
        self.register_buffer("codes_restarted", torch.zeros((), dtype=torch.long))  # over the run, the start included

    @torch.no_grad()
    def restart_dead_codes(self, z: torch.Tensor, generator: torch.Generator) -> None:
        """Before a forward pass: move dead codes onto random rows of the batch's encoder outputs z (M, d)."""
        if self.reinit_every and int(self.forward_passes) % self.reinit_every == 0:
            codebook = self.vq.quantize.embedding.weight.data  # (K, d)
            dead = (self.code_hits == 0).nonzero().flatten()
            if len(dead):
                pick = torch.randint(0, len(z), (len(dead),), generator=generator)
                # A little noise, so that two codes restarted on the same output do not stay identical.
                jitter = 0.01 * z.float().std() * torch.randn(len(dead), z.shape[1], generator=generator)
                codebook[dead.to(codebook.device)] = (z[pick.to(z.device)].float() + jitter.to(z.device)).to(codebook.dtype)
                self.codes_restarted += len(dead)
            self.code_hits.zero_()
        self.forward_passes += 1


def vq_loss(commitment: float):
    """The VQ-VAE loss with dead-code restarts, as `loss_fn(model, batch, generator)` for the shared trainer
    (`model` is a VQTrainee)."""

    def loss_fn(trainee, batch, generator):
        x = batch["pixel_values"]
        vq = trainee.vq
        z = vq.encode(x).latents.permute(0, 2, 3, 1)  # (B, h, w, d)
        trainee.restart_dead_codes(z.detach().reshape(-1, z.shape[-1]), generator)
        codebook = vq.quantize.embedding.weight  # (K, d)
        idx = nearest_codes(z.detach().float(), codebook.detach().float())  # (B, h, w)
        e = vq.quantize.embedding(idx)  # (B, h, w, d)
        trainee.code_hits += torch.bincount(idx.flatten(), minlength=len(trainee.code_hits))
        z_q = z + (e - z).detach()  # straight-through: the decoder's gradient reaches the encoder
        recon = vq.decode(z_q.permute(0, 3, 1, 2), force_not_quantize=True).sample
        return (F.mse_loss(recon, x) + F.mse_loss(e, z.detach())
                + commitment * F.mse_loss(z, e.detach()))

    return loss_fn


def train_vq(data_dir: str | Path, out_dir: str | Path, cfg: VQTrainConfig, *, command: str | None = None,
             resume: bool | str | Path = False, reset_data_position: bool = False) -> dict:
    """Train the VQ autoencoder, measure held-out PSNR and codebook usage, and save the component folder.

    `data_dir`: any source `open_source` reads. `resume`/`reset_data_position`: see `t2i.training.trainer.train`.
    A run stopped by SIGTERM/SIGINT returns {"stopped": ...} and the checkpoint to resume from, and writes no
    component. Dead-code restarts read one process's batch, so they need a single process.
    """
    out_dir = Path(out_dir)
    resume_point(out_dir / "checkpoints" if cfg.train.checkpoint_every > 0 else None, resume)  # refuse early
    if cfg.reinit_every < 0:
        raise ValueError(f"reinit_every must be ≥ 0, got {cfg.reinit_every}")
    if cfg.reinit_every and process_state().num_processes > 1:
        raise ValueError("dead-code restarts read one process's batch, so ranks would restart different codes; "
                         "train the VQ in one process, or with --reinit-every 0")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)  # diffusers initialises from the global RNG; keep it contained
        vq = build_vq(cfg.model)  # first: a bad config fails before any data is read
    source = open_source(data_dir)
    train_images, test_images, names = held_out_split(source, cfg.model.image_size, cfg.held_out)
    held = len(test_images)
    batches = random_batches({"pixel_values": train_images}, cfg.train.micro_batch_size, seed=cfg.train.seed,
                             names=names)
    out_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = source.fingerprint()
    trainee = VQTrainee(vq, cfg.reinit_every)
    result = train(trainee, vq_loss(cfg.commitment), batches, cfg.train, log_dir=out_dir, desc="vq", resume=resume,
                   reset_data_position=reset_data_position, data_fingerprint=fingerprint)

    def save() -> dict:
        vq.cpu().eval()  # measurements below run on the CPU, where the images are
        train_grids = encode_indices(vq, train_images[torch.arange(min(2048, len(train_images)))])
        usage_train = codebook_usage(train_grids, cfg.model.codebook_size)
        # The code that fills the not-yet-written part of the grid in previews: the most frequent one (on shapes,
        # the background), so a partial image looks like an unfinished drawing rather than noise.
        fill_code = int(torch.bincount(train_grids.flatten(), minlength=cfg.model.codebook_size).argmax())
        if held:
            test_grids = encode_indices(vq, test_images)
            recon = torch.cat([decode_indices(vq, test_grids[i : i + 128]) for i in range(0, held, 128)])
            held_out_psnr = psnr(recon, test_images).mean().item()
            usage_test = codebook_usage(test_grids, cfg.model.codebook_size)
        else:
            held_out_psnr, usage_test = float("nan"), None
        vq.save_pretrained(out_dir, safe_serialization=True)
        info = {
            "component": "vq",
            "kind": "vq",
            "image_size": cfg.model.image_size,
            "downsampling_factor": cfg.model.downsampling_factor,
            "grid_size": cfg.model.grid_size,
            "codebook_size": cfg.model.codebook_size,
            "fill_code": fill_code,
            "data": str(data_dir),
            "data_fingerprint": fingerprint,
            "data_report": source.report.summary(),
            "config": asdict(cfg),
            "command": command,
            "metrics": {
                "psnr_held_out": held_out_psnr,
                "held_out_images": held,
                "codebook_usage_train": usage_train,
                "codebook_usage_held_out": usage_test,
                "codes_restarted": int(trainee.codes_restarted),
                **result.metrics(),
            },
            "losses": result.losses,
        }
        return info

    return finish_training(result, "vq", out_dir, save)
