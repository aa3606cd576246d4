"""all-MiniLM-L6-v2 cut to its first k layers, saved as a folder `TextEncoderConfig.source` accepts.

The demo's text encoder is MiniLM's first 3 of 6 layers: on shapes, 3 layers gave higher CLIP scores than all
6 on both seeds of the encoder experiment (docs/experiments.md), and more colour accuracy at the demo's
budget (README, "How the recipe was chosen"). Its token embeddings are the third layer's output; the
embeddings and those layers' weights are MiniLM's, unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from t2i.text.encoder import minilm_path

MINILM_LAYERS = 6  # all-MiniLM-L6-v2's depth
CUT_RECORD = "t2i_minilm_cut.json"  # written beside the weights: marks a folder this module may rewrite


def is_complete(folder: Path) -> bool:
    """Whether `folder` holds a saved transformers model (config and safetensors weights)."""
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def write_encoder(folder: Path, model, tokenizer) -> None:
    """Save a transformers encoder and its tokenizer into `folder`, built beside it and moved into place."""
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def _layers(folder: Path) -> int | None:
    return json.loads((folder / "config.json").read_text()).get("num_hidden_layers")


def truncated_minilm(layers: int, folder: str | Path) -> Path:
    """The pretrained MiniLM keeping its first `layers` transformer layers, written once into `folder`.

    A complete folder with that many layers is reused as it is; one this function wrote with another depth is
    rewritten; any other non-empty folder (someone's model, other files) is refused, never overwritten."""
    from transformers import AutoModel, AutoTokenizer

    folder = Path(folder)
    if not 1 <= layers <= MINILM_LAYERS:
        raise ValueError(f"MiniLM has {MINILM_LAYERS} layers; cannot keep {layers}")
    if is_complete(folder) and _layers(folder) == layers:
        return folder
    if folder.is_dir() and any(folder.iterdir()) and not (folder / CUT_RECORD).is_file():
        raise FileExistsError(f"{folder} already holds files (not a MiniLM cut of {layers} layers); give a new "
                              "or empty folder")
    model = AutoModel.from_pretrained(minilm_path(), use_safetensors=True)
    model.encoder.layer = model.encoder.layer[:layers]
    model.config.num_hidden_layers = layers
    folder.parent.mkdir(parents=True, exist_ok=True)
    write_encoder(folder, model, AutoTokenizer.from_pretrained(minilm_path()))
    (folder / CUT_RECORD).write_text(json.dumps({"source": "all-MiniLM-L6-v2", "layers": layers}) + "\n")
    return folder
