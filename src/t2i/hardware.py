"""What this machine computes natively, for choices made once per run: bfloat16 sampling (t2i.pipeline.speed) and
`mixed_precision="auto"` training (t2i.training.trainer, `t2i train ... --mixed-precision auto`)."""

from __future__ import annotations

from pathlib import Path

PRECISIONS = ("no", "bf16", "fp16", "auto")  # what TrainConfig.mixed_precision takes


def native_bf16() -> bool:
    """True when this CPU computes bfloat16 natively (the avx512_bf16 or amx_bf16 flag, Linux only)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return False
    flags = set()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_precision(choice: str) -> str:
    """A mixed-precision setting as accelerate takes it: "auto" becomes "bf16" on a CUDA GPU that supports
    bfloat16 or on a CPU with native bfloat16 (elsewhere bf16 is emulated and was measured 7x slower), else "no";
    "no", "bf16" and "fp16" stay as they are."""
    if choice not in PRECISIONS:
        raise ValueError(f"unknown mixed precision {choice!r}: one of {', '.join(PRECISIONS)}")
    if choice != "auto":
        return choice
    import torch

    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    return "bf16" if native_bf16() else "no"
