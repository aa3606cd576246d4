"""Training data at scale: one random-access interface over every kind of captioned-image store.

A source lists its samples once (captions, a name per sample, a fingerprint) and decodes an image only
when a batch asks for it, so memory holds an index, never the images. Three kinds, told apart by what
is on disk (`open_source`):

- a t2i / Hugging Face imagefolder (`metadata.jsonl` + images, or `.txt` sidecars): `scan_folder`;
- WebDataset tar shards in img2dataset's layout (`KEY.jpg|png|webp` beside `KEY.txt` or `KEY.json` with a
  "caption"): a `.tar` file or a folder of them;
- a Hugging Face `datasets` folder written by `save_to_disk` (an Image column and a "text"/"caption" column).

Tar shards are indexed with the standard library's `tarfile` (each member's offset and size) and read by
seeking: the `webdataset` library streams shards in order through shuffle buffers, which can neither
resume at an exact position nor give every process the same global order, both of which the trainer
needs (training/batches.py). Its writer produces exactly the files read here (tested).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tarfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from t2i.data.layout import TRAIN, DataError, ScanReport, dataset_fingerprint, scan_folder
from t2i.images import fit_square, load_image, to_tensor

log = logging.getLogger("t2i.data")

TAR_IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")  # in order of preference when a key has several


class FolderSource:
    """A t2i / Hugging Face imagefolder, or images with `.txt` sidecars (every image verified on open).

    `split` keeps only the rows of one split (the metadata's "split" field; rows without one are "train").
    `caption_choices[i]` lists every caption of sample i: its metadata's "captions" list when it has one
    (generator training samples among them), else just its caption.
    """

    def __init__(self, folder: str | Path, *, max_failure_rate: float = 0.1, split: str | None = None):
        self.path = Path(folder)
        self.split = split
        records, self.report = scan_folder(folder, max_failure_rate=max_failure_rate, split=split)
        self.paths = [r.path for r in records]
        self.captions = [r.caption for r in records]
        self.caption_choices = [_caption_choices(r.caption, r.extra.get("captions")) for r in records]
        self.names = [str(p.relative_to(self.path)) for p in self.paths]

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i: int, size: int) -> Image.Image:
        return load_image(self.paths[i], size)

    def fingerprint(self) -> str:
        return dataset_fingerprint(self.path, self.split)


def _caption_choices(caption: str, listed) -> list[str]:
    """The caption first, then the other non-empty strings of a metadata "captions" list, without repeats."""
    choices = [caption]
    if isinstance(listed, list):
        for c in listed:
            if isinstance(c, str) and c.strip() and c.strip() not in choices:
                choices.append(c.strip())
    return choices


class TarShardSource:
    """WebDataset tar shards (img2dataset layout), indexed once and read by offset.

    The fingerprint covers shard names and sizes, sample keys, image sizes in bytes and captions, not the
    image bytes themselves: hashing every byte of a large dataset on each start would take longer than
    many training runs. Only uncompressed tars can be read by offset (img2dataset writes those).
    """

    def __init__(self, path: str | Path, *, max_failure_rate: float = 0.1):
        path = Path(path)
        self.path = path
        self.shards = sorted(path.glob("*.tar")) if path.is_dir() else [path]
        if not self.shards:
            raise DataError(f"{path} holds no .tar shards")
        self.report = ScanReport()
        digest = hashlib.sha256()
        where, self.captions, self.names = [], [], []  # where: (shard, offset, size) per sample
        for s, shard in enumerate(self.shards):
            digest.update(f"{shard.name} {shard.stat().st_size}\n".encode())
            for key, image, caption, problem in _index_tar(shard):
                self.report.total += 1
                if problem:
                    self.report._skip(f"{shard.name}:{key}", problem)
                    continue
                where.append((s, image.offset_data, image.size))
                self.captions.append(caption)
                self.names.append(f"{shard.name}:{key}")
                digest.update(json.dumps([key, image.size, caption]).encode() + b"\n")
        self.where = np.asarray(where, dtype=np.int64).reshape(-1, 3)  # (N, 3): 24 bytes per sample
        self.report.kept = len(self.captions)
        self._fingerprint = digest.hexdigest()[:16]
        _check_rate(self.report, path, max_failure_rate)

    def __len__(self) -> int:
        return len(self.where)

    def load(self, i: int, size: int) -> Image.Image:
        s, offset, n = (int(v) for v in self.where[i])
        with open(self.shards[s], "rb") as f:
            f.seek(offset)
            data = f.read(n)
        with Image.open(io.BytesIO(data)) as im:
            return fit_square(ImageOps.exif_transpose(im), size)

    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def caption_choices(self) -> list[list[str]]:
        return [[c] for c in self.captions]  # one caption per sample


def _index_tar(shard: Path):
    """(key, image member, caption, problem) per sample key, in the shard's order (WebDataset's grouping:
    the key is the path up to the first dot of the file name, the rest is the extension)."""
    try:
        tar = tarfile.open(shard, mode="r:")  # "r:": uncompressed only; offsets must be file offsets
    except tarfile.ReadError as e:
        raise DataError(f"{shard} is not an uncompressed tar shard ({e})") from None
    with tar:
        groups: dict[str, dict[str, tarfile.TarInfo]] = {}
        for member in tar:
            if not member.isfile():
                continue
            folder, _, base = member.name.rpartition("/")
            if base.startswith(".") or "." not in base:
                continue
            stem, ext = base.split(".", 1)
            groups.setdefault(f"{folder}/{stem}" if folder else stem, {})[ext.lower()] = member
        for key, parts in groups.items():
            image = next((parts[e] for e in TAR_IMAGE_EXTENSIONS if e in parts), None)
            caption = _tar_caption(tar, parts)
            problem = "no_image" if image is None else None if caption else "no_caption"
            yield key, image, caption, problem


def _tar_caption(tar: tarfile.TarFile, parts: dict) -> str | None:
    if "txt" in parts:
        return tar.extractfile(parts["txt"]).read().decode("utf-8", "replace").strip() or None
    if "json" in parts:
        try:
            meta = json.loads(tar.extractfile(parts["json"]).read())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        caption = meta.get("caption") or meta.get("text") if isinstance(meta, dict) else None
        return caption.strip() or None if isinstance(caption, str) else None
    return None


class HFDiskSource:
    """A Hugging Face `datasets` folder from `save_to_disk` (its "train" split if it holds several), read
    through Arrow's memory map; the fingerprint is the one `datasets` keeps for it."""

    def __init__(self, folder: str | Path, *, max_failure_rate: float = 0.1):
        try:
            import datasets
        except ImportError:
            raise DataError(f"{folder} is a Hugging Face datasets folder; reading it needs the datasets "
                            "package: pip install 't2i[datasets]'") from None
        self.path = Path(folder)
        ds = datasets.load_from_disk(str(folder))
        if isinstance(ds, datasets.DatasetDict):
            if "train" not in ds:
                raise DataError(f"{folder} has splits {sorted(ds)} but no 'train' split")
            ds = ds["train"]
        features = ds.features
        self.image_column = next((k for k, f in features.items() if isinstance(f, datasets.Image)), None)
        caption_column = next((k for k in ("text", "caption") if k in features), None)
        if self.image_column is None or caption_column is None:
            raise DataError(f"{folder} needs an Image column and a 'text' or 'caption' column; it has "
                            f"{', '.join(f'{k} ({type(f).__name__})' for k, f in features.items())}")
        self.ds = ds
        self.report = ScanReport(total=len(ds))
        self.rows, self.captions = [], []
        for i, caption in enumerate(ds[caption_column]):
            if isinstance(caption, str) and caption.strip():
                self.rows.append(i)
                self.captions.append(caption.strip())
            else:
                self.report._skip(f"row {i}", "no_caption")
        self.report.kept = len(self.rows)
        self.names = [f"row {i}" for i in self.rows]
        _check_rate(self.report, self.path, max_failure_rate)

    def __len__(self) -> int:
        return len(self.rows)

    def load(self, i: int, size: int) -> Image.Image:
        image = self.ds[self.rows[i]][self.image_column]  # decoded by datasets' Image feature
        return fit_square(ImageOps.exif_transpose(image), size)

    def fingerprint(self) -> str:
        return self.ds._fingerprint

    @property
    def caption_choices(self) -> list[list[str]]:
        return [[c] for c in self.captions]  # one caption per sample


