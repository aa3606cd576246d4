"""What a run writes as it goes: a CSV of losses, TensorBoard scalars (when installed), a fault log."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

log = logging.getLogger("t2i.training")


class CsvLog:
    """`log.csv`, one row per logged step. Resuming at step s drops the rows after s (they are replayed)."""

    def __init__(self, path: Path, *, resume_step: int | None = None):
        path.parent.mkdir(parents=True, exist_ok=True)
        rows: list[dict] = []
        if resume_step is not None and path.exists():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        self.file = open(path, "w", newline="")
        self.writer: csv.DictWriter | None = None
        for r in rows:
            self.row(**r)

    def row(self, **values) -> None:
        if self.writer is None:
            self.writer = csv.DictWriter(self.file, fieldnames=list(values))
            self.writer.writeheader()
        self.writer.writerow(values)
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class TensorBoard:
    """Scalars for TensorBoard under `log_dir/tensorboard`, or nothing when the optional package is missing."""

    def __init__(self, log_dir: Path, *, purge_step: int | None = None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is an optional extra: pip install 't2i[tensorboard]'
            self.writer = None
            return
        self.writer = SummaryWriter(str(log_dir / "tensorboard"), purge_step=purge_step)

    def scalars(self, step: int, **values: float) -> None:
        if self.writer is not None:
            for name, v in values.items():
                self.writer.add_scalar(f"train/{name}", v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def log_fault(log_dir: Path | None, **event) -> None:
    """A fault (skipped step, rollback, stop) as a warning and as one JSON line in `log_dir/faults.jsonl`."""
    log.warning("%s", "; ".join(f"{k} {v}" for k, v in event.items()))
    if log_dir is not None:
        with open(Path(log_dir) / "faults.jsonl", "a") as f:
            f.write(json.dumps(event, default=str) + "\n")
