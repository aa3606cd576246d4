"""The text encoders the encoder experiment compares, each made into a folder `TextEncoderConfig.source` accepts.

Imagen's ablation (Saharia et al. 2022, Fig. 4a) scales one pretrained encoder family (T5-Small → XXL). Here
the family is all-MiniLM-L6-v2 cut to its first k of 6 layers, beside two baselines without pretraining:

- `scratch`: t2i's small BERT trained jointly with the generator (the diffusion loss is its only teacher);
- `minilm-random`: MiniLM's architecture and tokenizer with freshly initialised weights, **frozen**. Frozen,
  because then it differs from the pretrained MiniLM in one thing only, the weights (same width, depth,
  tokenizer, cached embeddings, training cost); trained jointly it would differ also in being trained, and
  would cost a 22M-parameter backward pass per step. Its confound is the other way round: beside `scratch`
  it differs in size *and* in not learning, so scratch vs random says nothing about pretraining.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from t2i.text import MINILM, MPNET, SCRATCH, minilm_path, source_folder
from t2i.text.cut import MINILM_LAYERS, is_complete, truncated_minilm, write_encoder
from t2i.text.packaged import MPNET_MODEL, is_installed

log = logging.getLogger("t2i.experiments")


@dataclass(frozen=True)
class EncoderSpec:
    name: str  # folder-safe name of the runs ("minilm-2l")
    label: str  # for tables and plots ("MiniLM, 2 of 6 layers")
    source: Callable[[Path, int], str]  # (encoders folder, run seed) → TextEncoderConfig.source; makes the folder
    pretrained: bool  # whether its weights were trained on text before this experiment
    trained_with_generator: bool  # whether the diffusion loss trains it too


def random_minilm(seed: int, folder: Path) -> Path:
    """MiniLM's architecture (config) and tokenizer with fresh weights from transformers' BERT initialiser,
    seeded: no pretraining at all. Written once into `folder`."""
    from transformers import AutoConfig, AutoTokenizer, BertModel

    if not is_complete(folder):
        config = AutoConfig.from_pretrained(minilm_path())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # transformers initialises from the global RNG; keep it contained
            model = BertModel(config)
        write_encoder(folder, model, AutoTokenizer.from_pretrained(minilm_path()))
    return folder


def encoder_ladder(truncations: tuple[int, ...] = (1, 2, 3), extra: dict[str, str] | None = None) -> list[EncoderSpec]:
    """scratch, random MiniLM, MiniLM cut to each of `truncations` layers, the full MiniLM, then `extra`
    (name → local transformers encoder folder, or "mpnet" for the installed all-mpnet-base-v2; used frozen)."""
    specs = [
        EncoderSpec("scratch", "scratch (small BERT, trained with the U-Net)", lambda root, seed: SCRATCH,
                    pretrained=False, trained_with_generator=True),
        EncoderSpec("minilm-random", "MiniLM architecture, random weights (frozen)",
                    lambda root, seed: str(random_minilm(seed, root / f"minilm-random-seed{seed}")),
                    pretrained=False, trained_with_generator=False),
    ]
    for k in truncations:
        if k == MINILM_LAYERS:
            continue
        specs.append(EncoderSpec(f"minilm-{k}l", f"MiniLM, {k} of {MINILM_LAYERS} layers (frozen)",
                                 lambda root, seed, k=k: str(truncated_minilm(k, root / f"minilm-{k}l")),
                                 pretrained=True, trained_with_generator=False))
    specs.append(EncoderSpec(f"minilm-{MINILM_LAYERS}l", f"MiniLM, all {MINILM_LAYERS} layers (frozen)",
                             lambda root, seed: MINILM, pretrained=True, trained_with_generator=False))
    names = {s.name for s in specs}
    for name, folder in (extra or {}).items():
        if name in names or not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"encoder name {name!r} is taken or not a plain name (letters, digits, - and _)")
        # "mpnet" is unpacked here, so missing parts fail (with the pip command) before any work
        if not (Path(source_folder(folder)) / "config.json").is_file():
            raise FileNotFoundError(f"text encoder folder {folder} has no config.json")
        label = "all-mpnet-base-v2" if folder == MPNET else Path(folder).name
        specs.append(EncoderSpec(name, f"{name} ({label}, frozen)", lambda root, seed, f=folder: str(f),
                                 pretrained=True, trained_with_generator=False))
        names.add(name)
    return specs


def available_encoders(optional: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """`optional` (name → source) split into (the encoders that are installed, the others → why not), each one
    left out logged: a preset may name mpnet, which is opt-in, and still run where it was not installed."""
    present, missing = {}, {}
    for name, source in optional.items():
        if source == MPNET:
            ok, why = is_installed(MPNET_MODEL), f"not installed (make mpnet, or `{MPNET_MODEL.pip_command()}`)"
        else:
            ok, why = (Path(source) / "config.json").is_file(), f"no config.json in {source}"
        if ok:
            present[name] = source
        else:
            missing[name] = why
            log.warning("text encoder %s left out of this experiment: %s", name, why)
    return present, missing
