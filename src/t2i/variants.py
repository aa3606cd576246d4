"""The variants t2i knows, one line each: how to load a pipeline folder of that variant and how to compose
one from a generator. Every shared package sits below this module and no variant imports it, so adding a
variant is adding its folder (see docs/ARCHITECTURE.md) and its line here."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from t2i.components import PIPELINE_INFO, read_component_info
from t2i.pipeline.base import Pipeline
from t2i.pipeline.folder import CompositionError
from t2i.startup import paused_gc


def _latent() -> type[Pipeline]:
    from t2i.latent.pipeline import LatentPipeline

    return LatentPipeline


def _cascade() -> type[Pipeline]:
    from t2i.cascade.pipeline import CascadePipeline

    return CascadePipeline


def _tokens() -> type[Pipeline]:
    from t2i.tokens.pipeline import TokensPipeline

    return TokensPipeline


def _compose_latent(generator_dir, out_dir, **kwargs) -> Path:
    from t2i.latent.compose import compose

    return compose(generator_dir, out_dir, **kwargs)


def _compose_cascade(base_dir, out_dir, *, upsamplers, **kwargs) -> Path:
    from t2i.cascade.compose import compose_cascade

    return compose_cascade(base_dir, upsamplers, out_dir, **kwargs)


def _compose_tokens(generator_dir, out_dir, **kwargs) -> Path:
    from t2i.tokens.compose import compose_tokens

    return compose_tokens(generator_dir, out_dir, **kwargs)


@dataclass(frozen=True)
class Variant:
    pipeline: Callable[[], type[Pipeline]]  # its pipeline class (imported when asked for); has from_pretrained
    generator_kind: str | None  # the "kind" in its generator's t2i_component.json; None: not composed from one
    compose: Callable[..., Path]  # (generator or base folder, out folder, **options) -> pipeline folder
    compose_options: tuple[str, ...]  # the keyword options of `compose` (and `t2i compose` flags) it takes
    speed_options: bool = False  # whether it runs with t2i.pipeline.speed.SpeedConfig (--compile, --bf16, ...)


# variant (the "variant" field of a pipeline folder's t2i.json) -> how to load and compose it.
# The cascade composes from a base folder and its upsamplers (`t2i compose --base B --upsampler U ...`).
VARIANTS = {
    "latent": Variant(_latent, "latent-diffusion", _compose_latent,
                      ("text_encoder", "autoencoder_dir", "defaults", "force", "metrics", "copy_text_encoder"),
                      speed_options=True),
    "cascade": Variant(_cascade, None, _compose_cascade,
                       ("upsamplers", "text_encoder", "defaults", "noise_levels", "force", "metrics",
                        "copy_text_encoder"), speed_options=True),
    "tokens": Variant(_tokens, "tokens", _compose_tokens,
                      ("text_encoder", "autoencoder_dir", "defaults", "force", "metrics")),
}


def variant_of_generator(generator_dir: str | Path) -> str:
    """The variant a generator component belongs to (by the "kind" its training recorded)."""
    kind = read_component_info(generator_dir, "generator").get("kind", "latent-diffusion")
    for name, v in VARIANTS.items():
        if v.generator_kind == kind:
            return name
    known = ", ".join(v.generator_kind for v in VARIANTS.values() if v.generator_kind)
    raise CompositionError(f"{generator_dir} holds a {kind!r} generator; this t2i composes {known}")


def compose_pipeline(generator_dir: str | Path, out_dir: str | Path, **kwargs) -> Path:
    """Compose the pipeline of whichever variant the generator belongs to."""
    name = variant_of_generator(generator_dir)
    unknown = sorted(set(kwargs) - set(VARIANTS[name].compose_options))
    if unknown:
        raise ValueError(f"{', '.join(unknown)} do(es) not apply to composing a {name} pipeline")
    return VARIANTS[name].compose(generator_dir, out_dir, **kwargs)


def load_pipeline(folder: str | Path, *, speed=None) -> Pipeline:
    """Load any pipeline folder t2i wrote; its t2i.json says which variant it is (latent when absent).
    `speed`: how a latent pipeline runs its networks (t2i.pipeline.speed.SpeedConfig; default: its defaults)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a pipeline folder (it does not exist); make one with t2i compose")
    info_path = folder / PIPELINE_INFO
    name = json.loads(info_path.read_text()).get("variant", "latent") if info_path.exists() else "latent"
    if name not in VARIANTS:
        raise ValueError(f"{folder} holds a {name!r} pipeline; this t2i knows {', '.join(VARIANTS)}")
    variant = VARIANTS[name]
    if speed is not None and not variant.speed_options:
        from t2i.pipeline.speed import SpeedConfig

        if speed != SpeedConfig():
            raise ValueError(f"the speed options (--compile, --bf16, ...) apply to latent and cascade pipelines; "
                             f"{folder} is a {name} pipeline")
    with paused_gc():  # the libraries' imports and the weights: long-lived objects only (t2i.startup)
        cls = variant.pipeline()
        return cls.from_pretrained(folder, speed=speed) if variant.speed_options else cls.from_pretrained(folder)


def variants_taking(option: str) -> list[str]:
    """The variants whose pipeline takes keyword option `option` (their `Pipeline.options`)."""
    return [name for name, v in VARIANTS.items() if option in v.pipeline().options]
