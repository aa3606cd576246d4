"""The composed pipeline: seeds, save/load, streaming, diffusers parity, composition checks."""

import json
import shutil

import numpy as np
import pytest
import torch

import t2i
from t2i.autoencoder import AutoencoderConfig, AutoencoderTrainConfig, train_autoencoder
from t2i.pipeline import CompositionError
from t2i.pipeline.speed import SpeedConfig
from t2i.latent.compose import compose
from t2i.training.trainer import TrainConfig


def _arr(images):
    return np.stack([np.asarray(i, dtype=np.int16) for i in images])


def test_same_seed_same_image_at_any_batch_position(pipe):
    alone = pipe("a blue square", seed=[7], steps=5, guidance=3.0)
    batch = pipe(["a red circle", "a green diamond", "a blue square"], seed=[1, 2, 7], steps=5, guidance=3.0)
    # Batched matmuls may differ in the last float bits; after uint8 rounding at most one level.
    assert np.abs(_arr(alone) - _arr(batch[2:])).max() <= 1
    assert np.abs(_arr(batch[:1]) - _arr(batch[2:])).max() > 10  # and the others really are different


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "dpmpp_2m", "euler"])
def test_every_sampler_is_reproducible(pipe, sampler):
    a = pipe("a red circle", num_images=2, seed=3, steps=4, sampler=sampler)
    b = pipe("a red circle", num_images=2, seed=3, steps=4, sampler=sampler)
    assert np.array_equal(_arr(a), _arr(b))
    assert a[0].size == (pipe.image_size, pipe.image_size)
    assert "Seed: 3" in a[0].info["parameters"] and "Seed: 4" in a[1].info["parameters"]


def test_a_negative_prompt_replaces_the_unconditional_input(pipe):
    """Bitwise the guided run built here from the public pieces, with the negative prompt's embedding where the
    empty prompt's would be; and not the run with the empty prompt's."""
    from t2i.sampling import Denoiser, get_sampler, guided, per_image_randn, spaced_timesteps, unet_network

    prompt, negative, seed, steps, scale = "a red circle", "a blue square", 0, 4, 4.0

    @torch.inference_mode()
    def guided_run(unconditional: str):
        cond, uncond = pipe.encode_prompts([prompt]), pipe.encode_prompts([unconditional])
        net = unet_network(pipe.unet, reuse_text_kv=pipe.speed.reuse_text_kv)
        denoise = guided(Denoiser(net, pipe.alphas_cumprod, pipe.prediction_type), cond, uncond, scale)
        generators = [torch.Generator().manual_seed(seed)]
        side = pipe.image_size // pipe.vae_factor
        x = per_image_randn((pipe.unet.config.in_channels, side, side), generators)
        timesteps = spaced_timesteps(pipe.schedule.num_train_timesteps, steps, pipe.timestep_spacing)
        return _arr(pipe.decode(get_sampler("ddim")(denoise, x, timesteps, pipe.alphas_cumprod, generators=generators)))

    ours = _arr(pipe(prompt, negative_prompt=negative, seed=seed, steps=steps, guidance=scale, sampler="ddim"))
    assert np.array_equal(ours, guided_run(negative))
    plain = _arr(pipe(prompt, seed=seed, steps=steps, guidance=scale, sampler="ddim"))
    assert np.array_equal(plain, guided_run(""))
    assert np.abs(ours - plain).max() > 0


