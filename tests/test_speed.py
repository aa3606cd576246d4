"""Speed options give what the plain path gives; previews are cheap without changing the images."""

import json
import shutil

import numpy as np
import pytest
import torch

import t2i
from t2i.pipeline.speed import SpeedConfig
from t2i.autoencoder.preview_decoder import (PREVIEW_FOLDER, PreviewDecoder, PreviewDecoderConfig, PreviewFitConfig,
                                          distil_preview_decoder, load_preview_decoder)
from t2i.sampling import unet_network

PLAIN = SpeedConfig(reuse_text_kv=False, channels_last=False, bf16=False, fast_previews=False)


def _arr(images):
    return np.stack([np.asarray(i, dtype=np.int16) for i in images])


def _latents(pipe, **kwargs):
    settings = dict(prompt=["a red circle", "a small blue square above a large green circle"], negative_prompt=None,
                    num_images=1, steps=5, guidance=3.0, seed=[4, 5], sampler="dpmpp_2m", height=None, width=None)
    return pipe._sample(pipe.request(**{**settings, **kwargs}))  # (B, c, h, w) scaled latents


@pytest.fixture(scope="module")
def plain(pipeline_dir):
    return t2i.load(pipeline_dir, speed=PLAIN)


def test_reused_text_keys_values_give_the_plain_result(pipe, plain):
    assert pipe.speed.reuse_text_kv
    # The same projections of the same embeddings, computed once instead of per step: equal up to float
    # rounding (the two processors order a reshape differently; 1e-6 is far below any visible change).
    torch.testing.assert_close(_latents(pipe), _latents(plain), atol=1e-6, rtol=0)


def test_reused_keys_values_follow_the_embeddings_they_came_from(pipe, plain):
    """A network keeps K, V per layer for the embeddings tensor it saw; a new tensor is never served stale ones."""
    net, reference = unet_network(pipe.unet, reuse_text_kv=True), unet_network(plain.unet)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 4, 4, generator=g)
    t = torch.tensor([500, 500])
    first, second = pipe.encode_prompts(["a red circle"] * 2), pipe.encode_prompts(["a blue square"] * 2)
    for cond in (first, first, second, first.clone()):
        torch.testing.assert_close(net(x, t, cond), reference(x, t, cond), atol=1e-6, rtol=0)


def test_channels_last_gives_the_plain_result(pipeline_dir, plain):
    nhwc = t2i.load(pipeline_dir, speed=SpeedConfig(channels_last=True))
    assert nhwc.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    # oneDNN picks other convolution kernels for NHWC: same maths, other summation order.
    torch.testing.assert_close(_latents(nhwc), _latents(plain), atol=1e-4, rtol=0)


def test_bf16_autocast_stays_close_to_float32(pipeline_dir, plain):
    bf16 = t2i.load(pipeline_dir, speed=SpeedConfig(bf16=True))
    ours, reference = _latents(bf16), _latents(plain)
    assert ours.dtype == torch.float32
    # bfloat16 keeps 8 bits of mantissa (~0.4 % per operation); over 5 steps the latents stay within a few %.
    relative = ((ours - reference).norm() / reference.norm()).item()
    assert 0 < relative < 0.05


# -- previews -------------------------------------------------------------------------------------


def test_previews_use_the_preview_decoder_and_leave_the_images_alone(pipe, plain):
    assert pipe.preview_decoder is not None  # the quick demo's autoencoder fitted one, compose copied it
    fast, full = [], []
    images = pipe(["a red circle", "a blue square"], seed=3, steps=4,
                  callback=lambda step, total, previews: fast.append(previews))
    reference = plain(["a red circle", "a blue square"], seed=3, steps=4,
                      callback=lambda step, total, previews: full.append(previews))
    assert np.array_equal(_arr(images), _arr(pipe(["a red circle", "a blue square"], seed=3, steps=4)))
    assert np.abs(_arr(images) - _arr(reference)).max() <= 1  # previews on or off, fast or full: the same images
    assert len(fast) == len(full) == 4 and fast[0][0].size == full[0][0].size == (pipe.image_size, pipe.image_size)
    assert np.abs(_arr(fast[-1]) - _arr(full[-1])).max() > 0  # they really came from the other decoder


def test_a_pipeline_without_a_preview_decoder_previews_with_the_real_decoder(pipeline_dir, tmp_path):
    bare = tmp_path / "pipe"
    shutil.copytree(pipeline_dir, bare)
    shutil.rmtree(bare / "vae" / PREVIEW_FOLDER)
    pipe = t2i.load(bare)
    assert pipe.preview_decoder is None
    latents = _latents(pipe)
    assert np.array_equal(_arr(pipe.decode_preview(latents)), _arr(pipe.decode(latents)))


