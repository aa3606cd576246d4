"""The three components trained for real at tiny sizes: the text encoder, the autoencoder, the generator."""

import logging

import pytest
import torch

from t2i.autoencoder import AutoencoderConfig, AutoencoderTrainConfig, psnr, train_autoencoder
from t2i.components import read_component_info
from t2i.data import ShapesConfig, load_tensors, scan_folder, write_shapes
from t2i.diffusion.unet import GeneratorConfig
from t2i.latent.train import GeneratorTrainConfig, train_generator
from t2i.text import SCRATCH, TextEncoderConfig, load_text_encoder, scratch_text_encoder
from t2i.training.trainer import TrainConfig


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return write_shapes(tmp_path_factory.mktemp("shapes") / "data", ShapesConfig(n=192, size=16, seed=3))


@pytest.fixture(scope="module")
def minilm():
    return load_text_encoder("minilm", max_length=16)


# -- text encoder ---------------------------------------------------------------------------------


def test_text_encoder_pads_to_max_length_and_masks(minilm):
    emb, mask = minilm.encode(["a red circle", ""])
    assert emb.shape == (2, 16, 384)
    assert mask[0].sum() == 5 and mask[1].sum() == 2  # [CLS] a red circle [SEP] / [CLS] [SEP]
    assert not torch.allclose(emb[0], emb[1])


def test_text_encoder_warns_what_truncation_cut(minilm, caplog):
    with caplog.at_level(logging.WARNING, logger="t2i.text"):
        minilm.encode(["a red circle " + "and a blue square " * 6 + "zebra"])
    assert "dropped" in caplog.text and "zebra" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="t2i.text"):
        minilm.encode(["a red circle"])
    assert caplog.text == ""


def test_text_encoder_matches_diffusers_prompt_encoding(pipeline_dir, pipe):
    """Same prompt, same embedding in t2i and in diffusers' StableDiffusionPipeline (docs/pitfalls.md)."""
    from diffusers import StableDiffusionPipeline

    sd = StableDiffusionPipeline.from_pretrained(pipeline_dir, safety_checker=None)
    prompts = ["a red circle", "a small blue square at the top"]
    ours = pipe.encode_prompts(prompts)
    theirs, _ = sd.encode_prompt(prompts, "cpu", 1, False)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_scratch_encoder_is_deterministic_and_small():
    a = scratch_text_encoder(TextEncoderConfig(source=SCRATCH, seed=1))
    b = scratch_text_encoder(TextEncoderConfig(source=SCRATCH, seed=1))
    c = scratch_text_encoder(TextEncoderConfig(source=SCRATCH, seed=2))
    ea, eb, ec = (m.encode(["a red circle"])[0] for m in (a, b, c))
    assert torch.equal(ea, eb) and not torch.allclose(ea, ec)
    assert ea.shape[-1] == 128


# -- autoencoder ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def autoencoder(shapes, tmp_path_factory):
    out = tmp_path_factory.mktemp("ae")
    cfg = AutoencoderTrainConfig(
        model=AutoencoderConfig(image_size=16, block_out_channels=(16, 32), norm_num_groups=8),
        train=TrainConfig(steps=60, batch_size=16, lr=3e-3, warmup_steps=5, log_every=10), held_out=32)
    return out, train_autoencoder(shapes, out, cfg)


def test_autoencoder_loss_falls_and_psnr_rises(autoencoder, shapes):
    from diffusers import AutoencoderKL

    from t2i.autoencoder import build_autoencoder

    out, info = autoencoder
    assert info["losses"][-1] < 0.5 * info["losses"][0]
    images = load_tensors(scan_folder(shapes)[0][:32], 16)  # the held-out images
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        untrained = build_autoencoder(AutoencoderConfig(image_size=16, block_out_channels=(16, 32), norm_num_groups=8))
    with torch.no_grad():
        before = psnr(untrained.decode(untrained.encode(images).latent_dist.mode()).sample, images).mean().item()
    after = info["metrics"]["psnr_held_out"]
    assert after > before + 5, (before, after)
    vae = AutoencoderKL.from_pretrained(out)
    assert vae.config.scaling_factor == pytest.approx(info["latent_scaling_factor"])
    assert vae.config.scaling_factor != 1.0  # measured from data, not the placeholder


def test_scaling_factor_gives_unit_variance_latents(autoencoder, shapes):
    from diffusers import AutoencoderKL

    out, info = autoencoder
    vae = AutoencoderKL.from_pretrained(out)
    images = load_tensors(scan_folder(shapes)[0], 16)
    with torch.no_grad():
        z = vae.encode(images).latent_dist.sample(generator=torch.Generator().manual_seed(0))
    assert (z * vae.config.scaling_factor).std().item() == pytest.approx(1.0, abs=0.05)


# -- generator ------------------------------------------------------------------------------------


def _generator_cfg(source="minilm", steps=40, prediction_type="v_prediction", pooled_text_heads=0):
    return GeneratorTrainConfig(
        model=GeneratorConfig(block_out_channels=(16, 32), norm_num_groups=8, prediction_type=prediction_type,
                              pooled_text_heads=pooled_text_heads),
        text=TextEncoderConfig(source=source, max_length=16, scratch_hidden_size=32, scratch_heads=2),
        train=TrainConfig(steps=steps, batch_size=16, lr=2e-3, warmup_steps=4, ema_decay=0.9, log_every=10))


