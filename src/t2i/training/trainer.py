"""One trainer for every component (minGPT's trainer: it knows nothing about the model).

The caller gives a module, a loss function `loss_fn(model, batch, generator) -> scalar`, and an
endless iterator of batches. The trainer owns the optimiser, learning-rate warmup, gradient
accumulation, clipping, EMA, autocast and data parallelism (through accelerate), the logs
(progress bar, CSV, TensorBoard), checkpoints that resume exactly, and the handling of faults:
SIGTERM/SIGINT stop after the current step with a checkpoint; a non-finite loss skips its step;
several in a row roll back to the last checkpoint.

Exact resume rests on three things: every random number comes from state that is checkpointed (the
trainer's generator, the global RNGs, the data order's (seed, epoch, position)); nothing is updated by
a step that is not replayed the same way; and the loss history is saved so the logs match too.
Multi-process runs (`accelerate launch`, `torchrun`) keep `batch_size` global: each of W processes
takes its slice of every global batch (see batches.py), and only rank 0 writes files.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import random
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from t2i.hardware import resolve_precision
from t2i.training.batches import RandomBatches, random_batches  # noqa: F401  (random_batches: re-exported)
from t2i.training.checkpoint import CheckpointError, latest_checkpoint, load_torch_state, save_checkpoint
from t2i.training.faults import StopSignals, TrainingDiverged
from t2i.training.logs import CsvLog, TensorBoard, log_fault

log = logging.getLogger("t2i.training")

# The files of a checkpoint directory (see checkpoint.py for how it is written).
MODEL_FILE = "model.safetensors"  # the trained module's weights
EMA_FILE = "ema.safetensors"  # the EMA copy's weights, when EMA is on
OPTIMIZER_FILE = "optimizer.pt"  # optimiser, LR schedule and loss-scaler state (torch.save; read weights_only)
TENSORS_FILE = "state.safetensors"  # RNG states and the loss history
STATE_FILE = "state.json"  # step, counters, data position, what the run was trained on


@dataclass
class TrainConfig:
    steps: int = 1000  # optimiser steps
    batch_size: int = 64  # samples per optimiser step, over all processes (split over accumulation steps)
    lr: float = 1e-3  # peak learning rate of AdamW
    warmup_steps: int = 100  # linear warmup from 0 to lr, then cosine decay to lr_min_ratio·lr
    lr_min_ratio: float = 0.1  # final learning rate as a fraction of the peak
    weight_decay: float = 0.0  # AdamW weight decay
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    grad_accum: int = 1  # micro-batches per optimiser step
    ema_decay: float = 0.0  # EMA of the weights (0 disables); 0.999 for generators
    ema_warmup: bool = True  # use diffusers' EMA warmup (decay grows with steps), useful for short runs
    mixed_precision: str = "no"  # "no", "bf16", "fp16" (with loss scaling) or "auto" (bf16 where the GPU or CPU
    # computes it natively, else no: t2i.hardware.resolve_precision), handed to accelerate
    seed: int = 0  # seeds the trainer's own generator (noise, timesteps, dropout decisions)
    log_every: int = 25  # steps between CSV log rows
    checkpoint_every: int = 0  # steps between checkpoints in log_dir/checkpoints; 0: no checkpoints, and then
    # SIGTERM/SIGINT are not caught either. With checkpoints, one is also written at the end and on a stop signal
    keep_checkpoints: int = 2  # newest checkpoints kept on disk (older ones are deleted)
    max_nonfinite_in_row: int = 5  # non-finite losses in a row (each step skipped) before rolling back
    max_rollbacks: int = 3  # rollbacks to the last checkpoint before the run stops with TrainingDiverged
    sample_every: int = 0  # steps between calls of the caller's `on_sample` (sample grids); 0: never
    stop_at: int = 0  # stop after this step as a stop signal would (checkpoint, return); 0: run to `steps`.
    # For jobs with a time limit: the run continues later with resume, exactly as if never stopped

    @property
    def micro_batch_size(self) -> int:
        """Samples per forward pass over all processes: what the batch iterator should serve."""
        return self.batch_size // self.grad_accum


@dataclass
class TrainResult:
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)  # mean loss of each logged window
    final_loss: float = float("nan")  # mean loss over the last 10 % of steps
    ema: nn.Module | None = None  # the EMA copy of the model, when ema_decay > 0
    start_step: int = 0  # the step this call resumed from (0: a fresh run)
    last_step: int = 0  # the step this call ended at (cfg.steps, unless stopped early)
    stopped: str | None = None  # the signal that stopped the run early ("SIGTERM", "SIGINT"), else None
    checkpoint: Path | None = None  # the last checkpoint written (None without checkpoints)
    skipped_steps: int = 0  # steps skipped for a non-finite loss
    rollbacks: int = 0  # rollbacks to the last checkpoint
    is_main_process: bool = True  # False on ranks > 0 of a multi-process run: they write nothing

    def metrics(self) -> dict:
        """What every trained component records of its run in its "metrics"."""
        return {"final_loss": self.final_loss, "train_seconds": self.seconds, "skipped_steps": self.skipped_steps,
                "rollbacks": self.rollbacks}


def lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    """Linear warmup, then cosine decay to lr_min_ratio (as a multiplier of cfg.lr)."""

    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return cfg.lr_min_ratio + (1 - cfg.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


def resume_point(checkpoint_dir: str | Path | None, resume: bool | str | Path) -> Path | None:
    """The checkpoint a run starts from: None for a fresh run, `latest` for resume=True (None if there is
    none yet), or the checkpoint directory given. Refuses a fresh start over existing checkpoints."""
    if resume is True:
        return latest_checkpoint(checkpoint_dir) if checkpoint_dir else None
    if resume:
        path = Path(resume)
        if not (path / STATE_FILE).is_file():
            raise CheckpointError(f"{path} is not a checkpoint directory (no {STATE_FILE})")
        return path
    latest = latest_checkpoint(checkpoint_dir) if checkpoint_dir else None
    if latest is not None:
        raise ValueError(f"{checkpoint_dir} already holds checkpoints (latest: {latest.name}); resume them "
                         "(--resume) or write to another folder")
    return None


def launched_on_cpus() -> bool:
    """True under `torchrun`/`accelerate launch` on a machine without accelerators. accelerate then needs
    `cpu=True` to join the process group (gloo); without it every process would train alone."""
    import os

    device_module = getattr(torch, "accelerator", None)  # torch >= 2.6: CUDA, XPU, MPS, ...
    has_accelerator = device_module.is_available() if device_module else torch.cuda.is_available()
    return "LOCAL_RANK" in os.environ and not has_accelerator


def process_state():
    """accelerate's PartialState (rank, number of processes, barriers), joined the way `train` joins it."""
    from accelerate import PartialState

    return PartialState(cpu=launched_on_cpus())


