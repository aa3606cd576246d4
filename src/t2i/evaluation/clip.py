"""CLIP for scoring (Radford et al. 2021): image and text embeddings, and an in-domain CLIP trained here.

`ClipExtractor` wraps any local transformers `CLIPModel` folder: its image embeddings are the
features for FID/KID, and image–text cosine similarity gives the CLIP score. With no model hub, t2i
trains a small CLIP contrastively on the dataset's own image–caption pairs (`train_clip`) and saves
it as a normal CLIPModel folder with tokenizer and image-processor files, so transformers'
`CLIPModel`/`CLIPProcessor` load it like any other.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from t2i.components import weights_digest
from t2i.evaluation.features import FeatureExtractor, to_batch
from t2i.training.finish import finish_training
from t2i.training.trainer import TrainConfig

log = logging.getLogger("t2i.evaluation")

# OpenAI CLIP's pixel normalisation, also used by the in-domain CLIP so either reads a folder the same way.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class ClipConfig:
    """A small CLIPModel: a ViT image tower and a causal text transformer, projected to one space."""

    image_size: int = 32  # the vision tower's input side in pixels
    patch_size: int = 4  # ViT patch side in pixels: (image_size / patch_size)² tokens
    vision_width: int = 128  # ViT hidden size
    vision_layers: int = 4  # ViT layers
    text_width: int = 128  # text transformer hidden size
    text_layers: int = 2  # text transformer layers
    heads: int = 4  # attention heads in both towers
    projection_dim: int = 64  # the shared embedding space (also the FID feature dimension)
    max_length: int = 32  # tokens per caption, [CLS] and [SEP] included

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise ValueError(f"image size {self.image_size} is not a multiple of the patch size {self.patch_size}")


# Size presets: a plain dict of small functions of the image size.
CLIP_PRESETS = {
    "tiny": lambda size: ClipConfig(image_size=size, patch_size=max(1, size // 4), vision_width=64, vision_layers=2, text_width=64,
                                    text_layers=1, heads=2, projection_dim=32),
    # 4×4 patches whatever the size: 16 image tokens keep training a few minutes on a CPU.
    "small": lambda size: ClipConfig(image_size=size, patch_size=max(1, size // 4), max_length=24),
}


@dataclass
class ClipTrainConfig:
    model: ClipConfig = field(default_factory=ClipConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=1000, batch_size=128, lr=1e-3,
                                                                   warmup_steps=100, weight_decay=0.1))
    held_out: int = 256  # image–caption pairs kept out of training to measure retrieval accuracy


def build_clip(cfg: ClipConfig, tokenizer, *, seed: int = 0):
    """A randomly initialised transformers CLIPModel whose text tower pools at the tokenizer's [SEP]."""
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    text = CLIPTextConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=cfg.text_width, intermediate_size=4 * cfg.text_width,
        num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.heads, max_position_embeddings=cfg.max_length,
        projection_dim=cfg.projection_dim,
        # CLIP pools the text at the first eos_token_id; with MiniLM's (BERT) tokenizer that is [SEP], which
        # ends every caption. (The legacy value 2 would make transformers pool at the largest token id.)
        eos_token_id=tokenizer.sep_token_id, bos_token_id=tokenizer.cls_token_id, pad_token_id=tokenizer.pad_token_id)
    vision = CLIPVisionConfig(
        image_size=cfg.image_size, patch_size=cfg.patch_size, hidden_size=cfg.vision_width,
        intermediate_size=4 * cfg.vision_width, num_hidden_layers=cfg.vision_layers, num_attention_heads=cfg.heads,
        projection_dim=cfg.projection_dim)
    config = CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=cfg.projection_dim)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # transformers initialises from the global RNG; keep it contained
        return CLIPModel(config)


def normalise_pixels(pixels: torch.Tensor, mean=CLIP_MEAN, std=CLIP_STD) -> torch.Tensor:
    """(B, 3, H, W) in [0, 255] → CLIP's input normalisation."""
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (pixels / 255 - m) / s


