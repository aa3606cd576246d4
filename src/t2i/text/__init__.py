"""Component 1: text encoders (pretrained and frozen, or trained from scratch with the generator)."""

from t2i.text.encoder import (
    MINILM,
    SCRATCH,
    TextEncoder,
    TextEncoderConfig,
    build_text_encoder,
    load_text_encoder,
    minilm_path,
    scratch_text_encoder,
    source_folder,
    text_width,
)
from t2i.text.packaged import MPNET, mpnet_path

__all__ = [
    "MINILM",
    "MPNET",
    "SCRATCH",
    "TextEncoder",
    "TextEncoderConfig",
    "build_text_encoder",
    "load_text_encoder",
    "minilm_path",
    "mpnet_path",
    "scratch_text_encoder",
    "source_folder",
    "text_width",
]
