"""Composition and the composed pipelines, one per variant, behind one interface (`base.Pipeline`)."""

from __future__ import annotations

import json
from pathlib import Path

from t2i.components import PIPELINE_INFO
from t2i.pipeline.base import Pipeline, StreamEvent
from t2i.pipeline.compose import CompositionError, compose
from t2i.pipeline.pipeline import T2IPipeline
from t2i.pipeline.speed import SpeedConfig
from t2i.startup import paused_gc


def _load_latent(folder: Path, speed: SpeedConfig | None) -> Pipeline:
    return T2IPipeline.from_pretrained(folder, speed=speed)


def _latent_only(folder: Path, speed: SpeedConfig | None, variant: str) -> None:
    if speed is not None and speed != SpeedConfig():
        raise ValueError(f"the speed options (--compile, --bf16, ...) apply to latent pipelines; {folder} is a {variant} "
                         "pipeline")


def _load_cascade(folder: Path, speed: SpeedConfig | None) -> Pipeline:
    _latent_only(folder, speed, "cascade")
    from t2i.pipeline.cascade import CascadePipeline

    return CascadePipeline.from_pretrained(folder)


def _load_tokens(folder: Path, speed: SpeedConfig | None) -> Pipeline:
    _latent_only(folder, speed, "tokens")
    from t2i.tokens.pipeline import TokensPipeline

    return TokensPipeline.from_pretrained(folder)


# variant (the "variant" field of a pipeline folder's t2i.json) -> loader(folder, speed options or None).
# A plain dict of functions.
PIPELINE_LOADERS = {"latent": _load_latent, "cascade": _load_cascade, "tokens": _load_tokens}


def _compose_tokens(generator_dir, out_dir, **kwargs) -> Path:
    from t2i.tokens.compose import compose_tokens

    return compose_tokens(generator_dir, out_dir, **kwargs)


# generator kind (the "kind" in its t2i_component.json) -> the compose function of its variant.
COMPOSERS = {"latent-diffusion": compose, "tokens": _compose_tokens}


def compose_pipeline(generator_dir: str | Path, out_dir: str | Path, **kwargs) -> Path:
    """Compose the pipeline of whichever variant the generator belongs to (see `COMPOSERS`)."""
    from t2i.components import read_component_info

    kind = read_component_info(generator_dir, "generator").get("kind", "latent-diffusion")
    if kind not in COMPOSERS:
        raise CompositionError(f"{generator_dir} holds a {kind!r} generator; this t2i composes {', '.join(COMPOSERS)}")
    return COMPOSERS[kind](generator_dir, out_dir, **kwargs)


def load_pipeline(folder: str | Path, *, speed: SpeedConfig | None = None) -> Pipeline:
    """Load any pipeline folder t2i wrote; its t2i.json says which variant it is (latent when absent).
    `speed`: how to run the networks (t2i.pipeline.speed.SpeedConfig; default: its defaults)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a pipeline folder (it does not exist); make one with t2i compose")
    info_path = folder / PIPELINE_INFO
    variant = json.loads(info_path.read_text()).get("variant", "latent") if info_path.exists() else "latent"
    if variant not in PIPELINE_LOADERS:
        raise ValueError(f"{folder} holds a {variant!r} pipeline; this t2i knows {', '.join(PIPELINE_LOADERS)}")
    with paused_gc():  # the libraries' imports and the weights: long-lived objects only (t2i.startup)
        return PIPELINE_LOADERS[variant](folder, speed)


__all__ = ["COMPOSERS", "PIPELINE_LOADERS", "CompositionError", "compose_pipeline", "Pipeline", "SpeedConfig",
           "StreamEvent", "T2IPipeline", "compose", "load_pipeline"]
