"""The on-disk data layout: a Hugging Face imagefolder, read, written, checked and fingerprinted.

```
DIR/
  metadata.jsonl   # {"file_name": "images/000000.png", "text": "<caption>", ...extra fields} per line
  images/000000.png ...
  info.json        # what wrote it: {"source": "shapes", "size": 32, "n": ..., "seed": ..., ...}
```

Readers also accept a folder of images with `.txt` caption sidecars (`cat.png` + `cat.txt`, recursively).
Bad files are skipped and counted, never fatal; a scan aborts only past a stated failure rate.

Two optional metadata fields have a meaning to every reader: `"split"` names the row's split (a row without
one is `"train"`; `t2i data emoji` marks a fixed tenth `"held_out"`), and `"captions"` lists every caption of
the image (the first is `text`), of which generator training samples one per step.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch
from PIL import Image
from tqdm.auto import tqdm

from t2i.files import atomic_folder
from t2i.images import load_image, save_dataset_png, to_tensor

logger = logging.getLogger("t2i.data")

METADATA = "metadata.jsonl"
INFO = "info.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
TRAIN = "train"  # the split of a row whose metadata has no "split" field

# A few example paths per scan are enough to find the problem; the counts say how big it is.
_N_EXAMPLES = 5
# Log the first skipped files as warnings; the rest at debug level, so a bad folder cannot flood the log.
_N_WARNINGS = 10


class DataError(ValueError):
    """A data folder cannot be used: missing, empty, or too many unreadable images."""


@dataclass
class Record:
    """One image–caption pair of a data folder."""

    path: Path  # the image file
    caption: str  # its caption
    extra: dict  # every other field of its metadata.jsonl line (e.g. ground-truth attributes); {} for sidecars


@dataclass
class ScanReport:
    """What `scan_folder` found: how many images it kept, and why it skipped the others."""

    total: int = 0  # entries found (metadata lines or image files)
    kept: int = 0  # entries that passed every check
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count ("unreadable", "truncated", ...)
    examples: list[tuple[str, str]] = field(default_factory=list)  # the first few (path, reason) skipped

    @property
    def n_skipped(self) -> int:
        """Number of entries skipped, over all reasons."""
        return sum(self.skipped.values())

    def summary(self) -> str:
        """One line for a log: kept and skipped counts, reasons, and the first skipped paths."""
        text = f"kept {self.kept} of {self.total} images"
        if self.n_skipped:
            reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
            first = ", ".join(f"{path} ({reason})" for path, reason in self.examples)
            text += f"; skipped {self.n_skipped} ({reasons}); first: {first}"
        return text

    def _skip(self, path: str, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if len(self.examples) < _N_EXAMPLES:
            self.examples.append((path, reason))
        level = logging.WARNING if self.n_skipped <= _N_WARNINGS else logging.DEBUG
        logger.log(level, "skipping %s: %s", path, reason)


@dataclass
class _Entry:
    """An entry as listed, before its image is checked; `problem` is set when the listing itself is bad."""

    name: str  # path relative to the folder, as written in metadata.jsonl or found on disk
    caption: str | None
    extra: dict
    problem: str | None = None


def _list_entries(folder: Path, split: str | None = None) -> list[_Entry]:
    """The folder's entries from metadata.jsonl if present, else from images with .txt sidecars; with
    `split`, only the entries of that split (see `row_split`)."""
    if not folder.is_dir():
        raise DataError(f"data folder {folder} does not exist")
    meta = folder / METADATA
    entries = _entries_from_metadata(meta) if meta.is_file() else _entries_from_sidecars(folder)
    if split is None:
        return entries
    # A line too broken to name a file has no split either: it stays, to be counted as bad.
    return [e for e in entries if e.problem is not None or row_split(e.extra) == split]


def row_split(extra: dict) -> str:
    """The split a row belongs to: its metadata's "split" field, "train" when it has none."""
    split = extra.get("split", TRAIN)
    return split if isinstance(split, str) else TRAIN


def _entries_from_metadata(meta: Path) -> list[_Entry]:
    entries = []
    with open(meta, encoding="utf-8") as lines:
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            name = row.get("file_name") if isinstance(row, dict) else None
            if not isinstance(name, str) or Path(name).is_absolute() or ".." in Path(name).parts:
                # A line we cannot trust to name a file inside the folder: count it, don't guess.
                entries.append(_Entry(f"{METADATA}:{lineno}", None, {}, problem="bad_metadata"))
                continue
            caption = row.get("text")
            extra = {k: v for k, v in row.items() if k not in ("file_name", "text")}
            entries.append(_Entry(name, caption if isinstance(caption, str) else None, extra))
    return entries


def _entries_from_sidecars(folder: Path) -> list[_Entry]:
    entries = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.suffix.lower() not in IMAGE_SUFFIXES or any(p.startswith(".") for p in rel.parts):
            continue
        if not path.is_file():
            continue
        sidecar = path.with_suffix(".txt")
        caption = sidecar.read_text(encoding="utf-8").strip() if sidecar.is_file() else None
        entries.append(_Entry(rel.as_posix(), caption, {}))
    return entries


