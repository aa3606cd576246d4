"""`t2i compare`: several pipelines judged side by side on a corpus, by the same evaluator, on the same prompts.

Made for a corpus like `t2i data emoji-sets`, whose rows name a concept (`codepoints`: the same emoji in every
style), a style (`set`) and a split (concept families held out of training). Per pipeline:

- **held-out concepts** (never drawn in training in any style): FID and KID of N generated images against every
  held-out real image, CLIP score (and its floor with shuffled captions), and whether the prompted concept is
  recognised;
- **seen concepts** (the training split): recognition and style, overall and per set, and FID against other
  training images (held-out FID minus seen FID: what the concepts never trained on cost).

*Recognised* means: among all the corpus's images, in the evaluator's image features, the prompted concept is
one of the k concepts whose nearest image is nearest to the generated image (top-1, top-5). *Style* is read by
a judge trained on the training split's real images (labels: the set): by default a small convolutional network
on their pixels (t2i.evaluation.style), or (`style_judge="clip"`, the judge of earlier comparisons) a linear
classifier on the evaluator's features. How often it names the set of the held-out concepts' real images, which
it never saw, is reported as the judge's own accuracy. Real images go through the same measures (recognition
leaves the image itself out), so every figure has its ceiling beside it.

A pipeline smaller than the data's images (the 32-px model beside a 64-px one) is enlarged with a bicubic
filter before it is measured, and the result says so.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from t2i.data import Record, dataset_fingerprint, scan_folder
from t2i.data.layout import TRAIN
from t2i.evaluation.clip import ClipExtractor
from t2i.evaluation.evaluate import generate
from t2i.evaluation.metrics import clip_score, frechet_distance, kernel_distance
from t2i.evaluation.reference import data_image_size, evaluation_subset, reference_features
from t2i.evaluation.style import PixelStyleClassifier, StyleNetConfig, as_pixels, trained_style_classifier
from t2i.files import atomic_folder
from t2i.images import load_image

log = logging.getLogger("t2i.evaluation")

HELD_OUT = "held_out"
STYLE_JUDGES = ("pixels", "clip")  # CompareConfig.style_judge


@dataclass
class CompareConfig:
    n_held_out: int = 500  # generated images per pipeline for held-out prompts (FID, KID, CLIP score, recognition)
    n_seen: int = 500  # generated images per pipeline for training-split prompts (recognition, style)
    seed: int = 0  # image i uses seed + i; the prompts are a seeded, fixed subset of each split
    batch_size: int = 64
    guidance: float | None = None  # None: each pipeline's own default
    steps: int | None = None  # None: each pipeline's own default
    concept_field: str = "codepoints"  # the metadata field naming an image's concept
    style_field: str = "set"  # the metadata field naming an image's style
    style_judge: str = "pixels"  # "pixels": a network on the images; "clip": a linear probe on the evaluator's features
    style_epochs: int = 8  # epochs of the pixel judge over the training split's real images
    classifier_steps: int = 500  # full-batch optimiser steps of the "clip" judge


# -- recognition and style: plain functions on feature matrices -------------------------------------------


def concept_ranks(queries: torch.Tensor, bank: torch.Tensor, bank_concepts: list[str], *,
                  exclude: list[int | None] | None = None, k: int = 5) -> list[list[str]]:
    """The k concepts nearest each query (N, D) in cosine similarity, each concept ranked by its nearest image of
    `bank` (M, D); `exclude[i]`: a bank row query i may not match (itself, for real images)."""
    q, b = F.normalize(queries.double(), dim=-1), F.normalize(bank.double(), dim=-1)
    names = sorted(set(bank_concepts))
    position = {name: i for i, name in enumerate(names)}
    index = torch.tensor([position[c] for c in bank_concepts])
    out = []
    for start in range(0, len(q), 256):
        sim = q[start : start + 256] @ b.T  # (n, M)
        if exclude is not None:
            for row, ex in enumerate(exclude[start : start + 256]):
                if ex is not None:
                    sim[row, ex] = -torch.inf
        best = torch.full((sim.shape[0], len(names)), -torch.inf, dtype=sim.dtype)
        best.scatter_reduce_(1, index.expand_as(sim), sim, reduce="amax")  # per concept: its nearest image
        top = best.topk(min(k, len(names)), dim=1).indices
        out += [[names[j] for j in row] for row in top.tolist()]
    return out


def top_k_rate(ranked: list[list[str]], wanted: list[str], k: int) -> float:
    """Share of queries whose wanted concept is among their first k."""
    if len(ranked) != len(wanted):
        raise ValueError(f"{len(ranked)} rankings for {len(wanted)} wanted concepts")
    return sum(w in r[:k] for r, w in zip(ranked, wanted)) / max(1, len(wanted))


class StyleClassifier:
    """Multinomial logistic regression on L2-normalised features: which set drew an image."""

    reads = "features"  # what predict() takes (t2i.evaluation.style.PixelStyleClassifier reads "pixels")

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, labels: list[str]):
        self.weight, self.bias, self.labels = weight, bias, labels

    @classmethod
    def fit(cls, features: torch.Tensor, labels: list[str], *, steps: int = 500, weight_decay: float = 1e-4,
            seed: int = 0) -> StyleClassifier:
        names = sorted(set(labels))
        if len(names) < 2:
            raise ValueError(f"a style classifier needs at least two styles; the data has {names}")
        x = F.normalize(features.float(), dim=-1)
        y = torch.tensor([names.index(label) for label in labels])
        g = torch.Generator().manual_seed(seed)
        w = (torch.randn(x.shape[1], len(names), generator=g) * 0.01).requires_grad_()
        b = torch.zeros(len(names), requires_grad=True)
        opt = torch.optim.Adam([w, b], lr=0.05)
        for _ in range(steps):  # full batch: the features of a corpus fit in memory many times over
            loss = F.cross_entropy(x @ w * 10 + b, y) + weight_decay * w.pow(2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return cls(w.detach(), b.detach(), names)

    def predict(self, features: torch.Tensor) -> list[str]:
        logits = F.normalize(features.float(), dim=-1) @ self.weight * 10 + self.bias
        return [self.labels[i] for i in logits.argmax(1).tolist()]


def accuracy(predicted: list[str], wanted: list[str]) -> float:
    return sum(p == w for p, w in zip(predicted, wanted)) / max(1, len(wanted))


def per_group(values: list[bool], groups: list[str]) -> dict[str, float]:
    """Mean of `values` per group name, groups sorted."""
    out = {}
    for name in sorted(set(groups)):
        picked = [v for v, g in zip(values, groups) if g == name]
        out[name] = sum(picked) / len(picked)
    return out


# -- the comparison --------------------------------------------------------------------------------------


def _field(record: Record, name: str) -> str:
    value = record.extra.get(name)
    if value is None:
        raise ValueError(f"{record.path}: the metadata has no {name!r} field; t2i compare needs a concept and a "
                         "style per image (as t2i data emoji-sets writes)")
    return str(value)


def enlarge(images: list[Image.Image], size: int) -> list[Image.Image]:
    """Images smaller than `size` enlarged with a bicubic filter (how a 32-px model is judged on 64-px data)."""
    return [im if im.size == (size, size) else im.resize((size, size), Image.Resampling.BICUBIC) for im in images]


def measure(images: list[Image.Image], prompts: list[str], rows: list[Record], *, clip: ClipExtractor,
            bank: torch.Tensor, bank_rows: list[Record], classifier: StyleClassifier | PixelStyleClassifier,
            cfg: CompareConfig,
            reference: torch.Tensor | None = None, exclude: list[int | None] | None = None) -> dict:
    """Recognition, style, CLIP score and (against the real images' features `reference`) FID and KID of images
    drawn for `rows`."""
    features = clip(images)
    concepts = [_field(r, cfg.concept_field) for r in rows]
    styles = [_field(r, cfg.style_field) for r in rows]
    ranked = concept_ranks(features, bank, [_field(r, cfg.concept_field) for r in bank_rows], exclude=exclude)
    predicted = classifier.predict(features if classifier.reads == "features" else images)
    top5 = [c in r[:5] for r, c in zip(ranked, concepts)]
    out = {
        "n": len(images),
        "top1": top_k_rate(ranked, concepts, 1),
        "top5": top_k_rate(ranked, concepts, 5),
        "style_accuracy": accuracy(predicted, styles),
        "top5_per_set": per_group(top5, styles),
        "style_accuracy_per_set": per_group([p == s for p, s in zip(predicted, styles)], styles),
    }
    text = clip.text_features(prompts)
    out["clip_score"] = float(clip_score(features, text).mean())
    out["clip_score_shuffled"] = float(clip_score(features, text.roll(1, dims=0)).mean())
    if reference is not None:
        out["fid"] = frechet_distance(reference, features)
        out["kid"], out["kid_std"] = kernel_distance(reference, features, seed=cfg.seed)
    return out


@dataclass
class Judges:
    """What every comparison on a corpus judges with: its records and image size, the evaluator CLIP, every corpus
    image's features (`bank`, rows in `bank_rows` order; `where`: a path's row), the held-out and training masks
    over them, and the style judge (`judge`: what it is and how often it names real held-out images right)."""

    records: list[Record]
    size: int
    fingerprint: str
    clip: ClipExtractor
    bank: torch.Tensor
    bank_rows: list[Record]
    where: dict[str, int]
    held_mask: torch.Tensor
    train_mask: torch.Tensor
    classifier: StyleClassifier | PixelStyleClassifier
    judge: dict

    @classmethod
    def build(cls, data_dir: str | Path, clip_dir: str | Path, cfg: CompareConfig, *,
              cache_dir: str | Path | None = None) -> Judges:
        """Scan the corpus, check it has what a comparison needs, and load or compute the features and the judge
        (both cached on disk, keyed by the corpus's fingerprint)."""
        records, _ = scan_folder(data_dir, verify=False)
        for name in (cfg.concept_field, cfg.style_field):
            _field(records[0], name)  # fail before anything slow
        held = sum(r.extra.get("split") == HELD_OUT for r in records)
        seen = sum(r.extra.get("split", TRAIN) == TRAIN for r in records)
        if held < 2 or seen < 2:
            raise ValueError(f"{data_dir} has {held} held-out and {seen} training rows; t2i compare needs both "
                             "(a corpus with a held-out split, as t2i data emoji-sets writes)")
        size = data_image_size(records)[0]
        clip = ClipExtractor.from_folder(clip_dir)
        # Every corpus image's features, in the order of the seeded subset of all of them (cached on disk).
        fingerprint = dataset_fingerprint(data_dir)
        bank_rows = evaluation_subset(records, len(records))
        bank = reference_features(data_dir, clip, resolution=size, n=len(records), cache_dir=cache_dir,
                                  records=records, fingerprint=fingerprint).features
        held_mask = torch.tensor([r.extra.get("split") == HELD_OUT for r in bank_rows])
        train_mask = torch.tensor([r.extra.get("split", TRAIN) == TRAIN for r in bank_rows])
        classifier, judge = style_judge(bank, bank_rows, held_mask, train_mask, size, fingerprint, cfg, cache_dir)
        return cls(records, size, fingerprint, clip, bank, bank_rows, {str(r.path): i for i, r in enumerate(bank_rows)},
                   held_mask, train_mask, classifier, judge)


def reference_rows(mask: torch.Tensor, judged: list[int], n: int, seed: int) -> torch.Tensor:
    """Indices of n rows (a seeded draw; fewer if there are fewer) where `mask` is true and that are not `judged`."""
    excluded = set(judged)
    others = [i for i in torch.nonzero(mask).flatten().tolist() if i not in excluded]
    picked = torch.randperm(len(others), generator=torch.Generator().manual_seed(seed))[:n]
    return torch.tensor([others[i] for i in picked.tolist()], dtype=torch.long)


def compare_pipelines(models: list[str | Path], data_dir: str | Path, clip_dir: str | Path, out_dir: str | Path,
                      cfg: CompareConfig, *, cache_dir: str | Path | None = None, command: str | None = None,
                      speed=None) -> dict:
    """Judge each pipeline folder on the held-out and the seen prompts; write compare.json and compare.md.
    `speed`: how every pipeline runs its networks (t2i.pipeline.speed.SpeedConfig; None: the defaults)."""
    import t2i

    if cfg.style_judge not in STYLE_JUDGES:
        raise ValueError(f"unknown style judge {cfg.style_judge!r}: one of {', '.join(STYLE_JUDGES)}")
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    j = Judges.build(data_dir, clip_dir, cfg, cache_dir=cache_dir)
    records, size, clip, bank, bank_rows, where = j.records, j.size, j.clip, j.bank, j.bank_rows, j.where
    held = [r for r in records if r.extra.get("split") == HELD_OUT]
    seen = [r for r in records if r.extra.get("split", TRAIN) == TRAIN]
    classifier, judge, held_mask = j.classifier, j.judge, j.held_mask
    real_held_out = bank[held_mask]
    held_rows = evaluation_subset(held, cfg.n_held_out, seed=cfg.seed)
    seen_rows = evaluation_subset(seen, cfg.n_seen, seed=cfg.seed)
    # Seen FID's reference: as many training-split images as the held-out split has, none of them a judged prompt's
    # own, so seen and held-out FID compare at one reference size and the real images' seen FID is a fair floor.
    real_seen = bank[reference_rows(j.train_mask, [where[str(r.path)] for r in seen_rows], len(held), cfg.seed)]
    common = dict(clip=clip, bank=bank, bank_rows=bank_rows, classifier=classifier, cfg=cfg)

    def real(rows, reference=None):  # the real images of these rows, measured like generated ones (themselves left out)
        feats_index = [where[str(r.path)] for r in rows]
        images = [load_image(r.path, size) for r in rows]
        return measure(images, [r.caption for r in rows], rows, exclude=feats_index, reference=reference, **common)

    result = {
        "data": str(data_dir), "data_fingerprint": j.fingerprint, "image_size": size, "clip_model": clip.name,
        "config": asdict(cfg), "speed": asdict(speed) if speed is not None else None, "command": command,
        "corpus_images": len(records),
        "held_out_images": len(held), "concepts": len(set(_field(r, cfg.concept_field) for r in records)),
        "styles": classifier.labels, "style_judge": judge,
        "seen_reference_images": len(real_seen),
        "real": {"held_out": real(held_rows), "seen": real(seen_rows, real_seen)},
        "models": {},
    }
    log.info("real images: held-out top-5 %.3f, seen top-5 %.3f, style %.3f", result["real"]["held_out"]["top5"],
             result["real"]["seen"]["top5"], result["real"]["seen"]["style_accuracy"])
    for model in models:
        start = time.perf_counter()
        pipe = t2i.load(model, speed=speed)
        setting = {"guidance": cfg.guidance, "steps": cfg.steps}
        entry = {"image_size": pipe.image_size, "enlarged_from": pipe.image_size if pipe.image_size < size else None,
                 "variant": pipe.info.get("variant", "latent"), "bf16": bool(getattr(pipe, "bf16", False)),
                 "guidance": cfg.guidance if cfg.guidance is not None else pipe.defaults.get("guidance"),
                 "steps": cfg.steps if cfg.steps is not None else pipe.defaults.get("steps")}
        if pipe.image_size > size:
            raise ValueError(f"{model} draws {pipe.image_size} px images, larger than the data's {size} px")
        for part, rows, reference in (("held_out", held_rows, real_held_out), ("seen", seen_rows, real_seen)):
            prompts = [r.caption for r in rows]
            seeds = [cfg.seed + i for i in range(len(rows))]
            images = enlarge(generate(pipe, prompts, seeds, setting, batch_size=cfg.batch_size,
                                      desc=f"{Path(model).name} {part}"), size)
            entry[part] = measure(images, prompts, rows, reference=reference, **common)
        entry["seconds"] = round(time.perf_counter() - start, 1)
        result["models"][str(model)] = entry
        log.info("%s: held-out FID %.2f, top-5 %.3f; seen FID %.2f, top-5 %.3f, style %.3f", model,
                 entry["held_out"]["fid"], entry["held_out"]["top5"], entry["seen"]["fid"], entry["seen"]["top5"],
                 entry["seen"]["style_accuracy"])
    with atomic_folder(out_dir) as tmp:
        (tmp / "compare.json").write_text(json.dumps(result, indent=2) + "\n")
        (tmp / "compare.md").write_text(markdown_table(result))
    return result


def style_judge(bank: torch.Tensor, bank_rows: list[Record], held_mask: torch.Tensor, train_mask: torch.Tensor,
                size: int, fingerprint: str, cfg: CompareConfig,
                cache_dir: str | Path | None) -> tuple[StyleClassifier | PixelStyleClassifier, dict]:
    """The style judge trained on the training split's real images, and what it is with its accuracy on the
    held-out split's real images (concepts it never saw)."""
    train_rows = [r for r, m in zip(bank_rows, train_mask) if m]
    held_rows = [r for r, m in zip(bank_rows, held_mask) if m]
    train_styles = [_field(r, cfg.style_field) for r in train_rows]
    held_styles = [_field(r, cfg.style_field) for r in held_rows]
    if cfg.style_judge == "clip":
        classifier = StyleClassifier.fit(bank[train_mask], train_styles, steps=cfg.classifier_steps, seed=cfg.seed)
        predicted = classifier.predict(bank[held_mask])
        judge = {"kind": "clip", "what": "a linear classifier on the evaluator's features"}
    else:  # "pixels"
        def load_pixels():  # only when the judge is not cached
            return as_pixels([load_image(r.path, size) for r in tqdm(train_rows, desc="style judge: images",
                                                                      unit="image", leave=False)])

        net_cfg = StyleNetConfig(epochs=cfg.style_epochs, seed=cfg.seed)
        classifier = trained_style_classifier(load_pixels, train_styles, image_size=size, fingerprint=fingerprint,
                                              cfg=net_cfg, cache_dir=cache_dir)
        predicted = classifier.predict([load_image(r.path, size) for r in held_rows])
        judge = {"kind": "pixels", "what": f"a convolutional network on the pixels, {cfg.style_epochs} epochs",
                 "config": asdict(net_cfg)}
    judge["held_out_real_accuracy"] = accuracy(predicted, held_styles)
    judge["held_out_real_accuracy_per_set"] = per_group([p == w for p, w in zip(predicted, held_styles)], held_styles)
    log.info("style judge (%s): %.3f of the held-out real images named right", judge["kind"],
             judge["held_out_real_accuracy"])
    return classifier, judge


def markdown_table(result: dict) -> str:
    """The comparison as a markdown table, one row per pipeline, the real images' ceilings last."""
    head = ("| model | px | held-out FID ↓ | KID ↓ | CLIP score ↑ (shuffled) | held-out top-1 / top-5 | "
            "seen top-1 / top-5 | seen style ✓ |\n|---|---|---|---|---|---|---|---|\n")
    rows = []
    for name, m in result["models"].items():
        h, s = m["held_out"], m["seen"]
        px = f"{m['image_size']} → {result['image_size']}" if m["enlarged_from"] else str(m["image_size"])
        bf16 = ", bf16" if m.get("bf16") else ""  # ran under bfloat16 autocast (asked for, or the cascade's default)
        rows.append(f"| {Path(name).name} ({m['variant']}, guidance {m['guidance']}{bf16}) | {px} | {h['fid']:.2f} | "
                    f"{h['kid']:.3f} | {h['clip_score']:.2f} ({h['clip_score_shuffled']:.2f}) | "
                    f"{h['top1']:.1%} / {h['top5']:.1%} | {s['top1']:.1%} / {s['top5']:.1%} | "
                    f"{s['style_accuracy']:.1%} |")
    h, s = result["real"]["held_out"], result["real"]["seen"]
    rows.append(f"| real images (ceiling) | {result['image_size']} | – | – | {h['clip_score']:.2f} "
                f"({h['clip_score_shuffled']:.2f}) | {h['top1']:.1%} / {h['top5']:.1%} | {s['top1']:.1%} / "
                f"{s['top5']:.1%} | {s['style_accuracy']:.1%} |")
    if "fid" in result["real"]["seen"]:  # comparisons made before seen FID was measured have none
        rows.append(f"\nSeen FID ↓ (images of the seen prompts against {result['seen_reference_images']} real images "
                    "of the training split, none of them those prompts' own; held-out FID minus this is what the "
                    "concepts never seen cost): " + ", ".join(f"{Path(name).name} {m['seen']['fid']:.2f}"
                                                     for name, m in result["models"].items())
                    + f"; real images {result['real']['seen']['fid']:.2f} (floor).")
    sets = result["styles"]
    per_set = ("\n\nSeen prompts per set (top-5 recognition / style classified right):\n\n| model | "
               + " | ".join(sets) + " |\n|---|" + "---|" * len(sets) + "\n")
    for name, m in [*result["models"].items(), ("real images", {"seen": result["real"]["seen"]})]:
        s = m["seen"]
        per_set += f"| {Path(name).name} | " + " | ".join(
            f"{s['top5_per_set'].get(k, 0):.0%} / {s['style_accuracy_per_set'].get(k, 0):.0%}" for k in sets) + " |\n"
    judge = result.get("style_judge")  # absent from comparisons made before the judge was recorded
    if judge:
        per_set += (f"\nStyle judge: {judge['what']}, trained on the training split's real images; it names the set "
                    f"of {judge['held_out_real_accuracy']:.1%} of the held-out concepts' real images (which it never "
                    "saw).\n")
    return head + "\n".join(rows) + per_set