def test_distillation_recovers_a_network_it_can_represent(tmp_path):
    """The fitting loop, against a target it can reach exactly: images drawn by a random preview decoder."""
    config = PreviewDecoderConfig(latent_channels=4, downsampling_factor=2, width=8)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        teacher = PreviewDecoder(config).eval().requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    latents, held = torch.randn(256, 4, 4, 4, generator=g), torch.randn(64, 4, 4, 4, generator=g)
    with torch.no_grad():
        train, test = (latents, teacher(latents)), (held, teacher(held))
    spread = (test[1] - test[1].mean(0)).pow(2).mean().sqrt().item()  # error of predicting the mean image
    student = distil_preview_decoder(PreviewDecoderConfig(latent_channels=4, downsampling_factor=2, width=16), train,
                                     test, PreviewFitConfig(epochs=60, batch_size=32, lr=1e-2))
    error = student.config.metrics["rms_error_held_out"]
    # A wider student of the same form reaches the teacher; measured 0.1-0.2 of the spread, pinned loosely.
    assert error < 0.35 * spread, (error, spread)
    with torch.no_grad():
        assert (student(held) - test[1]).pow(2).mean().sqrt().item() == pytest.approx(error)
    student.save(tmp_path)
    again = load_preview_decoder(tmp_path)
    assert json.loads((tmp_path / PREVIEW_FOLDER / "config.json").read_text())["width"] == 16
    torch.testing.assert_close(again(held), student(held))


def test_autoencoder_training_fits_a_preview_decoder_and_compose_carries_it(demo_run, pipeline_dir):
    out, _ = demo_run
    fitted = load_preview_decoder(out / "autoencoder")
    carried = load_preview_decoder(pipeline_dir / "vae")
    assert fitted is not None and carried is not None
    assert fitted.config.metrics["rms_error_held_out"] > 0
    z = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(fitted(z), carried(z), atol=0, rtol=0)
    assert fitted(z).shape == (2, 3, 16, 16)


def test_speed_options_are_refused_for_the_tokens_variant_before_loading(tmp_path):
    (tmp_path / "t2i.json").write_text(json.dumps({"variant": "tokens"}))  # nothing else: loading would fail
    with pytest.raises(ValueError, match="apply to latent and cascade pipelines; .* is a tokens pipeline"):
        t2i.load(tmp_path, speed=SpeedConfig(compile=True))


# -- the cascade (the shipped 64-px model: a base with cross-attention, an upsampler without) ---------------


def _pixels(pipe):
    r = pipe.request(["a red apple", "a cat face"], negative_prompt=None, num_images=1, steps=3, guidance=3.0,
                     seed=[4, 5], sampler="dpmpp_2m", options=pipe._options(2, None, None))
    return pipe._sample(r)  # (B, 3, 64, 64) in [-1, 1]


@pytest.fixture(scope="module")
def cascade_plain():
    return t2i.load(speed=PLAIN)


def test_the_cascade_base_reuses_text_keys_values_with_the_plain_result(cascade_plain):
    pipe = t2i.load(speed=SpeedConfig(bf16=False))  # the default options, in float32
    assert type(pipe).__name__ == "CascadePipeline" and pipe.speed.reuse_text_kv and not pipe.bf16
    assert pipe.base.attn_processors and all(type(p).__name__ == "ReusedTextKV"
                                             for p in pipe.base.attn_processors.values())
    torch.testing.assert_close(_pixels(pipe), _pixels(cascade_plain), atol=1e-5, rtol=0)


def test_the_cascade_runs_channels_last_with_the_plain_result(cascade_plain):
    nhwc = t2i.load(speed=SpeedConfig(channels_last=True, bf16=False))
    assert nhwc.base.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert nhwc.upsamplers[0].conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(_pixels(nhwc), _pixels(cascade_plain), atol=1e-4, rtol=0)


@pytest.mark.parametrize("native", [True, False])
def test_bf16_by_default_for_the_cascade_where_the_cpu_has_it_never_for_the_latent_unet(monkeypatch, pipeline_dir,
                                                                                        native):
    import t2i.pipeline.speed as speed

    monkeypatch.setattr(speed, "native_bf16", lambda: native)
    assert t2i.load().bf16 is native  # the shipped cascade
    assert t2i.load(speed=SpeedConfig(bf16=not native)).bf16 is (not native)  # asked for: as asked
    assert t2i.load(pipeline_dir).bf16 is False  # the latent demo: only when asked for
    assert t2i.load(pipeline_dir, speed=SpeedConfig(bf16=True)).bf16 is True


def test_the_cascade_in_bf16_autocast_stays_close_to_float32(cascade_plain):
    bf16 = t2i.load(speed=SpeedConfig(bf16=True))
    ours, reference = _pixels(bf16), _pixels(cascade_plain)
    assert ours.dtype == torch.float32
    # Both stages in bfloat16: a few % of the pixels' spread, no more (the images look the same).
    relative = ((ours - reference).norm() / reference.norm()).item()
    assert 0 < relative < 0.05


def test_cli_fits_a_preview_decoder_for_an_autoencoder_that_has_none(demo_run, tmp_path, capsys):
    from t2i.cli import main

    ae = tmp_path / "autoencoder"
    shutil.copytree(demo_run[0] / "autoencoder", ae)
    shutil.rmtree(ae / PREVIEW_FOLDER)
    assert main(["train", "preview-decoder", "--autoencoder", str(ae), "--epochs", "1"]) == 0  # data: as recorded
    assert "held-out RMS error" in capsys.readouterr().out
    decoder = load_preview_decoder(ae)
    assert decoder is not None and decoder.config.metrics["held_out_latents"] == 3 * 32  # 128 images, a quarter


@pytest.mark.parametrize("flags, bf16", [([], None), (["--bf16"], True), (["--no-bf16"], False)])
def test_the_bf16_flags_ask_for_on_off_or_the_pipelines_own_choice(flags, bf16):
    from t2i.cli import parser
    from t2i.cli.common import speed_config

    args = parser().parse_args(["generate", "a red apple", *flags])
    assert speed_config(args).bf16 is bf16