class ClipExtractor(FeatureExtractor):
    """A local CLIPModel folder: image embeddings (FID/KID features), text embeddings, CLIP score."""

    def __init__(self, model, tokenizer, name: str, *, mean=CLIP_MEAN, std=CLIP_STD, max_length: int = 77):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.resolution = int(model.config.vision_config.image_size)
        self.dim = int(model.config.projection_dim)
        self.mean, self.std = tuple(mean), tuple(std)
        self.max_length = max_length

    @classmethod
    def from_folder(cls, folder: str | Path) -> ClipExtractor:
        """Load any local CLIPModel folder (config.json + weights + tokenizer files)."""
        from transformers import AutoTokenizer, CLIPModel

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"CLIP folder {folder} has no config.json (make one with t2i train clip)")
        config = json.loads((folder / "config.json").read_text())
        if config.get("model_type") != "clip":
            raise ValueError(f"{folder} holds a {config.get('model_type')!r} model, not a CLIPModel")
        try:
            model = CLIPModel.from_pretrained(folder)
            tokenizer = AutoTokenizer.from_pretrained(folder)
        except OSError as e:
            raise OSError(f"cannot load the CLIP model in {folder}: {str(e).splitlines()[0]}") from None
        mean, std = CLIP_MEAN, CLIP_STD
        processor = folder / "preprocessor_config.json"
        if processor.is_file():
            p = json.loads(processor.read_text())
            mean, std = p.get("image_mean", mean), p.get("image_std", std)
        max_length = min(int(model.config.text_config.max_position_embeddings), 77)
        return cls(model, tokenizer, f"clip:{folder.name}:{weights_digest(folder)[:8]}", mean=mean, std=std,
                   max_length=max_length)

    def pixel_values(self, pixels: torch.Tensor) -> torch.Tensor:
        return normalise_pixels(pixels, self.mean, self.std)

    def forward_batch(self, pixels: torch.Tensor) -> torch.Tensor:
        return image_embeddings(self.model, self.pixel_values(pixels))

    @torch.inference_mode()
    def text_features(self, texts: list[str], *, batch_size: int = 256) -> torch.Tensor:
        """Projected text embeddings (N, dim) of captions or prompts."""
        out = []
        for i in range(0, len(texts), batch_size):
            tokens = self.tokenizer(texts[i : i + batch_size], padding="max_length", truncation=True,
                                    max_length=self.max_length, return_tensors="pt")
            out.append(text_embeddings(self.model, tokens["input_ids"], tokens["attention_mask"]).float())
        return torch.cat(out)


