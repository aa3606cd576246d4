"""`t2i eval`: generate with fixed prompts and seeds, measure, and write metrics.json + report.html.

Works on any pipeline through the shared interface (`t2i.pipeline.base.Pipeline`): prompts in, PIL
images out. Per setting (sampler, steps, guidance) it generates N images for N captions of the data's
fixed evaluation subset (image i: caption i, seed seed+i), and computes FID and KID against the real
images of that subset, CLIP score against the prompts, and, on shapes data, compositional accuracy on
the held-out prompt set. A guidance sweep gives the FID-vs-CLIP-score curve (Imagen, Saharia et al.
2022, Fig. A.11); a sampler × steps sweep gives FID vs the number of network evaluations.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from t2i.data import dataset_fingerprint, scan_folder
from t2i.files import atomic_folder
from t2i.data.layout import TRAIN
from t2i.evaluation import compositional as comp
from t2i.evaluation.clip import ClipExtractor
from t2i.evaluation.features import FeatureExtractor
from t2i.evaluation.metrics import (MIN_FID_SAMPLES, WARN_FID_SAMPLES, FeatureSet, check_comparable, clip_score,
                                    frechet_distance, kernel_distance)
from t2i.evaluation.report import label, render_report
from t2i.evaluation.reference import data_image_size, evaluation_subset, reference_features

log = logging.getLogger("t2i.evaluation")


@dataclass
class EvalConfig:
    n: int = 2000  # generated images per setting for FID, KID and CLIP score
    n_real: int = 10000  # real images for the reference statistics (at most the data's size)
    batch_size: int = 64  # prompts per pipeline call
    seed: int = 0  # image i of every setting uses seed + i; the data subset is fixed by its own seed
    guidance: tuple[float, ...] = ()  # guidance scales to sweep (FID vs CLIP score); () = the pipeline's default
    samplers: tuple[str, ...] = ()  # samplers to sweep (× steps: FID vs NFE); () = the pipeline's default
    steps: tuple[int, ...] = ()  # step counts to sweep; () = the pipeline's default
    compositional_images: int = 4  # images per held-out prompt on shapes data (0: skip compositional accuracy)
    classifier_renders: int = 500  # fresh renders to measure the shapes classifier's own accuracy on
    min_samples: int = MIN_FID_SAMPLES  # refuse FID below this many images per set
    grid_images: int = 8  # images per prompt in the report's sample grids
    split: str | None = None  # only the data rows of this split are real images and prompts (e.g. "held_out",
    # which t2i data emoji marks and training leaves out); None: every row


@dataclass
class Evaluators:
    """The networks that judge: FID/KID features, the CLIP for CLIP score, the shapes classifier (optional)."""

    features: FeatureExtractor
    clip: ClipExtractor
    classifier: object | None = None  # ShapesClassifier
    classifier_info: dict = field(default_factory=dict)  # where it came from, its accuracy on renders


def settings_grid(defaults: dict, cfg: EvalConfig) -> list[dict]:
    """The settings to evaluate: the guidance sweep at default sampler/steps, then sampler × steps at
    default guidance; just the defaults when nothing is swept. Duplicates are dropped."""
    base = {k: defaults.get(k) for k in ("sampler", "steps", "guidance")}
    if base["guidance"] is not None:
        base["guidance"] = float(base["guidance"])
    settings = [{**base, "guidance": float(g)} for g in cfg.guidance]
    for sampler in cfg.samplers or (base["sampler"],):
        for steps in cfg.steps or (base["steps"],):
            if cfg.samplers or cfg.steps:
                settings.append({**base, "sampler": sampler, "steps": int(steps)})
    settings = settings or [base]
    unique = []
    for s in settings:
        if s not in unique:
            unique.append(s)
    return unique


def recorded_data(info: dict) -> str | None:
    """The training data folder a pipeline's t2i.json records (top level, or any component's)."""
    if info.get("data"):
        return info["data"]
    for part in (info.get("components") or {}).values():
        if isinstance(part, dict) and part.get("data"):
            return part["data"]
    return None


def generate(pipe, prompts: list[str], seeds: list[int], setting: dict, *, batch_size: int, desc: str):
    """Images for (prompt i, seed i), batched, with a progress bar."""
    kwargs = {k: v for k, v in setting.items() if v is not None}
    images = []
    bar = tqdm(range(0, len(prompts), batch_size), desc=desc, unit="batch", disable=None)
    for i in bar:
        images += pipe(prompts[i : i + batch_size], num_images=1, seed=seeds[i : i + batch_size], **kwargs)
    return images


def evaluate_pipeline(pipe, data_dir: str | Path, evaluators: Evaluators, cfg: EvalConfig, *,
                      cache_dir: str | Path | None, records=None) -> tuple[dict, dict]:
    """Generate and measure every setting. Returns (metrics, samples): metrics as written to metrics.json,
    samples = {setting index: {prompt: [images]}} for the report's grids."""
    data_dir = Path(data_dir)
    size = pipe.image_size
    if records is None:
        records, _ = scan_folder(data_dir, verify=False, split=cfg.split)
    width, height = data_image_size(records)
    if (width, height) != (size, size):
        raise ValueError(f"the data's images are {width}×{height} px but the pipeline makes {size}×{size} px; FID "
                         f"across resolutions is not comparable: import the data at {size} px "
                         f"(t2i data import --size {size})")
    if cfg.n < cfg.min_samples:
        raise ValueError(f"{cfg.n} images per setting is below the floor of {cfg.min_samples} for FID "
                         f"({WARN_FID_SAMPLES}+ recommended)")
    if cfg.n < WARN_FID_SAMPLES:
        log.warning("FID on %d images per setting is biased upwards and noisy: compare only at equal N "
                    "(%d+ recommended)", cfg.n, WARN_FID_SAMPLES)
    settings = settings_grid(pipe.defaults, cfg)
    for s in settings:
        if pipe.samplers and s["sampler"] not in pipe.samplers:
            raise ValueError(f"unknown sampler {s['sampler']!r}; this pipeline has {', '.join(pipe.samplers)}")

    n_real = min(cfg.n_real, len(records))
    if n_real < cfg.min_samples:
        raise ValueError(f"the data has {len(records)} usable images; FID needs at least {cfg.min_samples}")
    fingerprint = dataset_fingerprint(data_dir, cfg.split)
    real = reference_features(data_dir, evaluators.features, resolution=size, n=n_real, cache_dir=cache_dir,
                              records=records, fingerprint=fingerprint)
    subset = evaluation_subset(records, cfg.n)
    prompts = [r.caption for r in subset]
    seeds = [cfg.seed + i for i in range(cfg.n)]
    text = evaluators.clip.text_features(prompts)
    # The floor: the same images scored against other images' captions (each image i against caption i - 1
    # of the seeded evaluation order). A CLIP score is meaningful only by how far it rises above this.
    shuffled = text.roll(1, dims=0)
    # The ceiling: CLIP score of the real images with their own captions.
    real_clip = reference_features(data_dir, evaluators.clip, resolution=size, n=n_real, cache_dir=cache_dir,
                                   records=records, fingerprint=fingerprint)
    real_subset = evaluation_subset(records, n_real)
    real_text = evaluators.clip.text_features([r.caption for r in real_subset])

    specs, seen = [], set()
    if evaluators.classifier is not None and cfg.compositional_images > 0:
        specs = comp.held_out_prompts()
        seen = comp.training_keys(records)

    metrics = {
        "model": "",
        "variant": pipe.info.get("variant", "latent"),
        "data": str(data_dir),
        "data_fingerprint": fingerprint,
        "image_size": size,
        "n": cfg.n,
        "n_real": n_real,
        "seed": cfg.seed,
        "fid_extractor": evaluators.features.name,
        "clip_model": evaluators.clip.name,
        "split": cfg.split,
        "real": {"clip_score": float(clip_score(real_clip.features, real_text).mean()),
                 "clip_score_shuffled": float(clip_score(real_clip.features, real_text.roll(1, dims=0)).mean()),
                 "n": n_real},
        "classifier": evaluators.classifier_info or None,
        "config": asdict(cfg),
        "settings": [],
    }
    samples = {}
    for index, setting in enumerate(settings):
        name = label(setting)
        log.info("setting %d/%d: %s", index + 1, len(settings), name)
        start = time.perf_counter()
        images = generate(pipe, prompts, seeds, setting, batch_size=cfg.batch_size, desc=f"generate ({name})")
        gen_seconds = time.perf_counter() - start
        fake = FeatureSet(evaluators.features(images, progress="features"), evaluators.features.name, size,
                          f"pipeline ({name})")
        check_comparable(real, fake, min_samples=cfg.min_samples, warn=False)  # warned once above
        kid_mean, kid_std = kernel_distance(real.features, fake.features, seed=cfg.seed)
        image_emb = fake.features if evaluators.clip is evaluators.features else evaluators.clip(images)
        result = {**setting, "nfe": setting["steps"], "n": cfg.n, "fid": frechet_distance(real.features, fake.features),
                  "kid": kid_mean, "kid_std": kid_std, "clip_score": float(clip_score(image_emb, text).mean()),
                  "clip_score_shuffled": float(clip_score(image_emb, shuffled).mean()),
                  "generate_seconds": round(gen_seconds, 1)}
        samples[index] = {"captions": list(zip(prompts[: cfg.grid_images * 4], images[: cfg.grid_images * 4]))}
        if specs:
            result["compositional"], samples[index]["held_out"] = _compositional(pipe, evaluators.classifier, specs,
                                                                                  seen, setting, cfg)
        result["seconds"] = round(time.perf_counter() - start, 1)
        log.info("  FID %.2f, KID %.4f ± %.4f, CLIP score %.2f (%d images, %.0f s)", result["fid"], kid_mean, kid_std,
                 result["clip_score"], cfg.n, result["seconds"])
        metrics["settings"].append(result)
    return metrics, samples