def train(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, dict, torch.Generator], torch.Tensor],
    batches: Iterator[dict],
    cfg: TrainConfig,
    *,
    log_dir: str | Path | None = None,
    desc: str = "train",
    on_log: Callable[[int, float], None] | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool | str | Path = False,
    reset_data_position: bool = False,
    data_fingerprint: str | None = None,
    on_sample: Callable[[int, nn.Module], None] | None = None,
) -> TrainResult:
    """Train `model` in place up to cfg.steps optimiser steps; returns losses, time and the EMA copy.

    Checkpoints (cfg.checkpoint_every > 0) go to `checkpoint_dir` (default log_dir/checkpoints).
    `resume`: True continues from its `latest` (or starts fresh if there is none), a path continues from
    that checkpoint. A resumed run refuses a changed `data_fingerprint`, batch size, accumulation or
    number of processes unless `reset_data_position`, which restarts the data order from its beginning.
    `on_sample(step, module)` is called on rank 0 every cfg.sample_every steps with the EMA copy (or the
    model itself, in training mode: leave it as found). `batches` should be a RandomBatches (resumable,
    shardable); any iterator works for a single-process run without checkpoints.
    """
    ckpt_root = Path(checkpoint_dir) if checkpoint_dir else Path(log_dir) / "checkpoints" if log_dir else None
    _check_config(cfg, batches, ckpt_root)
    if resume is True and cfg.checkpoint_every == 0:
        raise ValueError("resuming needs checkpoints: set checkpoint_every (--checkpoint-every) above 0")
    start_from = resume_point(ckpt_root if cfg.checkpoint_every > 0 else None, resume)
    accelerator = _accelerator(cfg)
    if accelerator.num_processes > 1:
        if not isinstance(batches, RandomBatches):
            raise ValueError(f"training on {accelerator.num_processes} processes needs RandomBatches, which can be "
                             "split across them")
        batches.shard(accelerator.process_index, accelerator.num_processes)

    generator = torch.Generator(device="cpu").manual_seed(cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    # Not handed to accelerate, whose wrapper steps a schedule once per process: ours follows the step count.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    net = model  # what is trained, saved and averaged; `model` becomes the (possibly DDP-wrapped) loss
    model, optimizer = accelerator.prepare(_LossModule(net, loss_fn), optimizer)
    ema = _Ema(net, cfg) if cfg.ema_decay > 0 else None
    run = _RunState(accelerator, net, optimizer, scheduler, ema, generator, batches, cfg, data_fingerprint)
    if start_from is not None:
        run.load(start_from, reset_data_position=reset_data_position)
        log.info("resumed from %s: step %d of %d, %s", start_from, run.step, cfg.steps, run.data_position())
    elif resume:
        log.info("no checkpoint in %s yet: starting from step 0", ckpt_root)
    start_step = run.step

    main = accelerator.is_main_process
    log_dir = Path(log_dir) if log_dir and main else None
    writer = CsvLog(log_dir / "log.csv", resume_step=run.step if start_from else None) if log_dir else None
    board = TensorBoard(log_dir, purge_step=run.step + 1 if start_from else None) if log_dir else None
    result = TrainResult(steps=cfg.steps, seconds=0.0, start_step=start_step, is_main_process=main)
    start = time.perf_counter() - run.seconds
    model.train()
    bar = tqdm(total=cfg.steps, initial=run.step, desc=desc, unit="step", dynamic_ncols=True,
               disable=None if main else True)
    with StopSignals() if ckpt_root and cfg.checkpoint_every > 0 else nullcontext() as signals:
        while run.step < cfg.steps:
            losses, bad = _optimizer_step(accelerator, model, params, optimizer, batches, generator, cfg)
            if bad is not None:
                run.nonfinite_in_row += 1
                result.skipped_steps += 1
                log_fault(log_dir, event="non-finite loss: step skipped, no update", step=run.step + 1,
                          in_a_row=run.nonfinite_in_row, samples=bad)
                if run.nonfinite_in_row >= cfg.max_nonfinite_in_row:
                    _roll_back(run, ckpt_root, log_dir, result)
                    bar.n = run.step
                    continue
            else:
                run.nonfinite_in_row = 0
                run.window.extend(losses)
                if ema is not None:
                    ema.step(net)
            with warnings.catch_warnings():  # torch warns after a skipped first step: no optimiser step yet
                warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler.step\(\)` before")
                scheduler.step()  # the schedule follows the step count, skipped steps included
            run.step += 1
            bar.update(1)
            if run.step % cfg.log_every == 0 or run.step == cfg.steps:
                _log_window(run, scheduler, bar, writer, board, on_log, time.perf_counter() - start)
            if on_sample and cfg.sample_every and run.step % cfg.sample_every == 0 and main:
                on_sample(run.step, ema.model if ema is not None else net)
            if cfg.stop_at and run.step == cfg.stop_at and run.step < cfg.steps and signals is not None:
                signals.received = signals.received or f"stop_at={cfg.stop_at}"
            stop = _any_rank(accelerator, signals is not None and signals.received is not None)
            due = cfg.checkpoint_every > 0 and (run.step % cfg.checkpoint_every == 0 or run.step == cfg.steps)
            if stop or due:
                run.seconds = time.perf_counter() - start
                result.checkpoint = run.save(ckpt_root)
            if stop:
                result.stopped = (signals.received if signals and signals.received else "a signal on another rank")
                log.info("stopped by %s after step %d; checkpoint %s", result.stopped, run.step, result.checkpoint)
                break
    if cfg.checkpoint_every > 0 and result.checkpoint is None and start_from is not None:
        result.checkpoint = start_from  # resumed at the end: nothing left to train
    bar.close()
    model.eval()
    result.seconds = time.perf_counter() - start
    result.losses = list(run.logged)
    tail = run.history[-max(1, len(run.history) // 10) :]
    result.final_loss = sum(tail) / len(tail) if tail else float("nan")
    result.rollbacks = run.rollbacks
    result.last_step = run.step
    result.ema = ema.model if ema is not None else None
    for sink in (writer, board):
        if sink:
            sink.close()
    return result


def _accelerator(cfg: TrainConfig):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import DistributedDataParallelKwargs

    # Unused parameters (e.g. a text encoder's pooler) must not stall DDP's gradient averaging.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    precision = resolve_precision(cfg.mixed_precision)
    if cfg.mixed_precision == "auto":
        log.info("mixed precision auto: %s on this machine", precision)
    # accelerate keeps one mixed-precision setting per process and refuses another: forget it (not the process
    # group) so that a caller may train one component in float32 and the next in bf16 in the same process.
    shared = AcceleratorState._shared_state
    if shared and shared.get("_mixed_precision") not in (None, precision):
        AcceleratorState._reset_state()
    accelerator = Accelerator(mixed_precision=precision, cpu=launched_on_cpus(), kwargs_handlers=[ddp])
    if precision == "fp16" and accelerator.device.type == "cpu":
        log.warning("fp16 autocast needs a GPU: accelerate trains in float32 on the CPU (bf16 works on CPUs)")
    return accelerator


def _check_config(cfg: TrainConfig, batches, ckpt_root: Path | None) -> None:
    if cfg.checkpoint_every > 0 and ckpt_root is None:
        raise ValueError("checkpoints need a checkpoint_dir or a log_dir")
    if cfg.stop_at and cfg.checkpoint_every == 0:
        raise ValueError("stop_at needs checkpoints (checkpoint_every > 0) to resume from")
    if cfg.steps < 1:
        raise ValueError(f"steps must be at least 1, got {cfg.steps}")
    if cfg.batch_size % cfg.grad_accum:
        raise ValueError(f"batch size {cfg.batch_size} is not divisible by grad_accum {cfg.grad_accum}")
    served = getattr(batches, "batch_size", None)
    if cfg.grad_accum > 1 and served is not None and served != cfg.micro_batch_size:
        raise ValueError(f"the batches hold {served} samples, but {cfg.batch_size} per step over {cfg.grad_accum} "
                         f"accumulation steps needs {cfg.micro_batch_size} (use cfg.micro_batch_size)")


def _optimizer_step(accelerator, model, params, optimizer, batches, generator, cfg: TrainConfig):
    """One optimiser step over cfg.grad_accum micro-batches: (per-micro-batch losses averaged over processes,
    None), or (losses, names of the bad batch's samples) when a loss was non-finite on any process, in which
    case no weight, moment or EMA changes. Every process takes the same decision."""
    losses, bad = [], None
    for micro in range(cfg.grad_accum):
        batch = _to_device(next(batches), accelerator.device)
        last = micro == cfg.grad_accum - 1  # gradients are averaged across processes only on the last
        with (nullcontext() if last else accelerator.no_sync(model)), accelerator.autocast():
            loss = model(batch, generator)
            value, finite = _global_mean(accelerator, loss)
            if not finite and bad is None:
                indices = getattr(batches, "last_indices", None)
                bad = batches.describe(indices) if indices is not None else "unknown"
            if bad is None:
                accelerator.backward(loss / cfg.grad_accum if cfg.grad_accum > 1 else loss)
        losses.append(value)
    if bad is None and cfg.grad_clip > 0:
        norm = accelerator.clip_grad_norm_(params, cfg.grad_clip)
        if accelerator.scaler is None and not torch.isfinite(torch.as_tensor(norm)).item():
            bad = f"(gradient norm {float(norm)})"  # fp16's loss scaler handles its own overflows
    if bad is None:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return losses, bad


class _LossModule(nn.Module):
    """The model and its loss as one module, so that DDP sees every forward pass (loss functions call
    methods such as `vae.encode`, or index a ModuleDict, which a DDP wrapper does not pass through)."""

    def __init__(self, model: nn.Module, loss_fn):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, batch: dict, generator: torch.Generator) -> torch.Tensor:
        return self.loss_fn(self.model, batch, generator)


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def _global_mean(accelerator, loss: torch.Tensor) -> tuple[float, bool]:
    """The loss averaged over processes, and whether it was finite on all of them."""
    if accelerator.num_processes == 1:
        value = loss.item()
        return value, math.isfinite(value)
    x = loss.detach().float().reshape(1)
    finite = torch.isfinite(x)
    both = accelerator.reduce(torch.cat([torch.where(finite, x, 0.0), (~finite).float()]), reduction="sum")
    return both[0].item() / accelerator.num_processes, both[1].item() == 0


def _any_rank(accelerator, flag: bool) -> bool:
    if accelerator.num_processes == 1:
        return flag
    return accelerator.reduce(torch.tensor([float(flag)], device=accelerator.device), reduction="sum").item() > 0


def _log_window(run, scheduler, bar, writer, board, on_log, elapsed: float) -> None:
    mean = sum(run.window) / len(run.window) if run.window else float("nan")
    run.history.extend(run.window)
    run.logged.append(mean)
    run.window = []
    lr = scheduler.get_last_lr()[0]
    bar.set_postfix(loss=f"{mean:.4f}", lr=f"{lr:.2e}")
    if writer:
        writer.row(step=run.step, loss=mean, lr=lr, seconds=round(elapsed, 2))
    if board:
        board.scalars(run.step, loss=mean, lr=lr)
    if on_log:
        on_log(run.step, mean)


def _roll_back(run, ckpt_root: Path | None, log_dir: Path | None, result: TrainResult) -> None:
    """Back to the last checkpoint's weights and optimiser; the data and the noise move on (a replay of the
    same batches would likely diverge again). Raises TrainingDiverged past cfg.max_rollbacks."""
    cfg = run.cfg
    latest = latest_checkpoint(ckpt_root) if ckpt_root and cfg.checkpoint_every > 0 else None
    where = f"at step {run.step + 1}: {run.nonfinite_in_row} non-finite losses in a row"
    if latest is None:
        raise TrainingDiverged(f"training diverged {where} and there is no checkpoint to roll back to; "
                               "lower the learning rate, or turn checkpoints on")
    if run.rollbacks >= cfg.max_rollbacks:
        raise TrainingDiverged(f"training diverged {where}, after {run.rollbacks} rollbacks to {latest}; "
                               "lower the learning rate or check the data")
    run.load(latest, restore_data=False, restore_rng=False)
    run.rollbacks += 1
    run.nonfinite_in_row = 0
    log_fault(log_dir, event="rolled back", to=str(latest), step=run.step, rollback=run.rollbacks)


class _RunState:
    """Everything a checkpoint holds, and how it is written and read back."""

    def __init__(self, accelerator, net, optimizer, scheduler, ema, generator, batches, cfg, data_fingerprint):
        self.accelerator, self.net, self.optimizer, self.scheduler = accelerator, net, optimizer, scheduler
        self.ema, self.generator, self.batches, self.cfg = ema, generator, batches, cfg
        self.data_fingerprint = data_fingerprint
        self.step = 0
        self.seconds = 0.0  # training time before this process (resumed runs)
        self.window: list[float] = []  # micro-batch losses since the last log row
        self.history: list[float] = []  # every logged micro-batch loss (for final_loss)
        self.logged: list[float] = []  # the mean of each log window
        self.nonfinite_in_row = 0
        self.rollbacks = 0

    def identity(self) -> dict:
        """What a resumed run must share with the saved one for its data position to mean the same."""
        return {"data_fingerprint": self.data_fingerprint, "batch_size": self.cfg.batch_size,
                "grad_accum": self.cfg.grad_accum, "world_size": self.accelerator.num_processes}

    def data_position(self) -> str:
        state = self.batches.state_dict() if isinstance(self.batches, RandomBatches) else None
        return f"data epoch {state['epoch']}, batch {state['position']}" if state else "data position not tracked"

    def save(self, root: Path) -> Path | None:
        """Rank 0 writes the checkpoint; every rank waits for it and gets its path."""
        acc = self.accelerator
        path = None
        if acc.is_main_process:
            path = save_checkpoint(root, self.step, self._writers(), keep=self.cfg.keep_checkpoints)
        acc.wait_for_everyone()
        return path if path is not None else latest_checkpoint(root)

    def _writers(self) -> dict:
        from safetensors.torch import save_file, save_model

        tensors = {"torch_rng": torch.get_rng_state(), "trainer_rng": self.generator.get_state(),
                   "numpy_rng_keys": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
                   "loss_history": torch.tensor(self.history, dtype=torch.float64),
                   "loss_window": torch.tensor(self.window, dtype=torch.float64),
                   "loss_logged": torch.tensor(self.logged, dtype=torch.float64)}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            tensors.update({f"cuda_rng_{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
        _, _, pos, has_gauss, cached = np.random.get_state()
        version, mt, gauss = random.getstate()
        scaler = self.accelerator.scaler
        state = {
            "format": 1, "step": self.step, "seconds": self.seconds, "ema_steps": self.ema.count if self.ema else None,
            "nonfinite_in_row": self.nonfinite_in_row, "rollbacks": self.rollbacks,
            "data": self.batches.state_dict() if isinstance(self.batches, RandomBatches) else None,
            **self.identity(),
            "python_rng": [version, list(mt), gauss], "numpy_rng": [int(pos), int(has_gauss), float(cached)],
            "config": asdict(self.cfg),
        }
        writers = {MODEL_FILE: lambda p: save_model(self.net, str(p))}
        if self.ema is not None:
            writers[EMA_FILE] = lambda p: save_model(self.ema.model, str(p))
        writers[OPTIMIZER_FILE] = lambda p: torch.save(
            {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
             "scaler": scaler.state_dict() if scaler is not None else None}, p)
        writers[TENSORS_FILE] = lambda p: save_file({k: v.contiguous() for k, v in tensors.items()}, str(p))
        writers[STATE_FILE] = lambda p: p.write_text(json.dumps(state, indent=1) + "\n")
        return writers

    def load(self, path: Path, *, reset_data_position: bool = False, restore_data: bool = True,
             restore_rng: bool = True) -> None:
        """Restore from checkpoint `path`; every rank reads the same files."""
        from safetensors.torch import load_file, load_model

        try:
            state = json.loads((path / STATE_FILE).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"cannot read {path / STATE_FILE}: {e}") from None
        changed = [f"{k} {state.get(k)} → {v}" for k, v in self.identity().items() if state.get(k) != v]
        if restore_data and changed and not reset_data_position:
            raise ValueError(f"cannot resume from {path}: {'; '.join(changed)}. The saved data position means "
                             "nothing for this run; resume with --reset-data-position to keep the weights and "
                             "optimiser and restart the data from its beginning")
        _load_weights(load_model, self.net, path / MODEL_FILE)
        if self.ema is not None:
            _load_weights(load_model, self.ema.model, path / EMA_FILE)
            self.ema.count = state["ema_steps"] or 0
        trained = load_torch_state(path / OPTIMIZER_FILE)
        self.optimizer.load_state_dict(trained["optimizer"])
        self.scheduler.load_state_dict(trained["scheduler"])
        if self.accelerator.scaler is not None and trained.get("scaler"):
            self.accelerator.scaler.load_state_dict(trained["scaler"])
        self.step = int(state["step"])
        if not restore_data:
            return  # a rollback: weights and optimiser only; the data, the noise and the counters move on
        self.nonfinite_in_row, self.rollbacks = state["nonfinite_in_row"], state["rollbacks"]
        tensors = load_file(path / TENSORS_FILE)
        self.seconds = float(state["seconds"])
        self.history = tensors["loss_history"].tolist()
        self.window = tensors["loss_window"].tolist()
        self.logged = tensors["loss_logged"].tolist()
        if isinstance(self.batches, RandomBatches) and state["data"] and not reset_data_position:
            self.batches.load_state_dict(state["data"])
        if restore_rng:
            torch.set_rng_state(tensors["torch_rng"])
            self.generator.set_state(tensors["trainer_rng"])
            cuda = [tensors[k] for k in sorted(tensors) if k.startswith("cuda_rng_")]
            if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(cuda)
            pos, has_gauss, cached = state["numpy_rng"]
            keys = tensors["numpy_rng_keys"].numpy().astype(np.uint32)
            np.random.set_state(("MT19937", keys, pos, has_gauss, cached))
            version, mt, gauss = state["python_rng"]
            random.setstate((version, tuple(mt), gauss))


def _load_weights(load_model, module: nn.Module, path: Path) -> None:
    try:
        load_model(module, str(path), strict=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except Exception as e:  # safetensors raises its own error types for a file that is not safetensors
        raise CheckpointError(f"cannot load weights from {path}: {str(e).splitlines()[0]}") from None


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