def _check_rate(report: ScanReport, path: Path, max_failure_rate: float) -> None:
    log.info("%s: %s", path, report.summary())
    if not report.kept:
        raise DataError(f"none of the {report.total} samples in {path} can be used; {report.summary()}")
    if report.n_skipped / report.total > max_failure_rate:
        raise DataError(f"{report.n_skipped} of {report.total} samples in {path} cannot be used, above the "
                        f"{max_failure_rate:.0%} limit; {report.summary()}")


def open_source(path: str | Path, *, max_failure_rate: float = 0.1, split: str | None = None):
    """The source at `path`, by what is there: tar shards, a `save_to_disk` folder, or an imagefolder.

    `split` (None: every row) selects an imagefolder's rows by their "split" field; shards and `datasets`
    folders have no such field, so all their rows are "train" and any other split is refused.
    """
    path = Path(path)
    if path.is_file() and path.suffix == ".tar" or path.is_dir() and any(path.glob("*.tar")):
        source = TarShardSource(path, max_failure_rate=max_failure_rate)
    elif path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file()):
        source = HFDiskSource(path, max_failure_rate=max_failure_rate)
    else:
        return FolderSource(path, max_failure_rate=max_failure_rate, split=split)
    if split not in (None, TRAIN):
        raise DataError(f"{path} has no split {split!r}: only imagefolders (metadata.jsonl) mark splits")
    return source


