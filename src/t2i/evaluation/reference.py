"""The real side of FID and CLIP score: a fixed subset of a data folder, and its cached features.

The subset is a seeded permutation of the folder's records, so the same data gives the same real
images and the same prompts on every run. Features of real images are cached on disk by (dataset
fingerprint, extractor, resolution, n): a changed image or caption changes the fingerprint, and so
the cache entry.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from t2i.data import Record, dataset_fingerprint, scan_folder
from t2i.images import load_image
from t2i.evaluation.features import FeatureExtractor
from t2i.evaluation.metrics import FeatureSet

log = logging.getLogger("t2i.evaluation")


def evaluation_subset(records: list[Record], n: int, *, seed: int = 0) -> list[Record]:
    """The first n records of a seeded permutation (records repeat, in the same order, when n > len(records))."""
    order = np.random.default_rng(seed).permutation(len(records))
    return [records[order[i % len(records)]] for i in range(n)]


def data_image_size(records: list[Record]) -> tuple[int, int]:
    """The (width, height) of a folder's images; refuses folders whose images differ in size."""
    sizes = set()
    for r in records[:: max(1, len(records) // 64)]:  # a spread sample: headers only, fast
        with Image.open(r.path) as im:
            sizes.add(im.size)
    if len(sizes) > 1:
        raise ValueError(f"the data's images have several sizes ({sorted(sizes)[:3]}...); import them at one size "
                         "with t2i data import --size S")
    return sizes.pop()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text)


def reference_features(data_dir: str | Path, extractor: FeatureExtractor, *, resolution: int, n: int,
                       cache_dir: str | Path | None, seed: int = 0, records: list[Record] | None = None,
                       fingerprint: str | None = None) -> FeatureSet:
    """Features of the folder's fixed evaluation subset of n images, loaded at `resolution`, cached on disk.

    `records` and `fingerprint`, when the caller has them, save scanning and hashing the folder again."""
    data_dir = Path(data_dir)
    if records is None:
        records, _ = scan_folder(data_dir, verify=False)
    n = min(n, len(records))
    fingerprint = fingerprint or dataset_fingerprint(data_dir)
    key = {"data": fingerprint, "extractor": extractor.name, "resolution": resolution, "n": n, "seed": seed}
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / "reference" / _slug(f"{fingerprint}-{extractor.name}-{resolution}px-n{n}-s{seed}.safetensors")
        if (cached := load_keyed(path, key)) is not None:
            log.info("using cached reference features %s", path)
            return FeatureSet(cached["features"], extractor.name, resolution, f"{data_dir} ({n} real images)")
    subset = evaluation_subset(records, n, seed=seed)
    images = [load_image(r.path, resolution) for r in subset]
    features = extractor(images, progress="real features")
    if path is not None:
        save_keyed(path, {"features": features}, key)
    return FeatureSet(features, extractor.name, resolution, f"{data_dir} ({n} real images)")


# -- cache entries: tensors in a safetensors file, with the settings that made them ------------------------------


def load_keyed(path: Path, key: dict) -> dict[str, torch.Tensor] | None:
    """The tensors of a cache entry `save_keyed` wrote with this `key`; None when there is none, it was made with
    other settings, or it cannot be read (a damaged entry is recomputed, never trusted)."""
    if not path.is_file():
        return None
    try:
        with safe_open(path, "pt") as f:
            if json.loads(f.metadata()["key"]) != key:
                return None
            return {name: f.get_tensor(name) for name in f.keys()}
    except Exception as e:
        log.warning("ignoring unreadable cache entry %s (%s)", path, e)
        return None


def save_keyed(path: Path, tensors: dict[str, torch.Tensor], key: dict) -> None:
    """Write a cache entry: `tensors` and the JSON `key` of the settings that made them, renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({name: t.contiguous() for name, t in tensors.items()}, tmp,
              metadata={"key": json.dumps(key, sort_keys=True)})
    tmp.replace(path)