def test_save_load_gives_identical_images(pipeline_dir, pipe, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(pipeline_dir, copy)
    again = t2i.load(copy)
    a = pipe(["a red circle", "a small blue square above a large green circle"], seed=11, steps=6)
    b = again(["a red circle", "a small blue square above a large green circle"], seed=11, steps=6)
    assert np.array_equal(_arr(a), _arr(b))


def test_stream_yields_a_preview_per_step_then_the_result(pipeline_dir):
    # Previews through the real decoder, so the last one is the result (test_speed.py covers the preview decoder).
    pipe = t2i.load(pipeline_dir, speed=SpeedConfig(fast_previews=False))
    events = list(pipe.stream("a yellow triangle", seed=5, steps=6, num_images=2))
    previews, final = events[:-1], events[-1]
    assert [e.step for e in previews] == [1, 2, 3, 4, 5, 6] and all(not e.final for e in previews)
    assert final.final and len(final.images) == 2
    direct = pipe("a yellow triangle", seed=5, steps=6, num_images=2)
    assert np.array_equal(_arr(final.images), _arr(direct))
    # The last preview decodes the last step's prediction of the clean latent, which is the result.
    assert np.abs(_arr(previews[-1].images) - _arr(direct)).max() <= 1
    assert np.abs(_arr(previews[0].images) - _arr(direct)).max() > 0  # the first one is still rough


def test_stream_stopped_early_cancels(pipe):
    """Closing the stream after the first preview stops the run at its next step. The worker is held inside
    step 2's U-Net call until the stream is closed, so however fast or slow the machine, a working cancel
    means exactly 2 U-Net calls (ddim: one per step, guidance batched), a broken one 1000."""
    import threading

    calls, closed = [], threading.Event()

    def count_and_hold(module, args):
        calls.append(1)
        if len(calls) == 2:
            closed.wait(timeout=60)

    hook = pipe.unet.register_forward_pre_hook(count_and_hold)
    try:
        stream = pipe.stream("a red circle", seed=0, steps=1000, sampler="ddim")
        first = next(stream)
        stream.close()
        closed.set()
        for worker in [t for t in threading.enumerate() if t.name == "t2i-stream"]:
            worker.join(timeout=120)
            assert not worker.is_alive()
    finally:
        closed.set()
        hook.remove()
    assert first.step == 1 and first.total == 1000
    assert len(calls) == 2


def test_bad_settings_are_refused_with_a_reason(pipe):
    with pytest.raises(ValueError, match="steps must be at least 1"):
        pipe("a red circle", steps=0)
    with pytest.raises(ValueError, match="height 30 is not a positive multiple of 8"):
        pipe("a red circle", height=30)
    with pytest.raises(ValueError, match="unknown sampler 'heun'"):
        pipe("a red circle", sampler="heun")
    with pytest.raises(ValueError, match="2 seeds for 1 images"):
        pipe("a red circle", seed=[1, 2])


def test_other_sizes_than_training_work(pipe):
    (img,) = pipe("a red circle", seed=0, steps=3, height=16, width=32)
    assert img.size == (32, 16)


def test_diffusers_runs_the_folder_like_t2i(pipeline_dir, pipe):
    """diffusers' StableDiffusionPipeline on the same folder, seeds and steps gives the same images."""
    from diffusers import StableDiffusionPipeline

    from t2i.sampling import per_image_randn

    sd = StableDiffusionPipeline.from_pretrained(pipeline_dir, safety_checker=None)
    from diffusers import DDIMScheduler

    assert type(sd.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert sd.scheduler.config.prediction_type == "v_prediction"
    assert sd.scheduler.config.timestep_spacing == "trailing"
    assert DDIMScheduler.from_config(sd.scheduler.config).config.clip_sample is False  # latents are not in [-1, 1]
    prompts, seeds = ["a red circle", "a blue square"], [0, 1]
    ours = pipe(prompts, seed=seeds, steps=8, guidance=3.0, sampler="dpmpp_2m")
    c = pipe.unet.config.in_channels
    h = pipe.image_size // pipe.vae_factor
    latents = per_image_randn((c, h, h), [torch.Generator().manual_seed(s) for s in seeds])
    theirs = sd(prompts, num_inference_steps=8, guidance_scale=3.0, latents=latents, output_type="pil").images
    assert np.abs(_arr(ours) - _arr(theirs)).max() <= 2


# -- composition ----------------------------------------------------------------------------------


def test_a_folder_that_names_the_installed_minilm_works_like_a_full_one(demo_run, tmp_path):
    """compose(copy_text_encoder=False) leaves MiniLM (87 MB) out; t2i.load takes the installed package's after
    checking its digest, and diffusers runs the folder when given the encoder: same images as the full folder."""
    from diffusers import StableDiffusionPipeline

    from t2i.demo import DEMO_PRESETS
    from t2i.latent.train import train_generator
    from t2i.sampling import per_image_randn
    from t2i.text import MINILM, load_text_encoder

    out, _ = demo_run
    # The demo's own generator reads MiniLM cut to 3 layers; this one, trained the quick way, the bundled MiniLM.
    cfg = DEMO_PRESETS["quick"](out).generator
    assert cfg.text.source == MINILM
    train_generator(out / "data", out / "autoencoder", tmp_path / "generator", cfg)
    slim = compose(tmp_path / "generator", tmp_path / "slim", copy_text_encoder=False)
    assert not (slim / "text_encoder").exists() and not (slim / "tokenizer").exists()
    assert sum(f.stat().st_size for f in slim.rglob("*") if f.is_file()) < 5e6
    prompts, seeds = ["a red circle", "a blue square"], [0, 1]
    full = t2i.load(compose(tmp_path / "generator", tmp_path / "full"))(prompts, seed=seeds, steps=6, guidance=3.0)
    assert np.array_equal(_arr(t2i.load(slim)(prompts, seed=seeds, steps=6, guidance=3.0)), _arr(full))
    info = json.loads((slim / "t2i.json").read_text())["components"]["text_encoder"]
    encoder = load_text_encoder("minilm", max_length=info["max_length"])
    sd = StableDiffusionPipeline.from_pretrained(slim, text_encoder=encoder.model, tokenizer=encoder.tokenizer,
                                                 safety_checker=None)
    latents = per_image_randn((4, 4, 4), [torch.Generator().manual_seed(s) for s in seeds])
    theirs = sd(prompts, num_inference_steps=6, guidance_scale=3.0, latents=latents, output_type="pil").images
    assert np.abs(_arr(full) - _arr(theirs)).max() <= 2
    # Other weights than those trained with are refused, and only MiniLM can be left out.
    t2i_json = json.loads((slim / "t2i.json").read_text())
    t2i_json["components"]["text_encoder"]["weights_digest"] = "0" * 16
    (slim / "t2i.json").write_text(json.dumps(t2i_json))
    with pytest.raises(ValueError, match="trained with MiniLM weights 0000000000000000, but the installed"):
        t2i.load(slim)
    with pytest.raises(CompositionError, match="only the bundled MiniLM can be left out"):
        compose(out / "generator", tmp_path / "x", text_encoder=out / "pipeline" / "text_encoder",
                copy_text_encoder=False)


def test_compose_refuses_parts_that_do_not_fit(demo_run, tmp_path):
    out, _ = demo_run
    other = tmp_path / "ae3"
    cfg = AutoencoderTrainConfig(
        model=AutoencoderConfig(image_size=16, block_out_channels=(16, 32), latent_channels=3, norm_num_groups=8),
        train=TrainConfig(steps=2, batch_size=8, warmup_steps=1), held_out=8)
    train_autoencoder(out / "data", other, cfg)
    with pytest.raises(CompositionError) as e:
        compose(out / "generator", tmp_path / "pipe", autoencoder_dir=other)
    message = str(e.value)
    assert "4-channel latents, but the autoencoder's latents have 3 channels" in message
    assert "trained on latents downsampled 4×, but this autoencoder downsamples 2×" in message
    assert "not the one the generator was trained with" in message
    assert not (tmp_path / "pipe").exists()


def test_compose_refuses_a_text_encoder_of_another_width(demo_run, tmp_path):
    from t2i.text import SCRATCH, TextEncoderConfig, scratch_text_encoder

    out, _ = demo_run
    narrow = tmp_path / "te"
    scratch_text_encoder(TextEncoderConfig(source=SCRATCH, scratch_hidden_size=64)).save_pretrained(narrow)
    with pytest.raises(CompositionError, match="cross-attends over width 384, but the text encoder outputs width 64"):
        compose(out / "generator", tmp_path / "pipe", text_encoder=narrow)


def test_compose_refuses_an_autoencoder_without_a_measured_scale(demo_run, tmp_path):
    out, _ = demo_run
    ae = tmp_path / "ae"
    shutil.copytree(out / "autoencoder", ae)
    config = json.loads((ae / "config.json").read_text())
    config["scaling_factor"] = 0.5  # a constant copied from elsewhere
    (ae / "config.json").write_text(json.dumps(config))
    with pytest.raises(CompositionError, match="config has latent scaling factor 0.5, but .* was measured"):
        compose(out / "generator", tmp_path / "pipe", autoencoder_dir=ae)
    info = json.loads((ae / "t2i_component.json").read_text())
    del info["latent_scaling_factor"]
    (ae / "t2i_component.json").write_text(json.dumps(info))
    with pytest.raises(CompositionError, match="no latent scaling factor measured from data"):
        compose(out / "generator", tmp_path / "pipe", autoencoder_dir=ae)


def test_pipeline_folder_describes_itself(pipeline_dir):
    index = json.loads((pipeline_dir / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    info = json.loads((pipeline_dir / "t2i.json").read_text())
    assert info["variant"] == "latent"
    assert info["components"]["generator"]["prediction_type"] == "v_prediction"
    assert json.loads((pipeline_dir / "text_encoder" / "config.json").read_text())["use_attention_mask"] is True


def test_the_demo_composes_minilm_cut_to_its_first_three_layers(demo_run):
    out, summary = demo_run
    config = json.loads((out / "pipeline" / "text_encoder" / "config.json").read_text())
    assert summary["text_encoder"]["minilm_layers"] == 3
    assert config["num_hidden_layers"] == 3