def test_generator_loss_falls_and_caches_are_reused(autoencoder, shapes, tmp_path):
    ae_dir, _ = autoencoder
    cache = tmp_path / "cache"
    info = train_generator(shapes, ae_dir, tmp_path / "gen", _generator_cfg(), cache_dir=cache)
    assert info["losses"][-1] < info["losses"][0]
    assert read_component_info(tmp_path / "gen", "generator")["text_encoder"]["max_length"] == 16
    files = sorted(p.name for p in cache.iterdir())
    assert [f.split("-")[0] for f in files] == ["latents", "repa", "text"]  # REPA's targets: on by default
    stamps = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    train_generator(shapes, ae_dir, tmp_path / "gen2", _generator_cfg(steps=2), cache_dir=cache)
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == stamps  # read, not rewritten


def test_generator_trains_with_epsilon_prediction_and_composes(autoencoder, shapes, tmp_path):
    import t2i
    from t2i.latent.compose import compose

    ae_dir, _ = autoencoder
    info = train_generator(shapes, ae_dir, tmp_path / "gen", _generator_cfg(prediction_type="epsilon", steps=30))
    assert info["prediction_type"] == "epsilon" and info["losses"][-1] < info["losses"][0]
    pipe = t2i.load(compose(tmp_path / "gen", tmp_path / "pipe"))
    assert pipe.prediction_type == "epsilon"
    (img,) = pipe("a red circle", seed=0, steps=4)
    assert img.size == (16, 16)


def test_pooled_text_generator_trains_composes_and_diffusers_agrees(autoencoder, shapes, tmp_path):
    """The prompt's attention-pooled summary feeds the timestep embedding; diffusers' pipeline runs it unchanged."""
    import numpy as np
    from diffusers import StableDiffusionPipeline

    import t2i
    from t2i.latent.compose import compose
    from t2i.sampling import per_image_randn

    ae_dir, _ = autoencoder
    info = train_generator(shapes, ae_dir, tmp_path / "gen", _generator_cfg(steps=20, pooled_text_heads=6))
    assert info["losses"][-1] < info["losses"][0]
    pipe = t2i.load(compose(tmp_path / "gen", tmp_path / "pipe"))
    assert pipe.unet.config.addition_embed_type == "text"
    pool = pipe.unet.add_embedding.pool
    assert pool.num_heads == 6 and pool.k_proj.in_features == 384  # pooled over the text width, not projected
    seeds = [0, 1]
    ours = pipe(["a red circle", "a blue square"], seed=seeds, steps=6, guidance=3.0, sampler="dpmpp_2m")
    h = pipe.image_size // pipe.vae_factor
    latents = per_image_randn((4, h, h), [torch.Generator().manual_seed(s) for s in seeds])
    sd = StableDiffusionPipeline.from_pretrained(tmp_path / "pipe", safety_checker=None)
    theirs = sd(["a red circle", "a blue square"], num_inference_steps=6, guidance_scale=3.0, latents=latents).images
    diff = np.abs(np.stack([np.asarray(i, np.int16) for i in ours]) - np.stack([np.asarray(i, np.int16) for i in theirs]))
    assert diff.max() <= 2
    with torch.no_grad():  # and the pooled path is live: changing it changes the images
        pipe.unet.add_embedding.proj.weight.mul_(3)
    (changed,) = pipe("a red circle", seed=0, steps=6, guidance=3.0)
    assert np.abs(np.asarray(changed, np.int16) - np.asarray(ours[0], np.int16)).max() > 0


def test_bad_pooled_text_heads_are_refused():
    from t2i.diffusion.unet import build_unet

    with pytest.raises(ValueError, match="pooled_text_heads 5 does not divide the text width 384"):
        build_unet(GeneratorConfig(pooled_text_heads=5), sample_size=8, latent_channels=4, cross_attention_dim=384)


def test_generator_trains_a_scratch_text_encoder_jointly(autoencoder, shapes, tmp_path):
    ae_dir, _ = autoencoder
    info = train_generator(shapes, ae_dir, tmp_path / "gen", _generator_cfg(SCRATCH, steps=20))
    assert info["text_encoder"]["hidden_size"] == 32
    trained = load_text_encoder(tmp_path / "gen" / "text_encoder")
    fresh = scratch_text_encoder(_generator_cfg(SCRATCH).text)
    assert trained.max_length == 16
    a, b = trained.encode(["a red circle"])[0], fresh.encode(["a red circle"])[0]
    assert not torch.allclose(a, b)  # the diffusion loss moved the encoder's weights


def test_channel_normalisation_is_exact_and_standardises(shapes):
    from t2i.autoencoder import build_autoencoder, normalise_latent_channels

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vae = build_autoencoder(AutoencoderConfig(image_size=16, block_out_channels=(16, 32), norm_num_groups=8))
    images = load_tensors(scan_folder(shapes)[0][:64], 16)
    with torch.no_grad():  # make one channel's spread and offset clearly unlike the others'
        vae.quant_conv.weight[0] *= 5
        vae.quant_conv.bias[0] += 3
        before = vae.decode(vae.encode(images).latent_dist.mode()).sample
        raw = vae.encode(images).latent_dist.mode()
    mu, sigma = normalise_latent_channels(vae, images, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        after = vae.decode(vae.encode(images).latent_dist.mode()).sample
        z = vae.encode(images).latent_dist.sample(generator=torch.Generator().manual_seed(1))  # what training sees
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)  # float32 rounding of the refolded weights
    assert raw.std((0, 2, 3)).max() / raw.std((0, 2, 3)).min() > 3 and raw.mean((0, 2, 3)).abs().max() > 2
    torch.testing.assert_close(z.mean((0, 2, 3)), torch.zeros(4), atol=0.05, rtol=0)
    torch.testing.assert_close(z.std((0, 2, 3)), torch.ones(4), atol=0.05, rtol=0)
