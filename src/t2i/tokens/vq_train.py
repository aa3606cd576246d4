"""`t2i train vq`: the VQ autoencoder on images alone, with dead codes re-initialised from the encoder's outputs.

The loss (van den Oord et al. 2017, Eq. 3): reconstruction + codebook term ‖sg[z] − e‖² + β·commitment
‖z − sg[e]‖², with the straight-through gradient through the quantiser. A code that no encoder output
chose for `reinit_every` steps is dead: it is moved onto a random encoder output of the current batch
(the restart of Dhariwal et al. 2020, "Jukebox", Sec. 2.2; Williams et al. 2020). At step 0 every code is
dead, so the codebook starts on the data rather than on its near-zero initialisation.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from t2i.autoencoder.model import psnr
from t2i.components import write_component_info
from t2i.data import dataset_fingerprint, load_tensors, scan_folder
from t2i.tokens.vq import VQConfig, build_vq, codebook_usage, decode_indices, encode_indices, nearest_codes
from t2i.training.trainer import TrainConfig, random_batches, train

log = logging.getLogger("t2i.tokens")


@dataclass
class VQTrainConfig:
    model: VQConfig = field(default_factory=VQConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=800, batch_size=16, lr=2e-3, warmup_steps=50))
    commitment: float = 0.25  # β, weight of the commitment term (van den Oord et al. 2017 use 0.25)
    reinit_every: int = 50  # steps between dead-code checks; a code unused over that window is re-initialised
    # (0 disables re-initialisation, including the data-dependent start)
    held_out: int = 256  # images kept out of training to measure reconstruction PSNR and code usage


class DeadCodeRestarts:
    """Counts which codes the encoder chose since the last check; re-initialises the unused ones."""

    def __init__(self, codebook_size: int, every: int):
        self.every = every
        self.hits = torch.zeros(codebook_size, dtype=torch.long)
        self.calls = 0
        self.restarted = 0  # codes re-initialised over the run (the data-dependent start included)

    @torch.no_grad()
    def __call__(self, codebook: torch.Tensor, z: torch.Tensor, generator: torch.Generator) -> None:
        """Before a step: move dead codes of `codebook` (K, d) onto random rows of the batch's outputs z (M, d)."""
        if self.every and self.calls % self.every == 0:
            dead = (self.hits == 0).nonzero().flatten()
            if len(dead):
                pick = torch.randint(0, len(z), (len(dead),), generator=generator)
                # A little noise, so that two codes restarted on the same output do not stay identical.
                jitter = 0.01 * z.std() * torch.randn(len(dead), z.shape[1], generator=generator)
                codebook[dead] = (z[pick].float() + jitter).to(codebook.dtype)
                self.restarted += len(dead)
            self.hits.zero_()
        self.calls += 1

    def count(self, indices: torch.Tensor) -> None:
        self.hits += torch.bincount(indices.flatten().cpu(), minlength=len(self.hits))


def vq_loss(commitment: float, restarts: DeadCodeRestarts | None):
    """The VQ-VAE loss with dead-code restarts, as `loss_fn(model, batch, generator)` for the shared trainer."""

    def loss_fn(vq, batch, generator):
        x = batch["pixel_values"]
        net = getattr(vq, "module", vq)  # the bare model under DDP
        z = net.encode(x).latents.permute(0, 2, 3, 1)  # (B, h, w, d)
        codebook = net.quantize.embedding.weight  # (K, d)
        if restarts is not None:
            restarts(codebook.data, z.detach().reshape(-1, z.shape[-1]), generator)
        idx = nearest_codes(z.detach().float(), codebook.detach().float())  # (B, h, w)
        e = net.quantize.embedding(idx)  # (B, h, w, d)
        if restarts is not None:
            restarts.count(idx)
        z_q = z + (e - z).detach()  # straight-through: the decoder's gradient reaches the encoder
        recon = net.decode(z_q.permute(0, 3, 1, 2), force_not_quantize=True).sample
        return (F.mse_loss(recon, x) + F.mse_loss(e, z.detach())
                + commitment * F.mse_loss(z, e.detach()))

    return loss_fn


def train_vq(data_dir: str | Path, out_dir: str | Path, cfg: VQTrainConfig, *, command: str | None = None) -> dict:
    """Train the VQ autoencoder, measure held-out PSNR and codebook usage, and save the component folder."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)  # diffusers initialises from the global RNG; keep it contained
        vq = build_vq(cfg.model)  # first: a bad config fails before any data is read
    records, report = scan_folder(data_dir)
    images = load_tensors(records, cfg.model.image_size)
    held = min(cfg.held_out, len(images) // 10)
    train_images, test_images = images[held:], images[:held]
    batches = random_batches({"pixel_values": train_images}, cfg.train.batch_size, seed=cfg.train.seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    restarts = DeadCodeRestarts(cfg.model.codebook_size, cfg.reinit_every) if cfg.reinit_every else None
    result = train(vq, vq_loss(cfg.commitment, restarts), batches, cfg.train, log_dir=out_dir, desc="vq")
    vq.eval()

    train_grids = encode_indices(vq, train_images[:2048])
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
        "data_fingerprint": dataset_fingerprint(data_dir),
        "data_report": report.summary(),
        "config": asdict(cfg),
        "command": command,
        "metrics": {
            "psnr_held_out": held_out_psnr,
            "held_out_images": held,
            "codebook_usage_train": usage_train,
            "codebook_usage_held_out": usage_test,
            "codes_restarted": restarts.restarted if restarts else 0,
            "final_loss": result.final_loss,
            "train_seconds": result.seconds,
        },
        "losses": result.losses,
    }
    write_component_info(out_dir, info)
    return info
