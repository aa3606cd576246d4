"""The latent generator's transformer backbone (PixArt-α's PixArtTransformer2DModel): trained a few steps under
both objectives, composed into a `transformer/` folder, sampled end to end with per-image seeds, guidance, negative
prompts and previews; exact resume; and the refusals of configs and compositions that do not fit. Tiny sizes on the
quick demo's data (the session's `demo_run`: 16 px images, 4×4×4 latents, so 2×2 patches of 2×2)."""

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import t2i
from t2i.diffusion.transformer import TRANSFORMER_PRESETS, build_transformer
from t2i.diffusion.unet import GeneratorConfig, build_unet, check_objective
from t2i.latent.compose import compose
from t2i.latent.train import GeneratorTrainConfig, train_generator
from t2i.pipeline import CompositionError
from t2i.sampling import Denoiser, get_sampler, guided, per_image_randn, spaced_timesteps, unet_network
from t2i.text import TextEncoderConfig
from t2i.training.trainer import TrainConfig

WEIGHTS = "diffusion_pytorch_model.safetensors"


def transformer_config(objective="diffusion", **train):
    model = TRANSFORMER_PRESETS["tiny"]()
    if objective == "flow":
        model.objective, model.min_snr_gamma = "flow", 0.0
    return GeneratorTrainConfig(
        model=model, text=TextEncoderConfig(max_length=16),
        train=TrainConfig(**{"steps": 6, "batch_size": 8, "lr": 1e-3, "warmup_steps": 2, "ema_decay": 0.99,
                             "log_every": 2, "checkpoint_every": 2, **train}))


def _arr(images):
    return np.stack([np.asarray(i, dtype=np.int16) for i in images])


@pytest.fixture(scope="module")
def tf_folder(demo_run, tmp_path_factory):
    out, tmp = demo_run[0], tmp_path_factory.mktemp("transformer")
    info = train_generator(out / "data", out / "autoencoder", tmp / "gen",
                           transformer_config(steps=10, checkpoint_every=0, sample_every=5))
    assert info["backbone"] == "transformer" and info["prediction_type"] == "v_prediction"
    assert sorted(p.name for p in (tmp / "gen" / "samples").iterdir()) == ["step-000000005.png", "step-000000010.png"]
    return compose(tmp / "gen", tmp / "pipe", defaults={"steps": 5, "guidance": 3.0})


@pytest.fixture(scope="module")
def tf_pipe(tf_folder):
    return t2i.load(tf_folder)


def test_the_folder_keeps_the_transformer_where_diffusers_pixart_pipelines_do(tf_folder, tf_pipe):
    assert (tf_folder / "transformer" / WEIGHTS).is_file() and not (tf_folder / "unet").exists()
    config = json.loads((tf_folder / "transformer" / "config.json").read_text())
    assert config["_class_name"] == "PixArtTransformer2DModel"
    assert config["out_channels"] == config["in_channels"] == 4 and config["use_additional_conditions"] is False
    assert config["caption_channels"] == 384  # MiniLM's width, projected to the transformer's inside it
    index = json.loads((tf_folder / "model_index.json").read_text())
    assert index["_class_name"] == "PixArtAlphaPipeline"
    assert index["transformer"] == ["diffusers", "PixArtTransformer2DModel"]
    info = json.loads((tf_folder / "t2i.json").read_text())
    assert info["backbone"] == "transformer" and info["components"]["generator"]["backbone"] == "transformer"
    assert tf_pipe.backbone == "transformer" and tf_pipe.size_multiple == 4 * 2
    (img,) = tf_pipe("a red circle", seed=0)
    assert img.size == (16, 16)
    with pytest.raises(ValueError, match=r"height 12 is not a positive multiple of 8 \(autoencoder factor 4 × "
                                         r"transformer patch size 2\)"):
        tf_pipe("a red circle", height=12, width=12)


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "ddim"])
def test_same_seed_same_image_at_any_batch_position(tf_pipe, sampler):
    alone = tf_pipe("a blue square", seed=[7], steps=5, guidance=3.0, sampler=sampler)
    batch = tf_pipe(["a red circle", "a green diamond", "a blue square"], seed=[1, 2, 7], steps=5, guidance=3.0,
                    sampler=sampler)
    assert np.abs(_arr(alone) - _arr(batch[2:])).max() <= 1  # batched matmuls: last float bits
    assert np.abs(_arr(batch[:1]) - _arr(batch[2:])).max() > 10
    again = tf_pipe("a blue square", seed=[7], steps=5, guidance=3.0, sampler=sampler)
    assert np.array_equal(_arr(alone), _arr(again))


