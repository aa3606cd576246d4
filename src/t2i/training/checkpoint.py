"""Checkpoints that survive a crash at any moment, and load without running anyone's code.

A checkpoint is a directory `ROOT/step-NNNNNNNNN/`. It is written under a temporary name
(`ROOT/.partial-...`), every file and the directory are fsynced, the directory is renamed into place,
and only then is the pointer file `ROOT/latest` replaced (write a temporary file, fsync, `os.replace`).
A process killed at any instant therefore leaves `latest` naming a complete checkpoint: the old one
until the rename of the pointer, the new one after. Older checkpoints beyond the newest `keep` are
moved aside (an atomic rename to `.trash-...`) and then deleted, never the one `latest` names.

What a checkpoint holds is the caller's business (the trainer writes weights as safetensors, the
optimiser state with `torch.save`, RNG states and counters as safetensors + JSON); this module only
writes and finds directories, and reads the one pickled kind of file, `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

LATEST = "latest"  # the pointer file: one line, the name of the newest complete checkpoint directory
PARTIAL = ".partial-"  # a checkpoint being written (left behind only by a crash; removed on the next save)
TRASH = ".trash-"  # an old checkpoint being deleted


class CheckpointError(OSError):
    """A checkpoint could not be written or read; the message says which and why."""


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def checkpoint_name(step: int) -> str:
    return f"step-{step:09d}"


def save_checkpoint(root: str | Path, step: int, files: dict[str, Callable[[Path], None]], *, keep: int = 2) -> Path:
    """Write a checkpoint for `step` atomically and point `latest` at it; returns its directory.

    `files` maps a file name to a function that writes that file at the path it is given. On any error
    (disk full, permissions, a writer failing) the partial directory is removed, `latest` still names
    the previous checkpoint, and a CheckpointError says what happened.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f"{PARTIAL}*"):  # what a crash during an earlier save left behind
        shutil.rmtree(stale, ignore_errors=True)
    name = checkpoint_name(step)
    for k in range(1, 1000):  # a checkpoint of this step from another run that resumed from an older one
        if not (root / name).exists():
            break
        name = f"{checkpoint_name(step)}-{k}"
    partial = root / f"{PARTIAL}{name}"
    try:
        partial.mkdir()
        for file_name, write in files.items():
            write(partial / file_name)
            _fsync(partial / file_name)
        _fsync(partial)
        os.rename(partial, root / name)
        _fsync(root)
        pointer = root / f"{PARTIAL}{LATEST}"
        with open(pointer, "w") as f:
            f.write(name + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(pointer, root / LATEST)
        _fsync(root)
    except Exception as e:
        shutil.rmtree(partial, ignore_errors=True)
        previous = latest_checkpoint(root)
        kept = f"the previous checkpoint {previous} is intact" if previous else "no earlier checkpoint exists"
        raise CheckpointError(f"could not write checkpoint for step {step} in {root}: {e}; {kept}") from e
    _prune(root, keep)
    return root / name


def _prune(root: Path, keep: int) -> None:
    """Delete all but the `keep` newest checkpoints (by write time), never the one `latest` names."""
    current = latest_checkpoint(root)
    done = sorted((d for d in root.glob("step-*") if d.is_dir()), key=lambda d: d.stat().st_mtime_ns)
    for old in done[: max(0, len(done) - max(1, keep))]:
        if current is not None and old.name == current.name:
            continue
        trash = root / f"{TRASH}{old.name}"
        os.rename(old, trash)  # atomic: a half-deleted directory never looks like a checkpoint
        shutil.rmtree(trash, ignore_errors=True)
    for trash in root.glob(f"{TRASH}*"):
        shutil.rmtree(trash, ignore_errors=True)


def latest_checkpoint(root: str | Path) -> Path | None:
    """The directory `ROOT/latest` names, or None when there is no pointer yet."""
    pointer = Path(root) / LATEST
    try:
        name = pointer.read_text().strip()
    except FileNotFoundError:
        return None
    if not name or "/" in name or name.startswith("."):
        raise CheckpointError(f"{pointer} does not name a checkpoint directory (it holds {name!r})")
    path = Path(root) / name
    if not path.is_dir():
        raise CheckpointError(f"{pointer} names {name}, which does not exist")
    return path


def load_torch_state(path: str | Path) -> dict:
    """Read a file written by `torch.save` holding only tensors and plain containers.

    `weights_only=True`: PyTorch's restricted unpickler, which builds tensors, numbers, strings, lists,
    tuples and dicts and refuses everything else, so a crafted file cannot run code. A file that is not
    such a state gives a CheckpointError naming it.
    """
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} is not a plain training state (refused to load it: {first})") from None
