"""What every experiment shares: the assets built once, and one run = train a generator, compose, evaluate.

An experiment folder ROOT holds

    ROOT/shared/            data, autoencoder, evaluators (in-domain CLIP, shapes classifier), caches
                            (latents, text embeddings per encoder, reference features); shared.json
    ROOT/<experiment>/runs/<model>/seed-<k>/
                            generator/ (with checkpoints while it trains), pipeline/, eval/ (report.html,
                            metrics.json), result.json: written last, the run's done-marker
    ROOT/<experiment>/results.json, results.md, figure.png

so both experiments of one ROOT reuse one data set, one autoencoder, one set of evaluators and their
reference statistics. Everything resumes: a finished step is skipped, an interrupted generator training
continues from its last checkpoint (the trainer's exact resume), a finished run is read back.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from t2i.autoencoder import AutoencoderTrainConfig
from t2i.data import EmojiSetsConfig, ShapesConfig
from t2i.evaluation.clip import ClipTrainConfig
from t2i.evaluation.evaluate import EvalConfig, Evaluators
from t2i.evaluation.shapes_classifier import ShapesClassifierTrainConfig
from t2i.latent.train import GeneratorTrainConfig

log = logging.getLogger("t2i.experiments")

RESULT_FILE = "result.json"  # a run's results; its presence marks the run done


class Stopped(Exception):
    """A training stage stopped on SIGTERM/SIGINT with a checkpoint; running the command again continues it."""


@dataclass
class SharedConfig:
    data: ShapesConfig | EmojiSetsConfig  # the data built into ROOT/shared/data unless a data folder is given:
    # shapes drawn, or an emoji-sets corpus (t2i data emoji-sets; from the npm packages, fetched once)
    autoencoder: AutoencoderTrainConfig  # trained once on that data (unless an autoencoder folder is given)
    clip: ClipTrainConfig  # the in-domain CLIP for FID features and CLIP score (unless a CLIP folder is given)
    classifier: ShapesClassifierTrainConfig  # the shapes reader for compositional and synonym accuracy


@dataclass
class ExperimentConfig:
    shared: SharedConfig
    generator: GeneratorTrainConfig  # every run's recipe (U-Net, prompt length, training budget); each experiment
    # changes one thing in it. Its train.seed is replaced by each run's seed
    eval: EvalConfig  # FID / CLIP score per guidance scale and compositional accuracy (t2i eval's settings)
    headline_guidance: float = 3.0  # guidance scale of the headline table and the accuracy panel (one of eval.guidance)
    synonym_images: int = 4  # images per held-out-synonym prompt (and per control prompt), at the headline guidance
    recognition_images: int = 0  # on a corpus with held_out_words.json: images per held-out-word and per held-out-
    # concept prompt, at the headline guidance, scored by concept recognition (recognition.py); 0: not measured
    sampler: str = "dpmpp_2m"  # stored as each pipeline's default, used by every evaluation
    sampling_steps: int = 20  # sampling steps of every evaluation
    seeds: tuple[int, ...] = (0,)  # one run per model and seed: training seed, U-Net and scratch-encoder init

    def __post_init__(self):
        if self.headline_guidance not in self.eval.guidance:
            raise ValueError(f"headline guidance {self.headline_guidance:g} is not one of the guidance scales "
                             f"{', '.join(f'{g:g}' for g in self.eval.guidance)}")
        if not self.seeds:
            raise ValueError("no seeds given")


@dataclass
class Shared:
    """The assets every run uses, ready."""

    root: Path  # ROOT/shared
    data: Path
    autoencoder: Path
    cache: Path  # latents, text embeddings, reference features
    evaluators: Evaluators
    records: list = field(repr=False, default_factory=list)  # the evaluation split's records, scanned once
    captions: list[str] = field(repr=False, default_factory=list)
    has_attributes: bool = False  # shapes data: compositional and synonym accuracy are measured
    recognition: object | None = None  # recognition.RecognitionSet on a corpus with held-out words, else None
    info: dict = field(default_factory=dict)  # what was built, from what (shared.json)


def _write_json(path: Path, obj) -> None:
    """Written beside and renamed: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def write_experiment_record(folder: Path, meta: dict) -> None:
    """ROOT/<experiment>/experiment.json: what the experiment is, from what, and every invocation so far."""
    path = folder / "experiment.json"
    invocations = json.loads(path.read_text()).get("invocations", []) if path.is_file() else []
    _write_json(path, {**meta, "invocations": invocations})