def _compositional(pipe, classifier, specs, seen_keys, setting, cfg: EvalConfig):
    k = cfg.compositional_images
    prompts = [s.text for s in specs for _ in range(k)]
    seeds = [cfg.seed + j for _ in specs for j in range(k)]
    images = generate(pipe, prompts, seeds, setting, batch_size=cfg.batch_size, desc="held-out prompts")
    readings = classifier.read(images)
    checks = [comp.check(r, spec) for r, spec in zip(readings, (s for s in specs for _ in range(k)))]
    is_seen = [spec.key() in seen_keys for spec in specs for _ in range(k)]
    result = {"images_per_prompt": k, "prompts": len(specs),
              "all": comp.summarise(checks),
              "seen_in_training": comp.summarise([c for c, s in zip(checks, is_seen) if s]),
              "absent_from_training": comp.summarise([c for c, s in zip(checks, is_seen) if not s]),
              "per_prompt": [{"prompt": spec.text, "seen_in_training": spec.key() in seen_keys,
                              "exact": sum(c["exact"] for c in checks[i * k : (i + 1) * k]) / k}
                             for i, spec in enumerate(specs)]}
    grids = {spec.text: images[i * k : (i + 1) * k] for i, spec in enumerate(specs)}
    return result, grids


def write_report(out_dir: str | Path, metrics: dict, samples: dict) -> Path:
    """metrics.json, report.html and its PNGs, built beside `out_dir` and moved into place at the end."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "metrics.json").exists():
        raise FileExistsError(f"{out_dir} exists and is not an evaluation report folder; choose another --out")
    with atomic_folder(out_dir) as tmp:
        render_report(tmp, metrics, samples)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
    return out_dir


@torch.inference_mode()
def classifier_accuracy_on_renders(classifier, *, render_size: int, n: int) -> dict:
    """The classifier's own accuracy, read exactly as it reads generated images (rendered at the pipeline's size)."""
    from t2i.evaluation.shapes_classifier import TEST_SEED, rendered_set

    images, attributes, _ = rendered_set(n, render_size=render_size, image_size=classifier.config.image_size,
                                         seed=TEST_SEED + 1)
    return {"n": n, "render_size": render_size, **comp.reading_accuracy(classifier, images, attributes)}


def cache_trained(folder: Path, train_into) -> None:
    """Run `train_into(tmp)` in a folder of this process's own, then move it to `folder`. Two evaluations that
    train the same default evaluator at once both finish: whichever moves second keeps the first one's folder."""
    with atomic_folder(folder, keep_existing=True) as tmp:
        tmp.rmdir()  # `train_into` makes its output folder itself, as every trainer does
        train_into(tmp)


