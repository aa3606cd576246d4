"""`t2i compose --base B --upsampler U1 [--upsampler U2 ...]`: a cascade pipeline folder.

    PIPE/t2i.json          variant "cascade", each stage's sizes, schedule, prediction type, noise level
    PIPE/text_encoder/, PIPE/tokenizer/
    PIPE/base/             the base UNet2DConditionModel (config.json + safetensors)
    PIPE/upsampler_1/ ...  one U-Net per super-resolution stage, in order: a UNet2DModel, or a
                           UNet2DConditionModel for a text-conditioned stage (t2i.json says which)

diffusers has no pipeline class for this layout, so the folder has no model_index.json; t2i.json says
everything `t2i.load` needs. Composing checks that the stages chain (each takes the size the one before
makes) and that the text encoder is the one the base, and every text-conditioned upsampler, was trained with.
"""

from __future__ import annotations

from pathlib import Path

from t2i.version import __version__
from t2i.components import read_component_info, weights_digest
from t2i.cascade.pipeline import CASCADE_DEFAULTS
from t2i.pipeline.base import DEFAULTS
from t2i.pipeline.folder import (check_defaults, copy_weights, pipeline_folder, raise_problems, read_json,
                                 text_encoder_folder, text_fit_problems, write_pipeline_info)
from t2i.text import MINILM, load_text_encoder, minilm_path


def check_chain(base_info: dict, upsampler_infos: list[dict], names: list[str]) -> list[str]:
    """Every place where a stage does not take the size the stage before it makes."""
    if not upsampler_infos:
        return ["a cascade needs at least one upsampler"]
    problems = []
    size, maker = base_info["image_size"], "the base draws"
    for info, name in zip(upsampler_infos, names):
        low, high = info["low_size"], info["image_size"]
        if low != size:
            problems.append(f"{maker} {size}×{size} images, but upsampler {name} takes {low}×{low} images "
                            f"(it was trained {low}→{high})")
        size, maker = high, f"upsampler {name} makes"
    return problems


def check_upsampler_text(base_info: dict, upsampler_infos: list[dict], names: list[str]) -> list[str]:
    """Every text-conditioned upsampler whose text encoder (weights or prompt length) is not the base's: the
    pipeline hands the base's prompt embeddings to it."""
    want = base_info["text_encoder"]
    problems = []
    for info, name in zip(upsampler_infos, names):
        have = info.get("text_encoder")
        if have and (have["weights_digest"], have["max_length"]) != (want["weights_digest"], want["max_length"]):
            problems.append(f"upsampler {name} was trained with text encoder {have['source']} ({have['max_length']} "
                            f"tokens, weights {have['weights_digest']}), the base with {want['source']} "
                            f"({want['max_length']} tokens, weights {want['weights_digest']}): they must be the same")
    return problems


def compose_cascade(base_dir: str | Path, upsampler_dirs: list[str | Path], out_dir: str | Path, *,
                    text_encoder: str | Path | None = None, defaults: dict | None = None,
                    noise_levels: list[int] | None = None, force: bool = False, metrics: dict | None = None,
                    copy_text_encoder: bool = True) -> Path:
    """Write a cascade pipeline folder from a base, its upsamplers in order, and the base's text encoder.

    `noise_levels` (one per upsampler) replaces the sampling augmentation level each upsampler recorded.
    `copy_text_encoder=False` (only for the bundled MiniLM) leaves out text_encoder/ and tokenizer/ (87 MB): the
    folder names the installed package and its weights' digest instead, as a latent folder can.
    """
    base_dir, out_dir = Path(base_dir), Path(out_dir)
    check_defaults(defaults, {**DEFAULTS, **CASCADE_DEFAULTS}, "cascade")
    upsampler_dirs = [Path(d) for d in upsampler_dirs]
    base_info = read_component_info(base_dir, "base")
    up_infos = [read_component_info(d, "upsampler") for d in upsampler_dirs]
    text_source, text_folder = text_encoder_folder(text_encoder, base_info)
    max_length = base_info["text_encoder"]["max_length"]
    problems = check_chain(base_info, up_infos, [str(d) for d in upsampler_dirs])
    problems += check_upsampler_text(base_info, up_infos, [str(d) for d in upsampler_dirs])
    if (defaults or {}).get("upsampler_guidance", 1) != 1 and not any(i.get("text_encoder") for i in up_infos):
        problems.append("upsampler guidance needs a text-conditioned upsampler (t2i train upsampler --text-encoder); "
                        "these take no prompt")
    problems += text_fit_problems(read_json(text_folder / "config.json"), max_length,
                                  read_json(base_dir / "config.json"), base_info, part="base")
    if not force and weights_digest(text_folder) != base_info["text_encoder"]["weights_digest"]:
        problems.append("the text encoder is not the one the base was trained with (different weights); "
                        "pass force=True / --force to compose anyway")
    is_minilm = text_folder.resolve() == minilm_path().resolve()
    if not copy_text_encoder and not is_minilm:
        problems.append(f"only the bundled MiniLM can be left out of the folder, not {text_source}")
    levels = noise_levels if noise_levels is not None else [i["sampling_noise_level"] for i in up_infos]
    if len(levels) != len(up_infos):
        problems.append(f"{len(levels)} noise levels for {len(up_infos)} upsamplers")
    for level, info, d in zip(levels, up_infos, upsampler_dirs):
        n = info["schedule"]["num_train_timesteps"]
        if not 0 <= level < n:
            problems.append(f"noise level {level} for upsampler {d} is not a timestep in 0..{n - 1}")
    raise_problems(problems)

    with pipeline_folder(out_dir) as tmp:
        if copy_text_encoder:
            load_text_encoder(text_folder, max_length=max_length).save_pretrained(tmp / "text_encoder",
                                                                                  tokenizer_folder=tmp / "tokenizer")
        copy_weights(base_dir, tmp / "base")
        stages = []
        for k, (d, info, level) in enumerate(zip(upsampler_dirs, up_infos, levels), start=1):
            copy_weights(d, tmp / f"upsampler_{k}")
            stages.append({"folder": f"upsampler_{k}", "low_size": info["low_size"], "image_size": info["image_size"],
                           "prediction_type": info["prediction_type"], "schedule": info["schedule"],
                           "noise_level": int(level), "text_conditioned": bool(info.get("text_encoder"))})
        write_pipeline_info(tmp, {
            "t2i_version": __version__,
            "variant": "cascade",
            "image_size": stages[-1]["image_size"],
            "defaults": {**DEFAULTS, **CASCADE_DEFAULTS, **(defaults or {})},
            "base": {"folder": "base", "image_size": base_info["image_size"],
                     "prediction_type": base_info["prediction_type"], "schedule": base_info["schedule"]},
            "upsamplers": stages,
            "components": {
                "text_encoder": {"source": MINILM if is_minilm else str(text_source), "copied": copy_text_encoder,
                                 "weights_digest": weights_digest(text_folder),
                                 **{k: base_info["text_encoder"][k] for k in ("max_length", "hidden_size")}},
                "base": {k: v for k, v in base_info.items() if k != "losses"} | {"folder": str(base_dir)},
                "upsamplers": [{k: v for k, v in i.items() if k != "losses"} | {"folder": str(d)}
                               for i, d in zip(up_infos, upsampler_dirs)],
            },
            "metrics": metrics or {},
        })
    return out_dir