def append_invocation(folder: Path, start_wall: float, start_cpu: float, command: str | None) -> None:
    """Add how long this command ran to experiment.json: wall and process CPU time, threads, the load at the end."""
    import torch

    path = folder / "experiment.json"
    info = json.loads(path.read_text())
    info["invocations"].append({
        "command": command, "wall_seconds": round(time.time() - start_wall, 1),
        "cpu_seconds": round(time.process_time() - start_cpu, 1), "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "load_average_at_end": os.getloadavg(),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
    _write_json(path, info)


def _stage(name: str, info: dict) -> dict:
    if "stopped" in info:
        raise Stopped(f"{name} stopped by {info['stopped']} after step {info['step']}; run the same command again "
                      "to continue from its checkpoint")
    return info


def _resumable(component_cfg) -> bool:
    """Resume from checkpoints when the component writes them; without, an interrupted stage starts over."""
    return component_cfg.train.checkpoint_every > 0


def _build_data(folder: Path, cfg: ShapesConfig | EmojiSetsConfig) -> None:
    if isinstance(cfg, EmojiSetsConfig):
        from t2i.data import write_emoji_sets

        log.info("== shared: emoji-sets corpus at %d px (%s)", cfg.size, ", ".join(cfg.sets))
        write_emoji_sets(folder, cfg)
    else:
        from t2i.data import write_shapes

        log.info("== shared: %d shapes images at %d px", cfg.n, cfg.size)
        write_shapes(folder, cfg)


def prepare_shared(root: Path, cfg: SharedConfig, *, data: Path | None = None, autoencoder: Path | None = None,
                   clip: Path | None = None, classifier: Path | None = None, eval_split: str | None = None,
                   recognition: bool = False) -> Shared:
    """Data, autoencoder, CLIP and shapes classifier under ROOT/shared, each built once (or taken as given).
    `eval_split`: the rows evaluation uses (None: all; the autoencoder, CLIP and generators train on the
    "train" split, which is every row of data that marks none). `recognition`: also prepare the held-out-word
    and held-out-concept prompts and every corpus image's features (data from t2i data emoji-sets)."""
    from t2i.autoencoder import train_autoencoder
    from t2i.data import scan_folder
    from t2i.evaluation.reference import data_image_size
    from t2i.evaluation.clip import ClipExtractor, train_clip
    from t2i.evaluation.evaluate import classifier_accuracy_on_renders
    from t2i.evaluation.shapes_classifier import ShapesClassifier, train_shapes_classifier

    folder = root / "shared"
    folder.mkdir(parents=True, exist_ok=True)
    given = {"data": data, "autoencoder": autoencoder, "clip": clip, "classifier": classifier}
    record = {"config": json.loads(json.dumps(asdict(cfg), default=str)),
              "given": {k: str(v) if v else None for k, v in given.items()}}
    existing = folder / "shared.json"
    if existing.is_file():
        before = json.loads(existing.read_text())
        if {k: before.get(k) for k in record} != record:
            raise ValueError(f"{folder} was built with other settings (another preset or other --data/--autoencoder/"
                             f"--clip/--classifier); use another --out")
    _write_json(existing, record)

    if data is None:
        data = folder / "data"
        if not (data / "metadata.jsonl").is_file():
            _build_data(data, cfg.data)
    all_records, _ = scan_folder(data, verify=False)
    size = data_image_size(all_records)[0]
    trains_at = (json.loads((Path(autoencoder) / "t2i_component.json").read_text())["image_size"] if autoencoder
                 else cfg.autoencoder.model.image_size)
    if size != trains_at:  # before anything trains: evaluation would refuse it at the end
        raise ValueError(f"{data} holds {size}-px images; the generators here make {trains_at}-px images: build the "
                         f"data at that size (e.g. t2i data emoji-sets --size {trains_at}) or leave --data out")
    records = [r for r in all_records if eval_split is None or r.extra.get("split", "train") == eval_split]
    if not records:
        raise ValueError(f"{data} has no rows of the evaluation split {eval_split!r}")
    has_attributes = bool(records and records[0].extra.get("attributes"))
    if autoencoder is None:
        autoencoder = folder / "autoencoder"
        if not (autoencoder / "t2i_component.json").is_file():
            log.info("== shared: autoencoder")
            _stage("the autoencoder", train_autoencoder(data, autoencoder, cfg.autoencoder,
                                                        resume=_resumable(cfg.autoencoder),
                                                        command="t2i experiment (shared autoencoder)"))
    if clip is None:
        clip = folder / "evaluators" / "clip"
        if not (clip / "t2i_component.json").is_file():
            log.info("== shared: in-domain CLIP (FID features, CLIP score)")
            _stage("the CLIP", train_clip(data, clip, cfg.clip, resume=_resumable(cfg.clip),
                                          command="t2i experiment (shared CLIP)"))
    extractor = ClipExtractor.from_folder(clip)
    evaluators = Evaluators(extractor, extractor)
    if has_attributes:
        if classifier is None:
            classifier = folder / "evaluators" / "shapes-classifier"
            if not (classifier / "t2i_component.json").is_file():
                log.info("== shared: shapes classifier")
                _stage("the shapes classifier", train_shapes_classifier(
                    classifier, cfg.classifier, resume=_resumable(cfg.classifier),
                    command="t2i experiment (shared shapes classifier)"))
        evaluators.classifier = ShapesClassifier.from_pretrained(classifier)
        size = json.loads((Path(autoencoder) / "t2i_component.json").read_text())["image_size"]
        evaluators.classifier_info = {"folder": str(classifier), "accuracy_on_renders": classifier_accuracy_on_renders(
            evaluators.classifier, render_size=size, n=min(500, 10 * len(records)))}
    recognition_set = None
    if recognition:
        from t2i.experiments import recognition as rec

        if not rec.has_recognition_data(data, all_records):
            raise ValueError(f"{data} has no {rec.WORDS_FILE} or no '{rec.CONCEPT_FIELD}' and '{rec.NAME_FIELD}' per "
                             "row: held-out words and concepts need a corpus from t2i data emoji-sets")
        recognition_set = rec.prepare(data, all_records, extractor, cache_dir=folder / "cache")
    info = {**record, "data": str(data), "autoencoder": str(autoencoder), "clip": str(clip),
            "classifier": str(classifier) if classifier else None,
            "classifier_accuracy_on_renders": evaluators.classifier_info.get("accuracy_on_renders"),
            "eval_split": eval_split, "eval_rows": len(records),
            "recognition": recognition_set.info if recognition_set else None}
    return Shared(folder, Path(data), Path(autoencoder), folder / "cache", evaluators, records,
                  [r.caption for r in records], has_attributes, recognition_set, info)


class CpuLedger:
    """Process CPU seconds per stage of a run, kept on disk so that an interrupted stage's time is not lost."""

    def __init__(self, path: Path):
        self.path = path
        self.seconds = json.loads(path.read_text()) if path.is_file() else {}

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + seconds, 2)
        _write_json(self.path, self.seconds)


def run_one(run_dir: Path, shared: Shared, cfg: ExperimentConfig, generator: GeneratorTrainConfig, *,
            describe: dict) -> dict:
    """Train one generator, compose it into a pipeline, evaluate it; `describe` (model name, label, seed, ...)
    goes into the result. A finished run is read back; one made with other settings is refused."""
    from t2i.latent.train import train_generator
    from t2i.latent.pipeline import LatentPipeline
    from t2i.latent.compose import compose

    key = settings_key(cfg, generator)
    done = run_dir / RESULT_FILE
    if done.is_file():
        result = json.loads(done.read_text())
        if result.get("settings_key") != key:
            without_repa = settings_key(cfg, replace(generator, repa_weight=0.0))
            hint = (" (it was trained without REPA: add --repa-weight 0 to read it back)"
                    if generator.repa_weight and result.get("settings_key") == without_repa else "")
            raise ValueError(f"{run_dir} holds a finished run with other settings{hint}; use another --out")
        log.info("   done already: %s", run_dir)
        return {**result, **describe}
    twin = _finished_twin(shared.root.parent, key)
    if twin is not None:  # e.g. the recipe's U-Net with MiniLM: the same run in both experiments, trained once
        log.info("   the same run is done already in another experiment: %s", twin["run"])
        return {**twin, **describe}
    run_dir.mkdir(parents=True, exist_ok=True)
    ledger = CpuLedger(run_dir / "cpu_seconds.json")
    gen_dir = run_dir / "generator"
    if not (gen_dir / "t2i_component.json").is_file():
        start = time.process_time()
        try:
            info = train_generator(shared.data, shared.autoencoder, gen_dir, generator, cache_dir=shared.cache,
                                   resume=_resumable(generator),
                                   command=f"t2i experiment ({describe.get('name')}, seed {describe.get('seed')})")
        finally:
            ledger.add("train", time.process_time() - start)
        _stage(f"the generator in {gen_dir}", info)
    gen_info = json.loads((gen_dir / "t2i_component.json").read_text())
    pipe_dir = run_dir / "pipeline"
    if not (pipe_dir / "model_index.json").is_file():
        compose(gen_dir, pipe_dir, defaults={"sampler": cfg.sampler, "steps": cfg.sampling_steps,
                                             "guidance": cfg.headline_guidance})
    start = time.process_time()
    metrics = evaluate_run(LatentPipeline.from_pretrained(pipe_dir), run_dir / "eval", shared, cfg)
    ledger.add("evaluate", time.process_time() - start)
    # The run is final: its checkpoints and the pipeline folder (copies of the encoder and autoencoder; `t2i compose
    # RUN/generator --out DIR` makes it again) would only take disk space, ~0.1 GB per run with MiniLM.
    shutil.rmtree(gen_dir / "checkpoints", ignore_errors=True)
    shutil.rmtree(pipe_dir, ignore_errors=True)
    result = {**describe, "run": str(run_dir), "settings_key": key,
              "unet_parameters": _parameters(gen_dir), "train_steps": generator.train.steps,
              "final_loss": gen_info["metrics"]["final_loss"], "cpu_seconds": ledger.seconds,
              "train_wall_seconds": gen_info["metrics"]["train_seconds"],
              "n": metrics["n"], "n_real": metrics["n_real"], "fid_extractor": metrics["fid_extractor"],
              "real_clip_score": metrics["real"]["clip_score"], "settings": metrics["settings"]}
    _write_json(done, result)
    return result


def settings_key(cfg: ExperimentConfig, generator: GeneratorTrainConfig) -> dict:
    """What identifies a run's result: a finished run is read back only under the same key. Settings added since
    runs were first recorded enter it only when they change something, so those runs keep their key."""
    key = {"generator": asdict(generator), "eval": asdict(cfg.eval), "synonym_images": cfg.synonym_images,
           "sampler": cfg.sampler, "sampling_steps": cfg.sampling_steps}
    if cfg.recognition_images:  # only when measured
        key["recognition_images"] = cfg.recognition_images
    if not generator.repa_weight:  # runs without REPA predate it
        key["generator"].pop("repa_weight")
        key["generator"].pop("repa_target")
    if not generator.model.patch_mask_ratio:  # nor did patch masking
        key["generator"]["model"].pop("patch_mask_ratio")
        key["generator"]["model"].pop("patch_mixer_layers")
    return json.loads(json.dumps(key, default=str))


def _finished_twin(root: Path, key: dict) -> dict | None:
    """A finished run with exactly these settings anywhere under ROOT (another experiment's), or None."""
    for path in sorted(root.glob(f"*/runs/**/{RESULT_FILE}")):
        result = json.loads(path.read_text())
        if result.get("settings_key") == key:
            return result
    return None


def _parameters(unet_dir: Path) -> int:
    """Parameters of the U-Net saved in `unet_dir` (read from the safetensors headers)."""
    from safetensors import safe_open

    total = 0
    for path in unet_dir.glob("*.safetensors"):
        with safe_open(path, "pt") as f:
            for name in f.keys():
                n = 1
                for side in f.get_slice(name).get_shape():
                    n *= int(side)
                total += n
    return total


def evaluate_run(pipe, out_dir: Path, shared: Shared, cfg: ExperimentConfig) -> dict:
    """t2i eval's measurements per guidance scale (FID, KID, CLIP score, compositional accuracy) plus accuracy on
    held-out synonyms at the headline guidance; the report (report.html with grids, metrics.json) goes to `out_dir`."""
    from t2i.evaluation.evaluate import evaluate_pipeline, generate, write_report
    from t2i.experiments import synonyms

    metrics, samples = evaluate_pipeline(pipe, shared.data, shared.evaluators, cfg.eval, cache_dir=shared.cache,
                                         records=shared.records)
    if shared.has_attributes and cfg.synonym_images > 0:
        prompts = synonyms.synonym_prompts()
        k = cfg.synonym_images
        texts = [p.text for p in prompts for _ in range(k)]
        seeds = [cfg.eval.seed + j for _ in prompts for j in range(k)]
        for setting in metrics["settings"]:
            if setting["guidance"] != cfg.headline_guidance:  # one scale: a third of a run's evaluation otherwise
                continue
            s = {name: setting[name] for name in ("sampler", "steps", "guidance")}
            images = generate(pipe, texts, seeds, s, batch_size=cfg.eval.batch_size, desc="synonym prompts")
            readings = shared.evaluators.classifier.read(images)
            setting["synonyms"] = {"images_per_prompt": k,
                                   **synonyms.score(readings, [p for p in prompts for _ in range(k)])}
    if shared.recognition is not None and cfg.recognition_images > 0:
        from t2i.experiments import recognition

        for setting in metrics["settings"]:
            if setting["guidance"] == cfg.headline_guidance:  # one scale, like the synonyms
                s = {name: setting[name] for name in ("sampler", "steps", "guidance")}
                setting["recognition"] = recognition.measure(
                    pipe, shared.recognition, s, clip=shared.evaluators.clip, images_per_prompt=cfg.recognition_images,
                    seed=cfg.eval.seed, batch_size=cfg.eval.batch_size)
    shutil.rmtree(out_dir, ignore_errors=True)  # an evaluation interrupted before is redone whole
    write_report(out_dir, metrics, samples)
    return metrics
