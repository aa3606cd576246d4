"""FID and CLIP score on a small N every few steps while a generator trains (k-diffusion does the same).

Plugged into the trainer's `on_log` hook: the caller hands a function that builds a pipeline from
the current weights; images for the data's first N evaluation captions (fixed seeds) are generated
and measured against cached real features, and a row goes to `eval_log.csv` beside `log.csv`.
Small-N FIDs are biased upwards: compare them with each other over training, not with a full `t2i eval`.
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Callable
from pathlib import Path

from t2i.data import scan_folder
from t2i.evaluation.clip import ClipExtractor
from t2i.evaluation.evaluate import generate
from t2i.evaluation.metrics import MIN_FID_SAMPLES, FeatureSet, check_comparable, clip_score, frechet_distance
from t2i.evaluation.reference import evaluation_subset, reference_features

log = logging.getLogger("t2i.evaluation")


class PeriodicEvaluator:
    """Call with (step, make_pipeline) from `on_log`; measures when `every` more steps have passed."""

    def __init__(self, data_dir: str | Path, clip_folder: str | Path, *, every: int, n: int, resolution: int,
                 log_dir: str | Path, cache_dir: str | Path | None = None, seed: int = 0, settings: dict | None = None):
        if every < 1:
            raise ValueError(f"eval_every must be at least 1, got {every}")
        if n < MIN_FID_SAMPLES:
            raise ValueError(f"{n} images per check is below the floor of {MIN_FID_SAMPLES} for FID")
        self.clip = ClipExtractor.from_folder(clip_folder)
        records, _ = scan_folder(data_dir, verify=False)
        self.real = reference_features(data_dir, self.clip, resolution=resolution, n=max(n, min(len(records), 2000)),
                                       cache_dir=cache_dir)
        self.prompts = [r.caption for r in evaluation_subset(records, n)]
        self.text = self.clip.text_features(self.prompts)
        self.seeds = [seed + i for i in range(n)]
        self.every, self.n, self.resolution = every, n, resolution
        self.settings = settings or {}
        self.path = Path(log_dir) / "eval_log.csv"
        self.rows: list[dict] = []
        self._next = every

    def __call__(self, step: int, make_pipeline: Callable[[], object]) -> dict | None:
        if step < self._next:
            return None
        self._next = (step // self.every + 1) * self.every
        start = time.perf_counter()
        images = generate(make_pipeline(), self.prompts, self.seeds, self.settings, batch_size=64, desc="eval")
        fake = FeatureSet(self.clip(images), self.clip.name, self.resolution, f"step {step}")
        check_comparable(self.real, fake, warn=False)
        row = {"step": step, "fid": round(frechet_distance(self.real.features, fake.features), 4),
               "clip_score": round(float(clip_score(fake.features, self.text).mean()), 4), "n": self.n,
               "extractor": self.clip.name, "seconds": round(time.perf_counter() - start, 2)}
        self.rows.append(row)
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
        log.info("step %d: FID %.2f, CLIP score %.2f (%d images, %s)", step, row["fid"], row["clip_score"], self.n,
                 self.clip.name)
        return row


def periodic_evaluator(data_dir: str | Path, cfg, log_dir: str | Path):
    """`make_evaluator` for `t2i.latent.train.train_generator`: (resolution, cache_dir) -> a `PeriodicEvaluator`
    with the training config's eval_every, eval_images and eval_clip."""
    return lambda resolution, cache_dir: PeriodicEvaluator(data_dir, cfg.eval_clip, every=cfg.eval_every,
                                                           n=cfg.eval_images, resolution=resolution,
                                                           log_dir=log_dir, cache_dir=cache_dir)