def _check_image(path: Path, max_pixels: int, verify: bool) -> str | None:
    """None if the image is usable, else the reason to skip it."""
    if not path.is_file():
        return "missing_file"
    try:
        with warnings.catch_warnings():
            # PIL warns about images above its own limit on open; ours is lower and checked just below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
                if width * height > max_pixels:
                    return "too_large"
                if not verify:
                    return None
                im.verify()  # structure and checksums; the file object is unusable afterwards
            with Image.open(path) as im:
                im.load()  # decodes every pixel: catches truncated data that verify() lets through
    except Image.DecompressionBombError:
        return "too_large"
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, EOFError... for broken files
        return "truncated" if "truncat" in str(e).lower() else "unreadable"
    return None


def scan_folder(
    folder: str | Path,
    *,
    max_pixels: int = 64_000_000,
    max_failure_rate: float = 0.1,
    verify: bool = True,
    split: str | None = None,
) -> tuple[list[Record], ScanReport]:
    """List a data folder's image–caption pairs, skipping and counting the ones that cannot be used.

    Reads `metadata.jsonl` if present, else images with `.txt` sidecars (recursively, sorted by path).
    `max_pixels` (default 64 M, an 8000×8000 photo: 192 MB once decoded) rejects decompression bombs and
    images far beyond any training resolution, before they are decoded; PIL's own check, which refuses
    images above ~179 M pixels, still applies on top. `verify=True` decodes every image to catch
    truncated and corrupt files; `verify=False` only reads headers. `split` keeps only the rows of that
    split (metadata "split" field; rows without one are "train"); None keeps all.

    Raises DataError if the folder is missing, has no images (in `split`), keeps none, or if the fraction
    skipped exceeds `max_failure_rate`.
    """
    folder = Path(folder)
    entries = _list_entries(folder, split)
    if not entries:
        raise DataError(f"data folder {folder} has no images" + (f" in split {split!r}" if split else ""))
    report = ScanReport(total=len(entries))
    records = []
    for entry in entries:
        path = folder / entry.name
        problem = entry.problem
        if problem is None and not (entry.caption and entry.caption.strip()):
            problem = "no_caption"
        if problem is None:
            problem = _check_image(path, max_pixels, verify)
        if problem is not None:
            report._skip(entry.name, problem)
            continue
        records.append(Record(path, entry.caption, entry.extra))
    report.kept = len(records)
    logger.info("%s: %s", folder, report.summary())
    skipped = report.n_skipped
    first = ", ".join(f"{path} ({reason})" for path, reason in report.examples)
    if not records:
        raise DataError(f"none of the {report.total} images in {folder} could be read; first: {first}")
    if skipped / report.total > max_failure_rate:
        raise DataError(
            f"{skipped} of {report.total} images ({skipped / report.total:.0%}) could not be read, "
            f"above the {max_failure_rate:.0%} limit; first: {first}"
        )
    return records, report


def write_layout(out_dir: str | Path, items: Iterable[tuple[Image.Image, str, dict]], info: dict, *,
                 files: dict[str, str] | None = None) -> Path:
    """Write (image, caption, extra) items as an imagefolder: images/NNNNNN.png, metadata.jsonl, info.json.

    The extra dict's fields are merged into each metadata line; `info` goes to info.json with the count
    `n` written, after the last item (so a source may add what it counted while yielding). `files`: other
    text files for the folder (name -> content), e.g. LICENSES.md. Output bytes depend only on the inputs.
    The folder is built beside `out_dir` and moved into place at the end, so an interrupted run never leaves
    a half-written dataset.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DataError(f"output folder {out_dir} is not empty")
    n = 0
    with atomic_folder(out_dir) as partial:
        (partial / "images").mkdir()
        with open(partial / METADATA, "w", encoding="utf-8", newline="\n") as meta:
            for n, (img, caption, extra) in enumerate(items, start=1):
                name = f"images/{n - 1:06d}.png"
                clash = {"file_name", "text"} & extra.keys()
                if clash:
                    raise ValueError(f"extra fields {sorted(clash)} clash with the metadata columns")
                save_dataset_png(img, partial / name)
                meta.write(json.dumps({"file_name": name, "text": caption, **extra}, sort_keys=True) + "\n")
        for name, text in (files or {}).items():
            (partial / name).write_text(text, encoding="utf-8")
        (partial / INFO).write_text(json.dumps({**info, "n": n}, sort_keys=True, indent=2) + "\n", encoding="utf-8")
    logger.info("wrote %d images to %s", n, out_dir)
    return out_dir


def dataset_fingerprint(folder: str | Path, split: str | None = None) -> str:
    """A 16-hex-digit sha256 over every entry's path, caption, extra fields and image bytes.

    Any change of data (one caption, one pixel, one file added or removed) changes it; info.json does
    not enter it. Use it as a cache key for anything computed from the data. With `split`, only that
    split's entries enter it (a folder whose rows are all in the split keeps its full fingerprint).
    """
    folder = Path(folder)
    digest = hashlib.sha256()
    for entry in _list_entries(folder, split):
        path = folder / entry.name
        file_hash = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        line = [entry.name, entry.caption, entry.extra, entry.problem, file_hash]
        digest.update(json.dumps(line, sort_keys=True).encode("utf-8") + b"\n")
    return digest.hexdigest()[:16]


def load_tensors(records: list[Record], size: int) -> torch.Tensor:
    """All records' images as one (N, 3, size, size) float32 tensor in [-1, 1], for small datasets."""
    out = torch.empty(len(records), 3, size, size)
    # disable=None shows the bar only on a terminal; small sets load too fast to need one.
    bar = tqdm(records, desc="loading images", unit="img", disable=None if len(records) >= 1000 else True)
    for i, record in enumerate(bar):
        out[i] = to_tensor(load_image(record.path, size))
    return out
