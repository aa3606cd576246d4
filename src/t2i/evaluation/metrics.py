"""FID, KID and CLIP score on features, and the feature sets they compare.

FID (Heusel et al. 2017) is the Fréchet distance between Gaussians fitted to two feature sets,
‖μ₁−μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½); KID (Bińkowski et al. 2018) is the unbiased squared MMD with the
cubic polynomial kernel, averaged over random subsets. Both use torchmetrics' arithmetic, fed with
features we computed (so reference features can be cached). CLIP score (Hessel et al. 2021, as
torchmetrics defines it) is 100·max(cos(image, text), 0), averaged over images.

A `FeatureSet` carries what makes two sets comparable: the extractor's name, the resolution the images
had, and how many there were. Comparing sets that differ in extractor or resolution is refused.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import torch
from torch import nn

log = logging.getLogger("t2i.evaluation")

# Below this many images per set FID is refused: its bias (which grows as 1/N) then dwarfs the
# differences it should show, and with fewer images than feature dimensions the covariance is singular.
MIN_FID_SAMPLES = 50
# Below this, a warning: FIDs are only comparable at equal N, and published FIDs use 10,000–50,000.
WARN_FID_SAMPLES = 2000


@dataclass
class FeatureSet:
    """Features of one image set, and what they are comparable with."""

    features: torch.Tensor  # (N, D) float32
    extractor: str  # the extractor's name (network and weights)
    resolution: int  # side in pixels of the images before the extractor resized them
    source: str  # where the images came from (a data folder, a pipeline setting), for messages

    @property
    def n(self) -> int:
        return len(self.features)


def check_comparable(a: FeatureSet, b: FeatureSet, *, min_samples: int = MIN_FID_SAMPLES, warn: bool = True) -> None:
    """Refuse comparisons that would give a number with no meaning; warn when N is small."""
    if a.extractor != b.extractor:
        raise ValueError(f"cannot compare features of different extractors: {a.source} has {a.extractor}, "
                         f"{b.source} has {b.extractor}")
    if a.resolution != b.resolution:
        raise ValueError(f"cannot compare images of different resolutions: {a.source} is {a.resolution} px, "
                         f"{b.source} is {b.resolution} px")
    for s in (a, b):
        if s.n < min_samples:
            raise ValueError(f"{s.source} has {s.n} images; FID needs at least {min_samples} "
                             f"(and {WARN_FID_SAMPLES}+ to be stable)")
    small = min(a.n, b.n)
    if warn and small < WARN_FID_SAMPLES:
        log.warning("FID on %d images is biased upwards and unstable: compare only FIDs at equal N "
                    "(%d+ recommended)", small, WARN_FID_SAMPLES)


class _Precomputed(nn.Module):
    """The feature "network" handed to torchmetrics: our features pass through unchanged."""

    def __init__(self, dim: int):
        super().__init__()
        self.num_features = dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID between two feature sets (N, D), in float64, with torchmetrics' FrechetInceptionDistance."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature widths differ: {real.shape[1]} vs {fake.shape[1]}")
    if min(len(real), len(fake)) < 2:
        raise ValueError("FID needs at least 2 images per set")
    metric = FrechetInceptionDistance(feature=_Precomputed(real.shape[1]))
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return float(metric.compute())


def kernel_distance(real: torch.Tensor, fake: torch.Tensor, *, subsets: int = 100, subset_size: int = 1000,
                    seed: int = 0) -> tuple[float, float]:
    """KID (mean, std over `subsets` random subsets of min(subset_size, N) images) with torchmetrics'
    KernelInceptionDistance (cubic polynomial kernel, γ = 1/D, c = 1)."""
    from torchmetrics.image.kid import KernelInceptionDistance

    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ValueError("KID needs at least 2 images per set")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features")  # ours are in memory anyway
        metric = KernelInceptionDistance(feature=_Precomputed(real.shape[1]), subsets=subsets, subset_size=size)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # torchmetrics draws the subsets from the global RNG; keep it contained
        mean, std = metric.compute()
    return float(mean), float(std)


def fid(real: FeatureSet, fake: FeatureSet, *, min_samples: int = MIN_FID_SAMPLES) -> float:
    """FID between two comparable feature sets (see `check_comparable`)."""
    check_comparable(real, fake, min_samples=min_samples)
    return frechet_distance(real.features, fake.features)


def clip_score(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> torch.Tensor:
    """Per-pair CLIP score (N,): 100·max(cos, 0) between row i of each (N, D) set."""
    if image_embeddings.shape != text_embeddings.shape:
        raise ValueError(f"{tuple(image_embeddings.shape)} image embeddings vs {tuple(text_embeddings.shape)} text")
    cos = torch.nn.functional.cosine_similarity(image_embeddings.double(), text_embeddings.double(), dim=-1)
    return 100 * cos.clamp(min=0)
