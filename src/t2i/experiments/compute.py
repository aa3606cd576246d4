"""What one training step of a U-Net costs, to give U-Nets of different sizes the same compute.

Two measures, both of the generator's step alone (latents and text embeddings are cached, so the frozen
encoders cost nothing per step):

- **CPU time** (`cpu_time`, the default; the issue's "equal wall-clock"): process CPU time per step
  (`time.process_time`, all of the process's threads) at the thread count the experiment runs with. On a
  machine shared with other jobs wall-clock time is meaningless, CPU time much less so. Measured once, in
  one process, the U-Nets interleaved so that they share whatever load there is, and saved, so a resumed
  experiment keeps the same step counts.
- **FLOPs** (`flops`): the forward and backward pass counted by PyTorch's `FlopCounterMode` (matmuls,
  convolutions, attention; not norms or element-wise ops). Exact and the same on every machine, but at this
  scale small U-Nets are bound by per-operation overhead, not arithmetic, so equal FLOPs hand them more
  time than equal CPU time does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from t2i.diffusion.unet import GeneratorConfig, build_unet

COMPUTE_MEASURES = ("cpu_time", "flops")


@dataclass
class StepShape:
    batch_size: int  # samples per forward pass (the trainer's micro-batch)
    latent_channels: int  # the autoencoder's latent channels
    latent_size: int  # latent side (image side / autoencoder factor)
    text_length: int  # tokens per prompt
    text_width: int  # the text encoder's hidden size (the U-Net's cross-attention width)


def _unet_and_inputs(cfg: GeneratorConfig, shape: StepShape, seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = build_unet(cfg, sample_size=shape.latent_size, latent_channels=shape.latent_channels,
                          cross_attention_dim=shape.text_width)
    g = torch.Generator().manual_seed(seed)
    b = shape.batch_size
    x = torch.randn(b, shape.latent_channels, shape.latent_size, shape.latent_size, generator=g)  # (B, c, h, w)
    t = torch.randint(0, 1000, (b,), generator=g)
    text = torch.randn(b, shape.text_length, shape.text_width, generator=g)  # (B, L, D)
    return unet, (x, t, text)


def _step(unet, optimizer, inputs) -> None:
    x, t, text = inputs
    optimizer.zero_grad(set_to_none=True)
    unet(x, t, encoder_hidden_states=text).sample.float().pow(2).mean().backward()
    optimizer.step()


def step_flops(cfg: GeneratorConfig, shape: StepShape) -> int:
    """FLOPs of one forward + backward pass of the U-Net on one micro-batch."""
    from torch.utils.flop_counter import FlopCounterMode

    unet, (x, t, text) = _unet_and_inputs(cfg, shape, seed=0)
    with FlopCounterMode(display=False) as counter:
        unet(x, t, encoder_hidden_states=text).sample.float().pow(2).mean().backward()
    return int(counter.get_total_flops())


def step_cpu_seconds(configs: list[GeneratorConfig], shape: StepShape, *, steps: int = 5, rounds: int = 3,
                     warmup: int = 2) -> list[float]:
    """Process CPU seconds per training step (forward, backward, AdamW) of each U-Net, interleaved over
    `rounds`; the fastest round counts (other processes can only add to it)."""
    models = [_unet_and_inputs(cfg, shape, seed=0) for cfg in configs]
    optimizers = [torch.optim.AdamW(unet.parameters(), lr=1e-4) for unet, _ in models]
    for (unet, inputs), opt in zip(models, optimizers):
        for _ in range(warmup):
            _step(unet, opt, inputs)
    best = [float("inf")] * len(configs)
    for _ in range(rounds):
        for i, ((unet, inputs), opt) in enumerate(zip(models, optimizers)):
            start = time.process_time()
            for _ in range(steps):
                _step(unet, opt, inputs)
            best[i] = min(best[i], (time.process_time() - start) / steps)
    return best


def parameter_count(cfg: GeneratorConfig, shape: StepShape) -> int:
    unet, _ = _unet_and_inputs(cfg, shape, seed=0)
    return sum(p.numel() for p in unet.parameters())


def equal_compute_steps(reference_steps: int, reference_cost: float, cost: float) -> int:
    """Steps that cost what `reference_steps` steps of the reference U-Net cost (at least 1)."""
    return max(1, round(reference_steps * reference_cost / cost))