def default_clip(data_dir: Path, cache_dir: Path, *, preset: str = "small") -> Path:
    """The in-domain CLIP for a data folder: trained once with `t2i train clip`'s defaults, on the "train" split
    (every row of data that marks no splits), cached by that split's fingerprint."""
    from t2i.evaluation.clip import CLIP_PRESETS, ClipTrainConfig, train_clip

    records, _ = scan_folder(data_dir, verify=False, split=TRAIN)
    size = data_image_size(records)[0]
    folder = Path(cache_dir) / "clip" / f"{dataset_fingerprint(data_dir, TRAIN)}-{preset}-{size}px"
    if not (folder / "config.json").is_file():
        log.warning("no --clip given: training an in-domain CLIP on %s (once; cached in %s). To choose, run "
                    "t2i train clip --data %s --out DIR and pass --clip DIR", data_dir, folder, data_dir)
        cache_trained(folder, lambda tmp: train_clip(data_dir, tmp, ClipTrainConfig(model=CLIP_PRESETS[preset](size)),
                                                     command="t2i eval (default CLIP)"))
    return folder


def default_classifier(cache_dir: Path, size: int):
    """The shapes classifier at `size` px: trained once with `t2i train shapes-classifier`'s defaults, cached."""
    from t2i.evaluation.shapes_classifier import (ShapesClassifierConfig, ShapesClassifierTrainConfig,
                                                  train_shapes_classifier)

    folder = Path(cache_dir) / "shapes-classifier" / f"{size}px"
    if not (folder / "model.safetensors").is_file():
        log.warning("no --classifier given: training the shapes classifier at %d px (once; cached in %s)", size, folder)
        cache_trained(folder, lambda tmp: train_shapes_classifier(
            tmp, ShapesClassifierTrainConfig(model=ShapesClassifierConfig(image_size=size)),
            command="t2i eval (default classifier)"))
    return folder