def test_guidance_with_a_negative_prompt_is_the_guided_run_built_by_hand(tf_pipe):
    prompt, negative, seed, steps, scale = "a red circle", "a blue square", 3, 4, 4.0
    r = tf_pipe.request(prompt, negative_prompt=negative, seed=[seed], steps=steps, guidance=scale)
    ours = tf_pipe._sample(r)
    cond, neg = tf_pipe.encode_prompts([prompt]), tf_pipe.encode_prompts([negative])
    den = Denoiser(unet_network(tf_pipe.unet), tf_pipe.alphas_cumprod, tf_pipe.prediction_type)
    x = per_image_randn((4, 4, 4), [torch.Generator().manual_seed(seed)])
    with torch.inference_mode():
        by_hand = get_sampler("dpmpp_2m")(guided(den, cond, neg, scale), x, spaced_timesteps(1000, steps),
                                          tf_pipe.alphas_cumprod)
    assert torch.equal(ours, by_hand)
    plain = tf_pipe._sample(tf_pipe.request(prompt, seed=[seed], steps=steps, guidance=scale))
    unguided = tf_pipe._sample(tf_pipe.request(prompt, seed=[seed], steps=steps, guidance=1.0))
    assert (plain - ours).abs().max() > 1e-4 and (plain - unguided).abs().max() > 1e-4


def test_previews_stream_one_per_step(tf_pipe):
    events = list(tf_pipe.stream("a yellow triangle", seed=5, steps=3))
    assert [e.step for e in events[:-1]] == [1, 2, 3] and events[-1].images[0].size == (16, 16)


def test_flow_objective_trains_and_samples_with_the_transformer(demo_run, tmp_path):
    out = demo_run[0]
    info = train_generator(out / "data", out / "autoencoder", tmp_path / "gen",
                           transformer_config("flow", checkpoint_every=0))
    assert (info["objective"], info["backbone"]) == ("flow", "transformer")
    pipe = t2i.load(compose(tmp_path / "gen", tmp_path / "pipe"))
    assert pipe.objective == "flow" and pipe.backbone == "transformer"
    a = pipe(["a red circle", "a blue square"], seed=[0, 1], steps=4, guidance=3.0, negative_prompt="green")
    b = pipe(["a blue square"], seed=[1], steps=4, guidance=3.0, negative_prompt="green", sampler="flow_heun")
    assert np.abs(_arr(a[1:]) - _arr(b)).max() > 0  # Heun is another sampler, same seed
    assert np.array_equal(_arr(a[1:]), _arr(pipe("a blue square", seed=1, steps=4, guidance=3.0,
                                                 negative_prompt="green")))
    # diffusers' PixArtAlphaPipeline loads the folder but cannot run flow-matching schedulers (diffusers 0.42):
    # it calls scheduler.scale_model_input, which FlowMatchEulerDiscreteScheduler does not define.
    from diffusers import PixArtAlphaPipeline

    pixart = PixArtAlphaPipeline.from_pretrained(tmp_path / "pipe")
    if not hasattr(pixart.scheduler, "scale_model_input"):
        pixart.scheduler.init_noise_sigma = 1.0  # the first missing attribute; the next is fatal
        with pytest.raises(AttributeError, match="scale_model_input"):
            pixart("a red circle", num_inference_steps=2, height=16, width=16, use_resolution_binning=False,
                   clean_caption=False, max_sequence_length=16)


@pytest.mark.parametrize("objective", ["diffusion", "flow"])
def test_stopped_and_resumed_equals_uninterrupted_bitwise(demo_run, tmp_path, objective):
    out, common = demo_run[0], dict(cache_dir=tmp_path / "cache")
    whole = train_generator(out / "data", out / "autoencoder", tmp_path / "whole", transformer_config(objective),
                            **common)
    stopped = train_generator(out / "data", out / "autoencoder", tmp_path / "part",
                              transformer_config(objective, stop_at=3), **common)
    assert stopped["step"] == 3 and not (tmp_path / "part" / WEIGHTS).exists()
    resumed = train_generator(out / "data", out / "autoencoder", tmp_path / "part", transformer_config(objective),
                              resume=True, **common)
    a, b = load_file(tmp_path / "whole" / WEIGHTS), load_file(tmp_path / "part" / WEIGHTS)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["losses"] == whole["losses"] and not math.isnan(whole["metrics"]["final_loss"])


# ---------------------------------------------------------------- refusals


def test_configs_that_do_not_fit_are_refused_with_their_reason():
    tiny = TRANSFORMER_PRESETS["tiny"]
    kw = dict(sample_size=4, latent_channels=4, cross_attention_dim=384)
    with pytest.raises(ValueError, match="latent size 6 is not divisible by the transformer's patch size 4"):
        cfg = tiny()
        cfg.patch_size = 4
        build_transformer(cfg, **{**kw, "sample_size": 6})
    with pytest.raises(ValueError, match="pooled_text_heads 6 is a U-Net option"):
        build_transformer(GeneratorConfig(backbone="transformer", pooled_text_heads=6), **kw)
    with pytest.raises(ValueError, match="transformer_layers must be at least 1, not 0"):
        build_transformer(GeneratorConfig(backbone="transformer", transformer_layers=0), **kw)
    with pytest.raises(ValueError, match="min_snr_gamma 5.0 weighs a VP diffusion loss"):
        build_transformer(GeneratorConfig(backbone="transformer", objective="flow"), **kw)
    with pytest.raises(ValueError, match="unknown backbone 'dit'; choose from unet, transformer"):
        check_objective(GeneratorConfig(backbone="dit"))
    # The cascade's base builds with build_unet, which takes no transformer.
    with pytest.raises(ValueError, match="build_unet builds the U-Net backbone, not 'transformer'"):
        build_unet(tiny(), **kw)


