"""One trainer for every component (minGPT's trainer: it knows nothing about the model).

The caller gives a module, a loss function `loss_fn(model, batch, generator) -> scalar`, and an
endless iterator of batches. The trainer owns the optimiser, learning-rate warmup, gradient
accumulation, clipping, EMA, autocast (chosen once, through accelerate), the CSV log and the
progress bar.
"""

from __future__ import annotations

import copy
import csv
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm


@dataclass
class TrainConfig:
    steps: int = 1000  # optimiser steps
    batch_size: int = 64  # samples per optimiser step (split over accumulation steps)
    lr: float = 1e-3  # peak learning rate of AdamW
    warmup_steps: int = 100  # linear warmup from 0 to lr, then cosine decay to lr_min_ratio·lr
    lr_min_ratio: float = 0.1  # final learning rate as a fraction of the peak
    weight_decay: float = 0.0  # AdamW weight decay
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    grad_accum: int = 1  # micro-batches per optimiser step
    ema_decay: float = 0.0  # EMA of the weights (0 disables); 0.999 for generators
    ema_warmup: bool = True  # use diffusers' EMA warmup (decay grows with steps), useful for short runs
    mixed_precision: str = "no"  # "no", "bf16" or "fp16", handed to accelerate
    seed: int = 0  # seeds the trainer's own generator (noise, timesteps, dropout decisions)
    log_every: int = 25  # steps between CSV log rows


@dataclass
class TrainResult:
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)  # mean loss of each logged window
    final_loss: float = float("nan")  # mean loss over the last 10 % of steps
    ema: nn.Module | None = None  # the EMA copy of the model, when ema_decay > 0


def lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    """Linear warmup, then cosine decay to lr_min_ratio (as a multiplier of cfg.lr)."""

    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return cfg.lr_min_ratio + (1 - cfg.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


def train(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, dict, torch.Generator], torch.Tensor],
    batches: Iterator[dict],
    cfg: TrainConfig,
    *,
    log_dir: str | Path | None = None,
    desc: str = "train",
    on_log: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train `model` in place for cfg.steps optimiser steps; returns losses, time and the EMA copy."""
    from accelerate import Accelerator

    if cfg.steps < 1:
        raise ValueError(f"steps must be at least 1, got {cfg.steps}")
    if cfg.batch_size % cfg.grad_accum:
        raise ValueError(f"batch size {cfg.batch_size} is not divisible by grad_accum {cfg.grad_accum}")
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum)
    generator = torch.Generator(device="cpu").manual_seed(cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    ema = _Ema(accelerator.unwrap_model(model), cfg) if cfg.ema_decay > 0 else None

    writer = _CsvLog(Path(log_dir) / "log.csv") if log_dir else None
    result = TrainResult(steps=cfg.steps, seconds=0.0)
    window: list[float] = []
    all_losses: list[float] = []
    start = time.perf_counter()
    model.train()
    bar = tqdm(range(cfg.steps), desc=desc, unit="step", dynamic_ncols=True, disable=None)
    for step in bar:
        for _ in range(cfg.grad_accum):
            batch = next(batches)
            with accelerator.accumulate(model), accelerator.autocast():
                loss = loss_fn(model, batch, generator)
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.grad_clip > 0:
                    accelerator.clip_grad_norm_(params, cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            window.append(loss.item())
        if ema is not None:
            ema.step(accelerator.unwrap_model(model))
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            mean = sum(window) / len(window)
            all_losses.extend(window)
            result.losses.append(mean)
            elapsed = time.perf_counter() - start
            bar.set_postfix(loss=f"{mean:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            if writer:
                writer.row(step=step + 1, loss=mean, lr=scheduler.get_last_lr()[0], seconds=round(elapsed, 2))
            if on_log:
                on_log(step + 1, mean)
            window = []
    bar.close()
    model.eval()
    result.seconds = time.perf_counter() - start
    tail = all_losses[-max(1, len(all_losses) // 10) :]
    result.final_loss = sum(tail) / len(tail)
    result.ema = ema.model if ema is not None else None
    if writer:
        writer.close()
    return result


class _Ema:
    """Exponential moving average of the weights (with diffusers' warmup: decay = 1 - (1+t)^-2/3 ramps up)."""

    def __init__(self, model: nn.Module, cfg: TrainConfig):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = cfg.ema_decay
        self.warmup = cfg.ema_warmup
        self.count = 0

    @torch.no_grad()
    def step(self, model: nn.Module) -> None:
        self.count += 1
        decay = min(self.decay, 1 - (1 + self.count) ** (-2 / 3)) if self.warmup else self.decay
        for e, p in zip(self.model.parameters(), model.parameters()):
            e.lerp_(p.detach().to(e.dtype), 1 - decay)
        for e, b in zip(self.model.buffers(), model.buffers()):
            e.copy_(b)


class _CsvLog:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "w", newline="")
        self.writer: csv.DictWriter | None = None

    def row(self, **values) -> None:
        if self.writer is None:
            self.writer = csv.DictWriter(self.file, fieldnames=list(values))
            self.writer.writeheader()
        self.writer.writerow(values)
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def random_batches(tensors: dict[str, torch.Tensor], batch_size: int, *, seed: int) -> Iterator[dict]:
    """Endless random batches (without replacement within an epoch) from in-memory tensors of equal length."""
    n = len(next(iter(tensors.values())))
    if any(len(t) != n for t in tensors.values()):
        raise ValueError("all tensors of a dataset must have the same length")
    if n == 0:
        raise ValueError("cannot train on an empty dataset")
    generator = torch.Generator().manual_seed(seed)
    last_start = max(1, n - batch_size + 1)  # drop the ragged tail; a set smaller than a batch is one batch
    while True:
        order = torch.randperm(n, generator=generator)
        for i in range(0, last_start, batch_size):
            idx = order[i : i + batch_size]
            yield {k: t[idx] for k, t in tensors.items()}

