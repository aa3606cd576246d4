"""A small CNN that reads a shapes image: which colours are drawn, and each one's shape, size and centre.

Trained on freshly rendered ground truth (`t2i.data.shapes.render_shapes` with seeds far from any
dataset's), it is the detector behind compositional accuracy (a small GenEval, Ghosh et al. 2023).
The shapes of one image always have different colours, so the output is one slot per palette colour:
present?, shape, size and centre (x, y as fractions of the side). Count, position and relation are
read off the slots (see `compositional.py`). A component folder: config.json + model.safetensors.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from t2i.data.shapes import BACKGROUND, COLOURS, SHAPES, SIZES, ShapesConfig, render_shapes
from t2i.evaluation.features import to_batch
from t2i.training.finish import finish_training
from t2i.training.trainer import TrainConfig

log = logging.getLogger("t2i.evaluation")

# Seeds of the classifier's renders: far above any `t2i data shapes --seed` in use, so no image it
# trains or is tested on is an image of a dataset.
TRAIN_SEED = 1_000_003
TEST_SEED = 1_000_004
_SLOT = 1 + len(SHAPES) + len(SIZES) + 2  # present, shape logits, size logits, (cx, cy)


@dataclass
class ShapesClassifierConfig:
    image_size: int = 32  # input side in pixels; other sizes are resized (bicubic) to it
    channels: tuple[int, ...] = (16, 32, 32)  # conv channels per level; each level halves the side
    hidden: int = 128  # width of the fully connected layer after the convolutions


def colour_masks(pixels: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [0, 255] → (B, K, H, W): how much of each pixel is each palette colour, over white.

    A pixel is read as a blend α·colour + (1−α)·white of the palette colour whose blend line it lies
    closest to (antialiased edges are such blends); its mask value for that colour is α, 0 for the others.
    """
    palette = torch.tensor(list(COLOURS.values()), dtype=torch.float32)  # (K, 3)
    background = torch.tensor(BACKGROUND, dtype=torch.float32)
    d = (background.view(1, 3, 1, 1) - pixels).unsqueeze(1)  # (B, 1, 3, H, W): deviation from white
    v = (background - palette).view(1, -1, 3, 1, 1)  # (1, K, 3, 1, 1)
    alpha = (d * v).sum(2) / v.pow(2).sum(2)  # (B, K, H, W)
    residual = (d - alpha.unsqueeze(2) * v).norm(dim=2)  # (B, K, H, W): distance from each blend line
    residual = torch.where(alpha > 0.05, residual, torch.full_like(residual, float("inf")))
    nearest = F.one_hot(residual.argmin(1), len(palette)).permute(0, 3, 1, 2)  # (B, K, H, W)
    return alpha.clamp(0, 1) * nearest


