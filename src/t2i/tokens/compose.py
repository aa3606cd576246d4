"""`t2i compose` for the tokens variant: a token generator, its VQ autoencoder and text encoder → one folder.

```
PIPE/  t2i.json (variant "tokens", defaults, component metadata)
       text_encoder/ tokenizer/   the text encoder, saved as TextEncoder.save_pretrained writes it
       transformer/               GPT2LMHeadModel folder + text_projection.safetensors
       vqvae/                     diffusers VQModel folder
```
There is no diffusers or transformers pipeline class for this layout, so there is no model_index.json;
`t2i.load` reads t2i.json's "variant".
"""

from __future__ import annotations

from pathlib import Path

from t2i.version import __version__
from t2i.components import read_component_info, weights_digest
from t2i.pipeline.folder import (CompositionError, check_defaults, copy_weights, pipeline_folder, raise_problems,
                                 read_json, text_encoder_folder, write_pipeline_info)
from t2i.text import load_text_encoder

# Sampling settings stored in the folder; "steps" is the number of tokens, fixed by the grid.
TOKENS_DEFAULTS = {"sampler": "autoregressive", "guidance": 3.0, "temperature": 1.0, "top_k": None, "top_p": 1.0}


def check_tokens_fit(gpt_config: dict, vq_config: dict, vq_info: dict, gen_info: dict, text_config: dict,
                     text_max_length: int, *, same_weights: dict[str, bool]) -> list[str]:
    """Every reason the token generator, VQ autoencoder and text encoder cannot work together (empty if none)."""
    problems = []
    vocabulary, codebook = gpt_config["vocab_size"] - 1, vq_config["num_vq_embeddings"]
    if vocabulary != codebook:
        problems.append(f"the token generator writes {vocabulary} codes (vocabulary {vocabulary} + BOS), "
                        f"but the VQ autoencoder's codebook has {codebook}")
    grid = vq_config["sample_size"] // 2 ** (len(vq_config["block_out_channels"]) - 1)
    positions = gpt_config["n_positions"]
    if positions != grid * grid:
        problems.append(f"the token generator writes a grid of {positions} tokens "
                        f"({gen_info['grid_size']}×{gen_info['grid_size']}), but the VQ autoencoder's grid is "
                        f"{grid}×{grid} = {grid * grid} tokens")
    if vq_info["image_size"] != vq_config["sample_size"]:
        problems.append(f"the VQ autoencoder's config says {vq_config['sample_size']} px, "
                        f"its training record {vq_info['image_size']} px")
    text_width = next((int(text_config[k]) for k in ("hidden_size", "d_model") if k in text_config), None)
    if text_width != gen_info["text_encoder"]["hidden_size"]:
        problems.append(f"the token generator reads text of width {gen_info['text_encoder']['hidden_size']}, "
                        f"but the text encoder outputs width {text_width}")
    if text_max_length != gen_info["text_encoder"]["max_length"]:
        problems.append(f"the token generator was trained on prompts of {gen_info['text_encoder']['max_length']} "
                        f"tokens, the text encoder would give {text_max_length}")
    for part, same in same_weights.items():
        if not same:
            problems.append(f"the {part} is not the one the token generator was trained with (different weights); "
                            "pass force=True / --force to compose anyway")
    return problems


def compose_tokens(generator_dir: str | Path, out_dir: str | Path, *, text_encoder: str | Path | None = None,
                   autoencoder_dir: str | Path | None = None, defaults: dict | None = None, force: bool = False,
                   metrics: dict | None = None) -> Path:
    """Write a tokens pipeline folder. `autoencoder_dir` is the VQ autoencoder; it and `text_encoder` default to
    the ones the token generator was trained with. Same signature as the latent variant's `compose`."""
    from t2i.tokens.sampling import check_sampling_settings

    generator_dir, out_dir = Path(generator_dir), Path(out_dir)
    gen_info = read_component_info(generator_dir, "generator")
    if gen_info.get("kind") != "tokens":
        raise CompositionError(f"{generator_dir} holds a {gen_info.get('kind')!r} generator, not a token generator")
    vq_dir = Path(autoencoder_dir or gen_info["vq"]["folder"])
    vq_info = read_component_info(vq_dir, "vq")
    text_source, text_folder = text_encoder_folder(text_encoder, gen_info)
    gpt_config = read_json(generator_dir / "config.json")
    vq_config = read_json(vq_dir / "config.json")
    text_config = read_json(text_folder / "config.json")
    max_length = gen_info["text_encoder"]["max_length"]
    same = {
        "VQ autoencoder": force or weights_digest(vq_dir) == gen_info["vq"]["weights_digest"],
        "text encoder": force or weights_digest(text_folder) == gen_info["text_encoder"]["weights_digest"],
    }
    problems = check_tokens_fit(gpt_config, vq_config, vq_info, gen_info, text_config, max_length, same_weights=same)
    raise_problems(problems)
    if defaults and "steps" in defaults:
        raise ValueError("a tokens pipeline writes one token per step, so it has no steps setting to store")
    check_defaults(defaults, TOKENS_DEFAULTS, "tokens")
    settings = {**TOKENS_DEFAULTS, **(defaults or {})}
    check_sampling_settings(settings["temperature"], settings["top_k"], settings["top_p"])

    with pipeline_folder(out_dir) as tmp:
        encoder = load_text_encoder(text_folder, max_length=max_length)
        encoder.save_pretrained(tmp / "text_encoder", tokenizer_folder=tmp / "tokenizer")
        for name, src in (("transformer", generator_dir), ("vqvae", vq_dir)):
            copy_weights(src, tmp / name)
        write_pipeline_info(tmp, {
            "t2i_version": __version__,
            "variant": "tokens",
            "image_size": vq_info["image_size"],
            "fill_code": vq_info["fill_code"],
            "defaults": settings,
            "components": {
                "text_encoder": {"source": str(text_source), **{k: gen_info["text_encoder"][k]
                                                               for k in ("max_length", "hidden_size")}},
                "generator": {k: v for k, v in gen_info.items() if k != "losses"} | {"folder": str(generator_dir)},
                "vq": {k: v for k, v in vq_info.items() if k != "losses"} | {"folder": str(vq_dir)},
            },
            "metrics": metrics or {},
        })
    return out_dir
