"""Pieces every subcommand shares: the help formatter, argument types, the training flags.

Nothing here imports torch or diffusers, so `t2i --help` answers at once.
"""

from __future__ import annotations

import argparse


class Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default only when it has one (not "(default: None)" on required flags)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.required:
            return action.help
        return super()._get_help_string(action)


def positive_int(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def fraction(text: str) -> float:
    v = float(text)
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {v}")
    return v


def non_negative_int(text: str) -> int:
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {v}")
    return v


def non_negative_float(text: str) -> float:
    v = float(text)
    if not v >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {v}")
    return v


def add_train_flags(p: argparse.ArgumentParser, *, steps: int, batch_size: int, lr: float, ema: float) -> None:
    """The flags of the shared trainer (t2i.training.trainer.TrainConfig). Defaults are literal here so that
    `--help` imports no torch; tests/test_cli.py checks them against each component's TrainConfig."""
    p.add_argument("--steps", type=positive_int, default=steps, help="optimiser steps")
    p.add_argument("--batch-size", type=positive_int, default=batch_size,
                   help="samples per optimiser step, over all processes (each of N processes takes 1/N of it)")
    p.add_argument("--grad-accum", type=positive_int, default=1,
                   help="split each step's batch into this many forward/backward passes (same result, less memory)")
    p.add_argument("--lr", type=float, default=lr, help="peak learning rate (AdamW, warmup then cosine)")
    p.add_argument("--ema", type=fraction, default=ema, help="EMA decay of the weights (0: off)")
    p.add_argument("--mixed-precision", choices=["no", "bf16", "fp16", "auto"], default="no",
                   help="autocast via accelerate; fp16 adds loss scaling (GPU only); auto: bf16 where the hardware "
                   "computes it natively (a CUDA GPU that supports it, a CPU with AVX512-BF16 or AMX), else no. "
                   "Whether it pays depends on the network: measure (docs/training.md)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--checkpoint-every", type=non_negative_int, default=250,
                   help="steps between checkpoints in OUT/checkpoints (also one at the end, and one on SIGTERM/"
                   "Ctrl-C, after which the run exits cleanly); 0 turns checkpoints and resuming off")
    p.add_argument("--keep-checkpoints", type=positive_int, default=2, help="newest checkpoints kept on disk")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                   help="continue from OUT/checkpoints/latest (or start fresh if there is none yet), or from the "
                   "CHECKPOINT directory given; the result is the same as an uninterrupted run")
    p.add_argument("--stop-at", type=non_negative_int, default=0, metavar="STEP",
                   help="stop after this step with a checkpoint, as SIGTERM would (for jobs with a time limit); "
                   "continue later with --resume. 0: run to --steps")
    p.add_argument("--reset-data-position", action="store_true",
                   help="with --resume: keep the weights and optimiser but restart the data order from its "
                   "beginning (needed after changing the dataset, the batch size or the number of processes)")


def add_split_flag(p: argparse.ArgumentParser) -> None:
    """--split: which rows of an imagefolder a training command reads (see t2i.data.layout.row_split)."""
    p.add_argument("--split", default="train", metavar="NAME",
                   help="train only on the rows of this split: an imagefolder's metadata.jsonl may mark rows with "
                   "a \"split\" field (rows without one are \"train\"; t2i data emoji holds out a fixed tenth as "
                   "\"held_out\"); 'all' reads every row")


def split_arg(args) -> str | None:
    """The split to pass to the library: None for 'all'."""
    return None if args.split == "all" else args.split


def train_config(args, **extra):
    """A TrainConfig from the flags of `add_train_flags`."""
    from t2i.hardware import resolve_precision
    from t2i.training.trainer import TrainConfig

    warmup = min(100, max(1, args.steps // 10))
    return TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=warmup,
                       ema_decay=args.ema, mixed_precision=resolve_precision(args.mixed_precision), seed=args.seed,
                       grad_accum=args.grad_accum, checkpoint_every=args.checkpoint_every,
                       keep_checkpoints=args.keep_checkpoints, stop_at=args.stop_at, **extra)


def report_stop(info: dict, command: str) -> bool:
    """Print how to continue a run stopped by a signal; True if it was stopped."""
    if "stopped" not in info:
        return False
    again = command if "--resume" in command.split() else f"{command} --resume"
    if is_main_process():
        print(f"stopped by {info['stopped']} after step {info['step']}; checkpoint {info['checkpoint']}\n"
              f"to continue: {again}")
    return True


def is_main_process() -> bool:
    """False on ranks > 0 of `accelerate launch` / `torchrun`, which print nothing (rank 0 speaks for all)."""
    import os

    return os.environ.get("RANK", "0") == "0"


def add_speed_flags(p: argparse.ArgumentParser) -> None:
    """How a pipeline runs its networks (t2i.pipeline.speed.SpeedConfig) and how many threads it uses.
    BENCHMARKS.md says what each one measured."""
    g = p.add_argument_group("speed (see BENCHMARKS.md)")
    g.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads for PyTorch (default: PyTorch's choice, one per physical core). Use 1 when "
                   "other busy processes share the cores: competing thread pools stall each other")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the U-Net: each step runs faster once it is compiled (1.45x on the demo), but "
                   "compiling takes minutes on a CPU, again for each new batch shape, so it pays for long runs only")
    g.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="run the U-Nets in bfloat16 autocast (--no-bf16: float32): faster only on CPUs with native "
                   "bfloat16 (AVX512-BF16 or AMX), much slower elsewhere (a warning says so). Default: where it "
                   "measured faster, i.e. a cascade on a CPU with native bfloat16; a latent pipeline only when asked")
    g.add_argument("--full-previews", action="store_true",
                   help="decode per-step previews with the real decoder instead of the tiny preview decoder")


def speed_config(args):
    """Apply --threads (a process-wide setting, so here at the entry point) and return the SpeedConfig."""
    import logging

    import torch

    from t2i.pipeline.speed import SpeedConfig, native_bf16

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.bf16 and not native_bf16():
        logging.getLogger("t2i").warning("this CPU has no native bfloat16 (no avx512_bf16 or amx_bf16 flag): "
                                         "--bf16 will be slower than float32")
    return SpeedConfig(compile=args.compile, bf16=args.bf16, fast_previews=not args.full_previews)
