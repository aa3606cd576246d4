"""`t2i experiment text-encoders`: same data, same U-Net, same training budget; only the text encoder changes.

The claims it tests (Saharia et al. 2022, Imagen, §4.4 and Fig. 4a): a larger pretrained text encoder improves
both FID and CLIP score; a pretrained encoder understands words that never occur in the image–caption pairs;
guidance trades FID for CLIP score. Each encoder of `encoder_ladder.encoder_ladder` is one run per seed.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from t2i.experiments import synonyms
from t2i.experiments.encoder_ladder import available_encoders, encoder_ladder
from t2i.experiments.report import write_results
from t2i.experiments.runner import (ExperimentConfig, append_invocation, prepare_shared, run_one,
                                   write_experiment_record)

log = logging.getLogger("t2i.experiments")

TITLE = "Text encoders: FID vs CLIP score, one curve per encoder (same U-Net, same steps)"


@dataclass
class TextEncodersConfig:
    experiment: ExperimentConfig
    truncations: tuple[int, ...] = (1, 2, 3)  # MiniLM layer counts compared besides all 6 (each of 1..6)
    extra_encoders: dict[str, str] = field(default_factory=dict)  # name → local transformers encoder folder (frozen)
    optional_encoders: dict[str, str] = field(default_factory=dict)  # like extra_encoders, but left out (with a
    # logged note, and in experiment.json) when not installed: the preset's mpnet


def run_text_encoders(root: str | Path, cfg: TextEncodersConfig, *, preset: str, data: Path | None = None,
                      autoencoder: Path | None = None, clip: Path | None = None, classifier: Path | None = None,
                      command: str | None = None) -> dict:
    """Every encoder × seed (finished runs are read back), then results.json, results.md and figure.png in
    ROOT/text-encoders."""
    from transformers import AutoTokenizer

    from t2i.text import minilm_path

    start_wall, start_cpu = time.time(), time.process_time()
    root = Path(root).resolve()
    exp = cfg.experiment
    optional, left_out = available_encoders({k: v for k, v in cfg.optional_encoders.items()
                                             if k not in cfg.extra_encoders})
    ladder = encoder_ladder(cfg.truncations, {**optional, **cfg.extra_encoders})  # bad names and folders fail
    # before any work
    shared = prepare_shared(root, exp.shared, data=data, autoencoder=autoencoder, clip=clip, classifier=classifier,
                            eval_split=exp.eval.split, recognition=exp.recognition_images > 0)
    folder = root / "text-encoders"
    folder.mkdir(parents=True, exist_ok=True)
    held_out = None
    if shared.has_attributes:
        held_out = synonyms.check_held_out(shared.captions)
        held_out["word_pieces"] = synonyms.word_pieces(AutoTokenizer.from_pretrained(minilm_path()), shared.captions)
        held_out["prompts"] = [{"prompt": p.text, "kind": p.kind, "means": p.spec.text}
                               for p in synonyms.synonym_prompts()]
    elif shared.recognition is not None:  # the corpus's own held-out words (checked against its training captions)
        held_out = {**shared.recognition.info,
                    "prompts": [{"prompt": p.text, "kind": p.kind, "targets": list(p.targets)}
                                for p in shared.recognition.prompts]}
    meta = {"experiment": "text-encoders", "preset": preset, "headline_guidance": exp.headline_guidance,
            "seeds": list(exp.seeds), "shared": shared.info, "held_out": held_out,
            "encoders": [{"name": s.name, "label": s.label, "pretrained": s.pretrained,
                          "trained_with_generator": s.trained_with_generator} for s in ladder],
            "encoders_left_out": left_out,
            "config": json.loads(json.dumps(asdict(cfg), default=str))}
    write_experiment_record(folder, meta)
    runs = []
    for seed in exp.seeds:
        for spec in ladder:
            log.info("== text encoder %s, seed %d", spec.name, seed)
            source = spec.source(folder / "encoders", seed)
            generator = replace(exp.generator, text=replace(exp.generator.text, source=source, seed=seed),
                                train=replace(exp.generator.train, seed=seed))
            runs.append(run_one(folder / "runs" / spec.name / f"seed-{seed}", shared, exp, generator, describe={
                "group": "", "name": spec.name, "label": spec.label, "seed": seed, "text_encoder": source,
                "pretrained": spec.pretrained, "trained_with_generator": spec.trained_with_generator}))
            write_results(folder, TITLE, runs, {**{k: meta[k] for k in ("experiment", "preset", "headline_guidance",
                                                                          "held_out")},
                                                "recognition": shared.info["recognition"]})
    append_invocation(folder, start_wall, start_cpu, command)
    return json.loads((folder / "results.json").read_text())