def run_eval(model_dir: str | Path, out_dir: str | Path, cfg: EvalConfig, *, data_dir: str | Path | None = None,
             clip: str | Path | None = None, inception: str | Path | None = None,
             classifier: str | Path | None = None, cache_dir: str | Path, command: str | None = None,
             speed=None) -> dict:
    """`t2i eval`: load the pipeline and the evaluators (training the defaults once), measure, write the report.
    `speed`: how the pipeline runs its networks (t2i.pipeline.speed.SpeedConfig; None: the defaults)."""
    import t2i
    from t2i.evaluation.inception import InceptionExtractor
    from t2i.evaluation.shapes_classifier import ShapesClassifier

    model_dir, cache_dir = Path(model_dir), Path(cache_dir)
    if not model_dir.is_dir() or not ((model_dir / "t2i.json").exists() or (model_dir / "model_index.json").exists()):
        raise FileNotFoundError(f"{model_dir} is not a pipeline folder (no t2i.json or model_index.json); "
                                "make one with t2i compose")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "metrics.json").exists():
        raise FileExistsError(f"{out_dir} exists and is not an evaluation report folder; choose another --out")
    if cfg.n < cfg.min_samples:  # before anything slow
        raise ValueError(f"{cfg.n} images per setting is below the floor of {cfg.min_samples} for FID "
                         f"({WARN_FID_SAMPLES}+ recommended)")
    pipe = t2i.load(model_dir, speed=speed)
    data_dir = Path(data_dir or recorded_data(pipe.info) or "")
    if not str(data_dir) or str(data_dir) == ".":
        raise ValueError(f"{model_dir} records no training data folder; pass --data DIR")
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data folder {data_dir} does not exist (pass --data DIR)")
    clip_extractor = ClipExtractor.from_folder(clip or default_clip(data_dir, cache_dir))
    features = InceptionExtractor.from_file(inception) if inception else clip_extractor
    records, _ = scan_folder(data_dir, verify=False, split=cfg.split)
    evaluators = Evaluators(features, clip_extractor)
    if cfg.compositional_images > 0 and records[0].extra.get("attributes"):
        folder = Path(classifier) if classifier else default_classifier(cache_dir, pipe.image_size)
        evaluators.classifier = ShapesClassifier.from_pretrained(folder)
        evaluators.classifier_info = {"folder": str(folder), "accuracy_on_renders": classifier_accuracy_on_renders(
            evaluators.classifier, render_size=pipe.image_size, n=cfg.classifier_renders)}
    metrics, samples = evaluate_pipeline(pipe, data_dir, evaluators, cfg, cache_dir=cache_dir, records=records)
    metrics["model"] = str(model_dir)
    metrics["command"] = command
    write_report(out_dir, metrics, samples)
    return metrics
