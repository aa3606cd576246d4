"""Which set drew an image, read from its pixels: the style judge of `t2i compare`.

A small convolutional network (four conv + batch-norm + ReLU blocks, global average pooling, a linear layer)
trained from scratch on the real images of a corpus's training split, labelled by their set. It sees pixels,
not an evaluator's features: a CLIP trained to match captions keeps what an image shows and drops much of how
it is drawn (a linear probe on such features named the set of its own training images 64 % of the time on the
emoji corpus; this network names the set of held-out concepts' images it never saw far more often: the figure
`t2i compare` reports beside its style column). Horizontal flips are its only augmentation.

Training is seeded and cached on disk (keyed by the data's fingerprint and every setting), so the comparisons of
one corpus share one judge.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from t2i.evaluation.reference import load_keyed, save_keyed

log = logging.getLogger("t2i.evaluation")

VERSION = 1  # bump when the network or its training changes: cached judges of another version are not reused


@dataclass
class StyleNetConfig:
    epochs: int = 8
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    width: int = 32  # channels of the first block; ×2 per block after it
    seed: int = 0


def _network(classes: int, width: int) -> nn.Sequential:
    def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(*block(3, width, 2), *block(width, 2 * width, 1), nn.MaxPool2d(2),
                         *block(2 * width, 4 * width, 1), nn.MaxPool2d(2), *block(4 * width, 8 * width, 1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8 * width, classes))


def as_pixels(images: list[Image.Image]) -> torch.Tensor:
    """RGB images of one size as a (N, 3, H, W) uint8 tensor."""
    return torch.from_numpy(np.stack([np.asarray(im.convert("RGB"), dtype=np.uint8) for im in images])).permute(
        0, 3, 1, 2).contiguous()


def _scaled(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.float() / 127.5 - 1.0


class PixelStyleClassifier:
    """A trained style network and its labels; `predict` names the set of each image."""

    reads = "pixels"  # what predict() takes (the "clip" judge, t2i.evaluation.compare.StyleClassifier, reads features)

    def __init__(self, net: nn.Module, labels: list[str], image_size: int):
        self.net, self.labels, self.image_size = net.eval(), labels, image_size

    @classmethod
    def fit(cls, pixels: torch.Tensor, labels: list[str], cfg: StyleNetConfig | None = None, *,
            progress: bool = True) -> PixelStyleClassifier:
        """Train on (N, 3, H, W) uint8 images and their set names."""
        cfg = cfg or StyleNetConfig()
        names = sorted(set(labels))
        if len(names) < 2:
            raise ValueError(f"a style classifier needs at least two styles; the data has {names}")
        if len(labels) != len(pixels):
            raise ValueError(f"{len(pixels)} images for {len(labels)} labels")
        y = torch.tensor([names.index(label) for label in labels])
        g = torch.Generator().manual_seed(cfg.seed)
        with torch.random.fork_rng():  # the network's initial weights, seeded, the caller's generator untouched
            torch.manual_seed(cfg.seed)
            net = _network(len(names), cfg.width)
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps = cfg.epochs * -(-len(pixels) // cfg.batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.15)
        net.train()
        with tqdm(total=steps, desc="style classifier", unit="step", disable=not progress) as bar:
            for _ in range(cfg.epochs):
                order = torch.randperm(len(pixels), generator=g)
                for start in range(0, len(order), cfg.batch_size):
                    idx = order[start : start + cfg.batch_size]
                    x = _scaled(pixels[idx])
                    flip = torch.rand(len(idx), generator=g) < 0.5
                    x = torch.where(flip[:, None, None, None], x.flip(3), x)
                    loss = F.cross_entropy(net(x), y[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    sched.step()
                    bar.update()
                    bar.set_postfix(loss=f"{loss.item():.3f}")
        return cls(net, names, pixels.shape[-1])

    @torch.no_grad()
    def predict(self, images: list[Image.Image] | torch.Tensor) -> list[str]:
        pixels = images if isinstance(images, torch.Tensor) else as_pixels(images)
        if pixels.shape[-1] != self.image_size:
            raise ValueError(f"the style classifier reads {self.image_size}-px images, got {pixels.shape[-1]} px")
        out = []
        for start in range(0, len(pixels), 256):
            out += self.net(_scaled(pixels[start : start + 256])).argmax(1).tolist()
        return [self.labels[i] for i in out]


def trained_style_classifier(load_pixels: Callable[[], torch.Tensor], labels: list[str], *, image_size: int,
                             fingerprint: str, cfg: StyleNetConfig | None = None,
                             cache_dir: str | Path | None = None) -> PixelStyleClassifier:
    """The style network for the training images `load_pixels()` gives (uint8, image_size px, one per label): from
    the cache when one was trained on the same data with the same settings (the images are then not loaded)."""
    cfg = cfg or StyleNetConfig()
    names = sorted(set(labels))
    key = {"data": fingerprint, "image_size": image_size, "images": len(labels), "labels": names,
           "config": asdict(cfg), "version": VERSION}
    path = None
    if cache_dir is not None:
        path = (Path(cache_dir) / "style" /
                f"{fingerprint}-{image_size}px-e{cfg.epochs}-w{cfg.width}-s{cfg.seed}-v{VERSION}.safetensors")
        if (state := load_keyed(path, key)) is not None:
            log.info("using the cached style classifier %s", path)
            net = _network(len(names), cfg.width)
            net.load_state_dict(state)
            return PixelStyleClassifier(net, names, image_size)
    classifier = PixelStyleClassifier.fit(load_pixels(), labels, cfg)
    if path is not None:
        save_keyed(path, classifier.net.state_dict(), key)
    return classifier