class ImageRows:
    """A source's images as rows of a (N, 3, S, S) float32 tensor in [-1, 1], decoded when indexed.

    `rows` selects and orders the samples served (default: all). An image that fails to decode is
    replaced by the next one (deterministically, so a resumed run sees the same substitute) and counted;
    past `max_failure_rate` of the images loaded so far (after 100), a DataError stops the run.
    """

    def __init__(self, source, size: int, rows=None, *, max_failure_rate: float = 0.1):
        self.source, self.size = source, size
        self.rows = range(len(source)) if rows is None else rows
        self.max_failure_rate = max_failure_rate
        self.loaded, self.failed = 0, 0

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index) -> torch.Tensor:
        index = torch.as_tensor(index).reshape(-1)
        if not len(index):
            return torch.empty(0, 3, self.size, self.size)
        return torch.stack([self._load(int(i)) for i in index])  # (B, 3, S, S)

    def _load(self, i: int) -> torch.Tensor:
        for k in range(len(self.rows)):
            j = self.rows[(i + k) % len(self.rows)]
            self.loaded += 1
            try:
                return to_tensor(self.source.load(j, self.size))
            except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... for broken images
                self.failed += 1
                log.warning("skipping %s: cannot decode (%s)", self.source.names[j], e)
                if self.loaded >= 100 and self.failed / self.loaded > self.max_failure_rate:
                    raise DataError(f"{self.failed} of {self.loaded} images loaded could not be decoded, above "
                                    f"the {self.max_failure_rate:.0%} limit; last: {self.source.names[j]}") from None
        raise DataError("no image of the source can be decoded")


def held_out_split(source, image_size: int, held_out: int) -> tuple[ImageRows, torch.Tensor, list[str]]:
    """The split every image-only component trains with: the first min(held_out, N // 10) rows are held out.
    Returns (training rows, held-out images (h, 3, S, S) as ImageRows gives them, the training
    rows' names)."""
    held = min(held_out, len(source) // 10)
    train = ImageRows(source, image_size, range(held, len(source)))
    test = ImageRows(source, image_size, range(held))[torch.arange(held)]
    return train, test, source.names[held:]