def test_training_refuses_latents_the_patches_do_not_tile_before_caching(demo_run, tmp_path):
    out = demo_run[0]
    cfg = transformer_config()
    cfg.model.patch_size = 3
    with pytest.raises(ValueError, match="4×4 latents, not divisible by the transformer's factor 3"):
        train_generator(out / "data", out / "autoencoder", tmp_path / "gen", cfg)
    assert not (tmp_path / "gen" / "cache").exists()


def test_cli_trains_composes_and_generates_with_the_transformer_and_refuses_a_unet_preset(demo_run, tmp_path,
                                                                                         capsys):
    from t2i.cli import main

    out, gen, pipe = demo_run[0], tmp_path / "gen", tmp_path / "pipe"
    base = ["train", "generator", "--data", str(out / "data"), "--autoencoder", str(out / "autoencoder"),
            "--out", str(gen), "--backbone", "transformer", "--steps", "3", "--batch-size", "8", "--max-length", "16"]
    assert main(base + ["--preset", "medium"]) == 1
    assert "--preset medium: the transformer backbone has presets tiny, small" in capsys.readouterr().err
    assert not gen.exists()
    assert main(base + ["--preset", "tiny", "--pipeline-out", str(pipe)]) == 0
    assert json.loads((gen / "t2i_component.json").read_text())["config"]["model"]["backbone"] == "transformer"
    assert main(["generate", "a red circle", "--model", str(pipe), "--n", "2", "--steps", "3", "--seed", "9",
                 "--negative", "a blue square", "--out", str(tmp_path / "images")]) == 0
    assert len(list((tmp_path / "images").glob("a_red_circle_*.png"))) == 2


def test_compose_refuses_a_text_encoder_of_another_width_and_a_learned_variance(tf_folder, tmp_path):
    import shutil

    from t2i.text import SCRATCH, scratch_text_encoder

    gen = json.loads((tf_folder / "t2i.json").read_text())["components"]["generator"]["folder"]
    narrow = tmp_path / "te"
    scratch_text_encoder(TextEncoderConfig(source=SCRATCH, scratch_hidden_size=64)).save_pretrained(narrow)
    with pytest.raises(CompositionError, match="cross-attends over width 384, but the text encoder outputs width 64"):
        compose(gen, tmp_path / "pipe", text_encoder=narrow)
    sigma = tmp_path / "sigma"
    shutil.copytree(gen, sigma, ignore=shutil.ignore_patterns("cache", "checkpoints"))
    config = json.loads((sigma / "config.json").read_text())
    (sigma / "config.json").write_text(json.dumps({**config, "out_channels": 8}))
    with pytest.raises(CompositionError, match="outputs 8 channels for 4-channel latents"):
        compose(sigma, tmp_path / "pipe")
    assert not (tmp_path / "pipe").exists()


def test_diffusers_pixart_pipeline_loads_the_folder_and_runs_it_given_t2i_embeddings(tf_folder, tf_pipe):
    """PixArtAlphaPipeline loads the folder (it expects T5 and warns about the BERT encoder) and runs it with three
    arguments. Its own prompt encoding masks the padding tokens in cross-attention, which training never did, so it
    does not draw t2i's images; given t2i's embeddings with all-ones masks, it does (docs/training.md)."""
    from diffusers import PixArtAlphaPipeline

    pixart = PixArtAlphaPipeline.from_pretrained(tf_folder)
    prompts, seeds = ["a red circle", "a blue square"], [0, 1]
    latents = per_image_randn((4, 4, 4), [torch.Generator().manual_seed(s) for s in seeds])
    # No resolution binning (PixArt's tables are for sample sizes 32, 64, 128); no caption cleaning (bs4, ftfy);
    # prompts as long as the generator was trained on.
    common = dict(num_inference_steps=5, guidance_scale=3.0, latents=latents, height=16, width=16,
                  use_resolution_binning=False, clean_caption=False, max_sequence_length=16)
    (image, _) = pixart(prompts, **common).images
    assert image.size == (16, 16)
    cond, uncond = tf_pipe.encode_prompts(prompts), tf_pipe.unconditional(("", ""))
    ones = torch.ones(cond.shape[:2], dtype=torch.long)  # (B, L): attend to every token, as in training
    theirs = pixart(None, negative_prompt=None, prompt_embeds=cond, prompt_attention_mask=ones,
                    negative_prompt_embeds=uncond, negative_prompt_attention_mask=ones, **common).images
    ours = tf_pipe(prompts, seed=seeds, steps=5, guidance=3.0)
    assert np.abs(_arr(ours) - _arr(theirs)).max() <= 2
