"""Frozen parts run once: latents and text embeddings are cached to disk before the generator trains."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm


log = logging.getLogger("t2i.cache")


def _key(**parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


SHARD_ROWS = 4096  # rows per cache shard; a multiple of the encoders' batch sizes (256 images, 128 captions),
# so a sharded cache holds exactly the numbers a single pass over the data gives
INDEX = "index.json"  # written last: a cache folder without it is incomplete (its finished shards are reused)
_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}


class ShardedRows:
    """Rows of one tensor split over shard files, memory-mapped: indexing reads only the rows it needs,
    so memory stays flat however large the cache (the OS page cache holds what was read)."""

    def __init__(self, parts: list[torch.Tensor]):
        self.parts = parts
        self.ends = torch.tensor([len(p) for p in parts]).cumsum(0)  # (S,)
        self.shape = (int(self.ends[-1]), *parts[0].shape[1:])

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> torch.Tensor:
        index = torch.as_tensor(index)
        if len(self.parts) == 1:
            return self.parts[0][index]
        flat = index.reshape(-1)
        shard = torch.searchsorted(self.ends, flat, right=True)  # (B,) which shard holds each row
        out = torch.empty((len(flat), *self.shape[1:]), dtype=self.parts[0].dtype)
        for s in shard.unique().tolist():
            here = shard == s
            out[here] = self.parts[s][flat[here] - (self.ends[s - 1] if s else 0)]
        return out.reshape(*index.shape, *self.shape[1:])


def map_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors as views of a private memory map of it (read lazily, page by page).
    The header is checked against the file: a file that is not what it claims gives a ValueError."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        try:
            header = json.loads(f.read(n)) if 2 <= n <= size - 8 else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            header = None
    if not isinstance(header, dict):
        raise ValueError(f"{path} is not a safetensors file")
    raw = torch.from_file(str(path), shared=False, size=size, dtype=torch.uint8)
    out = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(spec.get("dtype")) if isinstance(spec, dict) else None
        begin, end = spec.get("data_offsets", (0, -1)) if dtype else (0, -1)
        shape = spec.get("shape", []) if dtype else []
        count = int(np.prod(shape)) if shape else 1
        fits = dtype is not None and end - begin == count * dtype.itemsize and 8 + n + end <= size
        if not fits or (8 + n + begin) % dtype.itemsize:
            raise ValueError(f"{path}: tensor {name!r} does not match the file")
        out[name] = raw[8 + n + begin : 8 + n + end].view(dtype).view(shape)
    return out


def sharded_cache(cache_dir: str | Path, name: str, key_parts: dict, n_rows: int, compute_rows,
                  *, small=None, rank: int = 0, world_size: int = 1, barrier=lambda: None,
                  shard_rows: int = SHARD_ROWS) -> dict:
    """Compute (once) and memory-map a cache of `n_rows` rows, in shards of `shard_rows`.

    `compute_rows(start, end)` returns {name: (end - start, ...) tensor}. Shard k is computed by process
    k mod world_size, and a shard already on disk (from an interrupted run) is not computed again.
    `small()` returns tensors kept whole (rank 0 computes them). Returns {name: ShardedRows or tensor}.
    Each process writes only its own shards (atomically); rank 0 writes the index when all are done.
    """
    folder = Path(cache_dir) / f"{name}-{_key(**key_parts, shard_rows=shard_rows)}"
    starts = list(range(0, n_rows, shard_rows))
    if not (folder / INDEX).exists():
        folder.mkdir(parents=True, exist_ok=True)
        mine = [k for k in range(len(starts)) if k % world_size == rank]
        for k in tqdm(mine, desc=f"cache {name}", unit="shard", disable=None if rank == 0 else True):
            path = folder / f"{k:05d}.safetensors"
            if not path.exists():
                _save_atomic(compute_rows(starts[k], min(starts[k] + shard_rows, n_rows)), path)
        if rank == 0 and small is not None:
            _save_atomic(small(), folder / "small.safetensors")
        barrier()
        if rank == 0:
            index = {"key": key_parts, "rows": n_rows, "shards": [f"{k:05d}.safetensors" for k in range(len(starts))]}
            (folder / (INDEX + ".tmp")).write_text(json.dumps(index, indent=1) + "\n")
            (folder / (INDEX + ".tmp")).replace(folder / INDEX)
        barrier()
    else:
        log.info("using cached %s: %s", name, folder)
    index = json.loads((folder / INDEX).read_text())
    if index["rows"] != n_rows:
        raise ValueError(f"cache {folder} holds {index['rows']} rows, the data has {n_rows}")
    maps = [map_safetensors(folder / shard) for shard in index["shards"]]
    out: dict = {k: ShardedRows([m[k] for m in maps]) for k in maps[0]}
    if (folder / "small.safetensors").exists():
        out.update(load_file(folder / "small.safetensors"))
    return out


def _save_atomic(tensors: dict[str, torch.Tensor], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, tmp)
    tmp.replace(path)


@torch.no_grad()
def latent_rows(vae, images, *, batch_size: int = 256):
    """compute_rows for `sharded_cache`: posterior mean and std of images[start:end] (ImageRows or a tensor)."""

    def compute(start: int, end: int) -> dict[str, torch.Tensor]:
        means, stds = [], []
        for i in range(start, end, batch_size):
            x = images[torch.arange(i, min(i + batch_size, end))].to(vae.device)  # (b, 3, S, S)
            posterior = vae.encode(x).latent_dist
            means.append(posterior.mean.cpu())
            stds.append(posterior.std.cpu())
        return {"latent_mean": torch.cat(means), "latent_std": torch.cat(stds)}

    return compute


@torch.no_grad()
def text_rows(text_encoder, distinct: list[str], *, batch_size: int = 128):
    """compute_rows for `sharded_cache`: embeddings (rows, L, D) of distinct captions[start:end]."""

    def compute(start: int, end: int) -> dict[str, torch.Tensor]:
        table = [text_encoder.encode(distinct[i : min(i + batch_size, end)])[0].float().cpu()
                 for i in range(start, end, batch_size)]
        return {"text_table": torch.cat(table)}

    return compute