class ShapesClassifier(nn.Module):
    """(B, 3, S, S) in [0, 255] → per palette colour: presence logit, shape logits, size logits, centre.

    Colour is read exactly (`colour_masks`); one small CNN, shared by all colours, reads each colour's
    mask (plus two coordinate channels: position is what it must read) → (B, K, _SLOT).
    """

    def __init__(self, config: ShapesClassifierConfig):
        super().__init__()
        self.config = config
        layers, c_in = [], 3  # the mask + x and y coordinates (CoordConv)
        for c in config.channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1), nn.SiLU(),
                       nn.MaxPool2d(2)]
            c_in = c
        self.features = nn.Sequential(*layers)
        side = config.image_size // 2 ** len(config.channels)
        # Flattened maps say where; their global max says what, wherever it is (shape is translation-invariant).
        self.head = nn.Sequential(nn.Linear(c_in * side * side + c_in, config.hidden), nn.SiLU(),
                                  nn.Linear(config.hidden, _SLOT))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        b, _, h, w = pixels.shape
        masks = colour_masks(pixels).reshape(b * len(COLOURS), 1, h, w)  # (B·K, 1, S, S)
        return self.read_masks(masks).view(b, len(COLOURS), _SLOT)  # (B, K, _SLOT)

    def read_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """One colour's mask per row (M, 1, S, S) in [0, 1] → (M, _SLOT)."""
        m, _, h, w = masks.shape
        ys = torch.linspace(-1, 1, h).view(1, 1, h, 1).expand(m, 1, h, w)
        xs = torch.linspace(-1, 1, w).view(1, 1, 1, w).expand(m, 1, h, w)
        f = self.features(torch.cat([masks * 2 - 1, xs, ys], 1))  # (M, C, s, s)
        return self.head(torch.cat([f.flatten(1), f.amax((2, 3))], 1))  # (M, _SLOT)

    def save_pretrained(self, folder: str | Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(asdict(self.config), indent=2) + "\n")
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, folder / "model.safetensors")

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> ShapesClassifier:
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
            raise FileNotFoundError(f"{folder} is not a shapes classifier folder (config.json + model.safetensors); "
                                    "make one with t2i train shapes-classifier")
        raw = json.loads((folder / "config.json").read_text())
        model = cls(ShapesClassifierConfig(**{**raw, "channels": tuple(raw["channels"])}))
        model.load_state_dict(load_file(folder / "model.safetensors"))
        return model.eval().requires_grad_(False)

    @torch.inference_mode()
    def read(self, images, *, batch_size: int = 256) -> list[list[dict]]:
        """What each PIL image shows: a list of {"colour", "shape", "size", "cx", "cy"} (centre as a fraction)."""
        readings = []
        for i in range(0, len(images), batch_size):
            out = self(to_batch(images[i : i + batch_size], self.config.image_size))  # (B, K, _SLOT)
            present = out[..., 0] > 0
            shape = out[..., 1 : 1 + len(SHAPES)].argmax(-1)
            size = out[..., 1 + len(SHAPES) : 1 + len(SHAPES) + len(SIZES)].argmax(-1)
            centre = out[..., -2:]
            for b in range(len(out)):
                readings.append([{"colour": colour, "shape": SHAPES[shape[b, k]], "size": SIZES[size[b, k]],
                                  "cx": float(centre[b, k, 0]), "cy": float(centre[b, k, 1])}
                                 for k, colour in enumerate(COLOURS) if present[b, k]])
        return readings


def targets(attributes: list[dict], side: int) -> dict[str, torch.Tensor]:
    """Slot targets of one image from its ground-truth attributes (shapes in pixels of a side-pixel image)."""
    present = torch.zeros(len(COLOURS))
    shape = torch.zeros(len(COLOURS), dtype=torch.long)
    size = torch.zeros(len(COLOURS), dtype=torch.long)
    centre = torch.zeros(len(COLOURS), 2)
    for s in attributes:
        k = list(COLOURS).index(s["colour"])
        present[k] = 1
        shape[k], size[k] = SHAPES.index(s["shape"]), SIZES.index(s["size"])
        centre[k] = torch.tensor([s["cx"] / side, s["cy"] / side])
    return {"present": present, "shape": shape, "size": size, "centre": centre}


def rendered_set(n: int, *, render_size: int, image_size: int, seed: int) -> tuple[list, list[dict], torch.Tensor]:
    """n fresh renders at render_size: the images, their attributes, and pixels (n, 3, S, S) at image_size."""
    images, attributes = [], []
    for img, _, extra in render_shapes(ShapesConfig(n=n, size=render_size, seed=seed)):
        images.append(img)
        attributes.append(extra["attributes"])
    pixels = torch.cat([to_batch(images[i : i + 1024], image_size) for i in range(0, n, 1024)])
    return images, attributes, pixels


