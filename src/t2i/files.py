"""Folders that appear whole or not at all: written beside their final place, then moved there in one rename."""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_folder(out_dir: str | Path, *, keep_existing: bool = False) -> Iterator[Path]:
    """Yield a new empty folder beside `out_dir` to write into; when the block ends normally, move it to
    `out_dir`, replacing whatever folder is there; when it raises, delete it. Either way nothing half-written
    is ever found at `out_dir`.

    The folder's name is unique to this process and call, so several processes may write the same `out_dir`
    at once. `keep_existing=True` is for caches: if `out_dir` exists when the block ends (another process
    finished first), it is kept and this call's folder is dropped.
    """
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f"{out_dir.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out_dir.exists() and not out_dir.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
        raise FileExistsError(f"{out_dir} exists and is not a folder")
    if out_dir.is_dir():
        if keep_existing:
            shutil.rmtree(tmp, ignore_errors=True)
            return
        shutil.rmtree(out_dir)
    try:
        os.replace(tmp, out_dir)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (keep_existing and out_dir.is_dir()):  # a cache another process filled meanwhile is fine
            raise


def sha256_file(path: str | Path) -> str:
    """The sha256 of one file, hex, read in 1 MiB chunks (weights files do not have to fit in memory twice)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
