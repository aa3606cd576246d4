"""all-MiniLM-L6-v2 cut to its first k layers, saved as a folder `TextEncoderConfig.source` accepts.

The demo's text encoder is MiniLM's first 3 of 6 layers: on shapes, 3 layers gave higher CLIP scores than all
6 on both seeds of the encoder experiment (docs/experiments.md), and more colour accuracy at the demo's
budget (docs/demo-recipe.md). Its token embeddings are the third layer's output; the
embeddings and those layers' weights are MiniLM's, unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

from t2i.files import atomic_folder
from t2i.text.encoder import minilm_path

MINILM_LAYERS = 6  # all-MiniLM-L6-v2's depth
CUT_RECORD = "t2i_minilm_cut.json"  # written beside the weights: marks a folder this module may rewrite


def is_complete(folder: Path) -> bool:
    """Whether `folder` holds a saved transformers model (config and safetensors weights)."""
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def write_encoder(folder: Path, model, tokenizer, *, record: dict | None = None) -> None:
    """Save a transformers encoder and its tokenizer (and `record` as CUT_RECORD) into `folder`, built beside it
    and moved into place, so the folder is complete whenever it exists."""
    with atomic_folder(folder) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if record is not None:
            (tmp / CUT_RECORD).write_text(json.dumps(record) + "\n")


def _recorded_layers(folder: Path) -> int | None:
    """The depth `truncated_minilm` recorded in `folder`, or None when it did not write the folder."""
    record = folder / CUT_RECORD
    return json.loads(record.read_text()).get("layers") if record.is_file() else None


def truncated_minilm(layers: int, folder: str | Path) -> Path:
    """The pretrained MiniLM keeping its first `layers` transformer layers, written once into `folder`.

    A complete folder this function wrote with that many layers is reused as it is; one it wrote with another
    depth is rewritten; any other non-empty folder (someone's model, even of that depth; other files) is
    refused, never overwritten."""
    from transformers import AutoModel, AutoTokenizer

    folder = Path(folder)
    if not 1 <= layers <= MINILM_LAYERS:
        raise ValueError(f"MiniLM has {MINILM_LAYERS} layers; cannot keep {layers}")
    recorded = _recorded_layers(folder)
    if recorded == layers and is_complete(folder):
        return folder
    if folder.is_dir() and any(folder.iterdir()) and recorded is None:
        raise FileExistsError(f"{folder} already holds files but no {CUT_RECORD} (t2i did not cut it, or cut it "
                              "before it kept that record); give a new or empty folder")
    model = AutoModel.from_pretrained(minilm_path(), use_safetensors=True)
    model.encoder.layer = model.encoder.layer[:layers]
    model.config.num_hidden_layers = layers
    folder.parent.mkdir(parents=True, exist_ok=True)
    write_encoder(folder, model, AutoTokenizer.from_pretrained(minilm_path()),
                  record={"source": "all-MiniLM-L6-v2", "layers": layers})
    return folder