def image_embeddings(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """CLIP's projected image embedding (B, dim), not normalised."""
    return model.visual_projection(model.vision_model(pixel_values=pixel_values).pooler_output)


def text_embeddings(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """CLIP's projected text embedding (B, dim) pooled at the end-of-text token, not normalised."""
    return model.text_projection(model.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output)


def contrastive_loss(model, batch: dict, generator: torch.Generator) -> torch.Tensor:
    """CLIP's symmetric InfoNCE over the batch: each image's caption against every other caption, and back."""
    img = F.normalize(image_embeddings(model, batch["pixel_values"]), dim=-1)  # (B, P)
    txt = F.normalize(text_embeddings(model, batch["input_ids"], batch["attention_mask"]), dim=-1)  # (B, P)
    logits = model.logit_scale.exp().clamp(max=100) * img @ txt.T  # (B, B)
    # Procedural captions repeat ("a red circle on the left"): pairs with the same caption are all positives,
    # where plain InfoNCE would push an image away from its own caption's duplicates.
    same = (batch["caption_id"][:, None] == batch["caption_id"][None, :]).float()  # (B, B)
    target = same / same.sum(1, keepdim=True)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def retrieval_accuracy(extractor: ClipExtractor, images, captions: list[str]) -> float:
    """Share of images whose own caption is the most similar of all the captions given (top-1, image → text)."""
    img = F.normalize(extractor(images), dim=-1)
    txt = F.normalize(extractor.text_features(captions), dim=-1)
    sim = img @ txt.T  # (N, N)
    # Captions can repeat: count a hit when the best caption's text equals the image's own caption.
    best = sim.argmax(1).tolist()
    return float(np.mean([captions[b] == captions[i] for i, b in enumerate(best)]))


def _write_image_processor(folder: Path, size: int) -> None:
    """transformers' preprocessor_config.json, so CLIPProcessor reads images as this model was trained."""
    config = {"image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": size},
              "resample": 3, "do_center_crop": True, "crop_size": {"height": size, "width": size},
              "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": list(CLIP_MEAN),
              "image_std": list(CLIP_STD), "do_convert_rgb": True}
    (folder / "preprocessor_config.json").write_text(json.dumps(config, indent=2) + "\n")


def train_clip(data_dir: str | Path, out_dir: str | Path, cfg: ClipTrainConfig, *, command: str | None = None,
               resume: bool | str | Path = False, reset_data_position: bool = False, split: str | None = "train") -> dict:
    """Train a small CLIPModel on a dataset's image–caption pairs and save it as a CLIPModel folder.

    `split`: only the rows of that split ("train" by default: rows marked "held_out" stay unseen, so a CLIP
    score on them is not flattered by memory; None: all rows). `resume`/`reset_data_position`: see
    `t2i.training.trainer.train`. A run stopped by a signal returns {"stopped": ...} and writes no model."""
    from transformers import AutoTokenizer

    from t2i.data import dataset_fingerprint, scan_folder
    from t2i.images import load_image
    from t2i.text import minilm_path
    from t2i.training.trainer import random_batches, train

    train_cfg = cfg.train
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    tokenizer.model_max_length = cfg.model.max_length
    model = build_clip(cfg.model, tokenizer, seed=train_cfg.seed)
    records, report = scan_folder(data_dir, split=split)
    fingerprint = dataset_fingerprint(data_dir, split)
    size = cfg.model.image_size
    images = [load_image(r.path, size) for r in records]
    captions = [r.caption for r in records]
    held = min(cfg.held_out, len(records) // 10)
    pixels = normalise_pixels(torch.cat([to_batch(images[i : i + 512], size) for i in range(0, len(images), 512)]))
    tokens = tokenizer(captions, padding="max_length", truncation=True, max_length=cfg.model.max_length,
                       return_tensors="pt")
    distinct = {c: i for i, c in enumerate(sorted(set(captions)))}
    caption_id = torch.tensor([distinct[c] for c in captions])
    tensors = {"pixel_values": pixels[held:], "input_ids": tokens["input_ids"][held:],
               "attention_mask": tokens["attention_mask"][held:], "caption_id": caption_id[held:]}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = train(model, contrastive_loss, random_batches(tensors, train_cfg.micro_batch_size, seed=train_cfg.seed),
                   train_cfg, log_dir=out_dir, desc="clip", resume=resume, reset_data_position=reset_data_position,
                   data_fingerprint=fingerprint)

    def save() -> dict:
        model.cpu().eval()
        model.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)
        _write_image_processor(out_dir, size)
        extractor = ClipExtractor.from_folder(out_dir)
        accuracy = retrieval_accuracy(extractor, images[:held], captions[:held]) if held else float("nan")
        info = {
            "component": "clip",
            "image_size": size,
            "data": str(data_dir),
            "data_split": split,
            "data_fingerprint": fingerprint,
            "data_report": report.summary(),
            "config": {"model": asdict(cfg.model), "train": asdict(train_cfg), "held_out": held},
            "command": command,
            "metrics": {"held_out_retrieval_top1": accuracy, "held_out_pairs": held, "final_loss": result.final_loss,
                        "train_seconds": result.seconds},
            "losses": result.losses,
        }
        return info

    return finish_training(result, "clip", out_dir, save)
