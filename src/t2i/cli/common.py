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


def add_train_flags(p: argparse.ArgumentParser, *, steps: int, batch_size: int, lr: float, ema: float) -> None:
    """The flags of the shared trainer (t2i.training.trainer.TrainConfig). Defaults are literal here so that
    `--help` imports no torch; tests/test_cli.py checks them against each component's TrainConfig."""
    p.add_argument("--steps", type=positive_int, default=steps, help="optimiser steps")
    p.add_argument("--batch-size", type=positive_int, default=batch_size, help="samples per step")
    p.add_argument("--lr", type=float, default=lr, help="peak learning rate (AdamW, warmup then cosine)")
    p.add_argument("--ema", type=fraction, default=ema, help="EMA decay of the weights (0: off)")
    p.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], default="no", help="autocast (via accelerate)")
    p.add_argument("--seed", type=int, default=0, help="random seed")


def train_config(args, **extra):
    """A TrainConfig from the flags of `add_train_flags`."""
    from t2i.training.trainer import TrainConfig

    warmup = min(100, max(1, args.steps // 10))
    return TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=warmup,
                       ema_decay=args.ema, mixed_precision=args.mixed_precision, seed=args.seed, **extra)