def classifier_loss(model: nn.Module, batch: dict, generator: torch.Generator) -> torch.Tensor:
    """Over a batch of colour slots: presence BCE; shape and size cross-entropy and centre L1 where present."""
    out = model.read_masks(batch["masks"])  # (M, _SLOT)
    present = batch["present"]  # (M,)
    weight = present / present.sum().clamp(min=1)  # attributes count only for the colours that are drawn
    loss = F.binary_cross_entropy_with_logits(out[:, 0], present)
    shape_ce = F.cross_entropy(out[:, 1 : 1 + len(SHAPES)], batch["shape"], reduction="none")  # (M,)
    size_ce = F.cross_entropy(out[:, 1 + len(SHAPES) : -2], batch["size"], reduction="none")  # (M,)
    centre = (out[:, -2:] - batch["centre"]).abs().sum(-1)  # (M,), L1 in fractions of the side
    return loss + ((shape_ce + size_ce + centre) * weight).sum()


def training_slots(pixels: torch.Tensor, per_image: list[dict], *, keep_absent: float, seed: int) -> dict:
    """Flatten images into colour slots: every drawn colour's mask, and a seeded share of the absent ones
    (mostly empty; the few with stray edge pixels teach what is not a shape). A step then costs ~3× less."""
    masks = torch.cat([colour_masks(pixels[i : i + 1024]) for i in range(0, len(pixels), 1024)])  # (N, K, S, S)
    flat = {k: torch.stack([t[k] for t in per_image]).flatten(0, 1) for k in per_image[0]}  # (N·K, ...)
    keep = (flat["present"] > 0) | (torch.rand(len(flat["present"]), generator=torch.Generator().manual_seed(seed))
                                    < keep_absent)
    return {"masks": masks.flatten(0, 1).unsqueeze(1)[keep], **{k: v[keep] for k, v in flat.items()}}


@dataclass
class ShapesClassifierTrainConfig:
    model: ShapesClassifierConfig = field(default_factory=ShapesClassifierConfig)
    n_train: int = 10000  # fresh renders to train on
    n_test: int = 1000  # fresh renders (another seed) to measure its accuracy on
    keep_absent: float = 0.3  # share of absent-colour slots trained on (all present ones are)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=1500, batch_size=128, lr=2e-3, warmup_steps=50))


def train_shapes_classifier(out_dir: str | Path, cfg: ShapesClassifierTrainConfig, *, command: str | None = None,
                            resume: bool | str | Path = False, reset_data_position: bool = False) -> dict:
    """Render ground truth, train the classifier, measure it on fresh renders, save the component folder.

    `resume`/`reset_data_position`: see `t2i.training.trainer.train`; a run stopped by a signal returns
    {"stopped": ...} and writes no model."""
    from t2i.evaluation.compositional import reading_accuracy
    from t2i.training.trainer import random_batches, train

    train_cfg = cfg.train
    side = cfg.model.image_size
    _, attributes, pixels = rendered_set(cfg.n_train, render_size=side, image_size=side, seed=TRAIN_SEED)
    per_image = [targets(a["shapes"], side) for a in attributes]
    tensors = training_slots(pixels, per_image, keep_absent=cfg.keep_absent, seed=TRAIN_SEED)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train_cfg.seed)
        model = ShapesClassifier(cfg.model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = train(model, classifier_loss, random_batches(tensors, train_cfg.micro_batch_size, seed=train_cfg.seed),
                   train_cfg, log_dir=out_dir, desc="shapes classifier", resume=resume,
                   reset_data_position=reset_data_position)

    def save() -> dict:
        model.cpu().eval().requires_grad_(False)
        model.save_pretrained(out_dir)
        test_images, test_attributes, _ = rendered_set(cfg.n_test, render_size=side, image_size=side, seed=TEST_SEED)
        accuracy = reading_accuracy(model, test_images, test_attributes)
        info = {"component": "shapes-classifier", "image_size": side, "train_seed": TRAIN_SEED, "test_seed": TEST_SEED,
                "config": {"model": asdict(cfg.model), "n_train": cfg.n_train, "n_test": cfg.n_test,
                           "train": asdict(train_cfg)},
                "command": command,
                "metrics": {"accuracy_on_fresh_renders": accuracy, "final_loss": result.final_loss,
                            "train_seconds": result.seconds},
                "losses": result.losses}
        return info

    return finish_training(result, "shapes-classifier", out_dir, save)
