"""The cascade variant: upsampler quality, noise-conditioning augmentation, dynamic thresholding, seeds,
previews, composition checks and the CLI, on tiny real components (8×8 base, 8→16 upsampler)."""

import json

import numpy as np
import pytest
import torch

import t2i
from t2i.cascade.compose import compose_cascade
from t2i.cascade.model import UPSAMPLER_PRESETS, is_text_conditioned, upsampler_network
from t2i.cascade.train import BASE_PRESETS, BaseTrainConfig, UpsamplerTrainConfig, base_loss, flippable_rows, \
    held_out_psnr, train_base, train_upsampler
from t2i.cli import main
from t2i.data import ShapesConfig, load_tensors, scan_folder, write_shapes
from t2i.pipeline import CompositionError
from t2i.sampling import dynamic_thresholding
from t2i.text import TextEncoderConfig
from t2i.training.batches import sample_rand
from t2i.training.trainer import TrainConfig

HELD_OUT = 32


def _arr(images):
    return np.stack([np.asarray(i, dtype=np.int16) for i in images])


def _upsampler_cfg(low=8, size=16, steps=200, held_out=HELD_OUT):
    # Measured: 200 steps at lr 5e-3 beat bicubic by ~3 dB on this data (120 steps: ~1 dB).
    return UpsamplerTrainConfig(model=UPSAMPLER_PRESETS["tiny"](low, size),
                                train=TrainConfig(steps=steps, batch_size=16, lr=5e-3, warmup_steps=10, log_every=20),
                                held_out=held_out, eval_steps=10)


@pytest.fixture(scope="module")
def shapes16(tmp_path_factory):
    return write_shapes(tmp_path_factory.mktemp("shapes16") / "data", ShapesConfig(n=320, size=16, seed=0))


@pytest.fixture(scope="module")
def upsampler(shapes16, tmp_path_factory):
    out = tmp_path_factory.mktemp("up")
    return out, train_upsampler(shapes16, out, _upsampler_cfg())


@pytest.fixture(scope="module")
def base(shapes16, tmp_path_factory):
    out = tmp_path_factory.mktemp("base")
    cfg = BaseTrainConfig(image_size=8, model=BASE_PRESETS["tiny"](), text=TextEncoderConfig(max_length=16),
                          train=TrainConfig(steps=30, batch_size=16, lr=2e-3, warmup_steps=3, ema_decay=0.9, log_every=5))
    return out, train_base(shapes16, out, cfg)


@pytest.fixture(scope="module")
def cascade_dir(base, upsampler, tmp_path_factory):
    return compose_cascade(base[0], [upsampler[0]], tmp_path_factory.mktemp("cascade") / "pipe",
                           defaults={"steps": 4, "upsampler_steps": 3})


@pytest.fixture(scope="module")
def cascade(cascade_dir):
    return t2i.load(cascade_dir)


# -- the upsampler ---------------------------------------------------------------------------------------


def test_upsampler_beats_bicubic_on_held_out_psnr(upsampler, shapes16):
    from diffusers import UNet2DModel

    out, info = upsampler
    m = info["metrics"]
    assert m["held_out_images"] == HELD_OUT
    assert m["psnr_held_out"] > m["psnr_bicubic_held_out"] + 1.0, m
    # The saved weights are the ones measured, and the held-out images were never trained on.
    records = scan_folder(shapes16)[0][:HELD_OUT]
    low, high = load_tensors(records, 8), load_tensors(records, 16)
    cfg = _upsampler_cfg().model
    ours, bicubic = held_out_psnr(UNet2DModel.from_pretrained(out), cfg, low, high, steps=10)
    assert ours == pytest.approx(m["psnr_held_out"], abs=1e-3) and bicubic == pytest.approx(m["psnr_bicubic_held_out"])


def test_noise_level_is_recorded_and_changes_the_output(base, upsampler, cascade_dir, cascade, tmp_path):
    from diffusers import UNet2DModel

    out, info = upsampler
    assert info["sampling_noise_level"] == info["config"]["model"]["sampling_noise_level"] == 50
    assert info["config"]["model"]["max_noise_level"] == 250
    assert json.loads((cascade_dir / "t2i.json").read_text())["upsamplers"][0]["noise_level"] == 50
    # The network sees the level: same inputs, another level, another output.
    unet = UNet2DModel.from_pretrained(out)
    x_t, cond = torch.randn(2, 2, 3, 16, 16, generator=torch.Generator().manual_seed(0)).unbind(0)
    t = torch.tensor([500, 500])
    with torch.no_grad():
        a = upsampler_network(unet, torch.tensor([0, 0]))(x_t, t, cond)
        b = upsampler_network(unet, torch.tensor([200, 200]))(x_t, t, cond)
    assert (a - b).abs().max() > 1e-3
    # The pipeline uses the recorded level unless told otherwise, and another level changes the images.
    recorded = cascade("a red circle", num_images=2, seed=0)
    assert np.array_equal(_arr(recorded), _arr(cascade("a red circle", num_images=2, seed=0, noise_level=50)))
    other = cascade("a red circle", num_images=2, seed=0, noise_level=400)
    assert np.abs(_arr(recorded) - _arr(other)).max() > 10
    # compose can record another level; the folder then samples with it.
    again = t2i.load(compose_cascade(base[0], [out], tmp_path / "pipe", noise_levels=[400],
                                     defaults={"steps": 4, "upsampler_steps": 3}))
    assert again.stages[0]["noise_level"] == 400
    assert np.array_equal(_arr(again("a red circle", num_images=2, seed=0)), _arr(other))


# -- a text-conditioned upsampler -----------------------------------------------------------------------


def _textures(folder, n=192, size=16):
    """Images whose fine texture only the caption tells: 1-px checks or 1-px stripes of a random colour on white,
    which both shrink to the same flat mixture at half the size (from which the colour can be read back)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True)
    rows = []
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        kind = ("checks", "stripes")[i % 2]
        a, b = rng.integers(0, 256, 3), np.full(3, 255)
        mask = (yy + xx) % 2 if kind == "checks" else yy % 2
        Image.fromarray(np.where(mask[..., None] == 1, a, b).astype(np.uint8)).save(folder / f"images/{i:03d}.png")
        rows.append({"file_name": f"images/{i:03d}.png", "text": kind})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def _text_upsampler_cfg(steps=150, max_length=16, text=True):
    cfg = _upsampler_cfg(steps=steps)
    cfg.train.lr, cfg.train.seed = 5e-3, 0
    if text:
        cfg.model.pooled_text_heads = 8
        cfg.text = TextEncoderConfig(max_length=max_length)
    return cfg


def test_a_text_conditioned_upsampler_draws_what_only_the_caption_tells(tmp_path):
    data = _textures(tmp_path / "textures")
    plain = train_upsampler(data, tmp_path / "plain", _text_upsampler_cfg(text=False))["metrics"]
    told = train_upsampler(data, tmp_path / "told", _text_upsampler_cfg())["metrics"]
    # Without the caption the best guess is the mixture (bicubic's level); with it, the texture itself.
    assert told["psnr_held_out"] > plain["psnr_held_out"] + 3.0, (told, plain)
    assert told["psnr_held_out"] > told["psnr_bicubic_held_out"] + 3.0, told


def test_a_text_conditioned_upsampler_composes_only_with_the_base_s_text_encoder(base, shapes16, tmp_path):
    told = tmp_path / "told"
    info = train_upsampler(shapes16, told, _text_upsampler_cfg(steps=2))
    assert info["text_encoder"]["max_length"] == 16 and info["config"]["model"]["pooled_text_heads"] == 8
    pipe = t2i.load(compose_cascade(base[0], [told], tmp_path / "pipe", defaults={"steps": 2, "upsampler_steps": 2}))
    assert pipe.stages[0]["text_conditioned"] and is_text_conditioned(pipe.upsamplers[0])
    images = pipe(["a red circle", "a blue square"], seed=0)
    assert [im.size for im in images] == [(16, 16), (16, 16)]
    # Guidance of the upsampler against the empty prompt: 1 is none (the default), another scale changes the images.
    assert np.array_equal(_arr(images), _arr(pipe(["a red circle", "a blue square"], seed=0, upsampler_guidance=1)))
    guided = pipe(["a red circle", "a blue square"], seed=0, upsampler_guidance=4)
    assert np.abs(_arr(guided) - _arr(images)).max() > 0
    with pytest.raises(ValueError, match="at least 1"):
        pipe("a red circle", upsampler_guidance=0.5)
    # The upsampler hears the prompt: the same small image, another prompt, another enlargement.
    x_t, cond = torch.randn(2, 2, 3, 16, 16, generator=torch.Generator().manual_seed(0)).unbind(0)
    red, blue = pipe.encode_prompts(["a red circle"] * 2), pipe.encode_prompts(["a blue square"] * 2)
    t, level = torch.tensor([500, 500]), torch.tensor([50, 50])
    with torch.no_grad():
        a = upsampler_network(pipe.upsamplers[0], level, text=red)(x_t, t, cond)
        b = upsampler_network(pipe.upsamplers[0], level, text=blue)(x_t, t, cond)
    assert (a - b).abs().max() > 1e-4
    with pytest.raises(ValueError, match="needs the prompt's embeddings"):
        upsampler_network(pipe.upsamplers[0], level)
    with pytest.raises(ValueError, match="trained without text"):
        upsampler_network(_plain_unet(), level, text=red)
    # A cascade whose upsamplers take no prompt refuses upsampler guidance, stored or asked for.
    with pytest.raises(ValueError, match="needs a text-conditioned upsampler"):
        _plain_cascade(base, shapes16, tmp_path)("a red circle", upsampler_guidance=2)
    with pytest.raises(CompositionError, match="upsampler guidance needs a text-conditioned upsampler"):
        compose_cascade(base[0], [tmp_path / "plain"], tmp_path / "pipe-g", defaults={"upsampler_guidance": 2})
    # Another prompt length than the base's: the pipeline could not hand it the base's embeddings.
    other = tmp_path / "told12"
    train_upsampler(shapes16, other, _text_upsampler_cfg(steps=1, max_length=12))
    with pytest.raises(CompositionError, match=r"trained with text encoder minilm \(12 tokens.*the base with minilm "
                                               r"\(16 tokens"):
        compose_cascade(base[0], [other], tmp_path / "pipe12")
    assert not (tmp_path / "pipe12").exists()


def _plain_cascade(base, data, tmp_path):
    """A cascade of `base` and a one-step upsampler without text (written to tmp_path/plain)."""
    train_upsampler(data, tmp_path / "plain", _upsampler_cfg(steps=1, held_out=0))
    return t2i.load(compose_cascade(base[0], [tmp_path / "plain"], tmp_path / "pipe-plain"))


def _plain_unet():
    from t2i.cascade.model import build_upsampler

    return build_upsampler(UPSAMPLER_PRESETS["tiny"](8, 16))


def test_text_and_its_encoder_come_together(shapes16, tmp_path):
    cfg = _text_upsampler_cfg(steps=1)
    cfg.text = None
    with pytest.raises(ValueError, match="needs a text encoder"):
        train_upsampler(shapes16, tmp_path / "a", cfg)
    cfg = _text_upsampler_cfg(steps=1, text=False)
    cfg.text = TextEncoderConfig(max_length=16)
    with pytest.raises(ValueError, match="without text"):
        train_upsampler(shapes16, tmp_path / "b", cfg)
    cfg = _text_upsampler_cfg(steps=1)
    cfg.text.source = "scratch"
    with pytest.raises(ValueError, match="not one trained from scratch"):
        train_upsampler(shapes16, tmp_path / "c", cfg)
    assert not any((tmp_path / d).exists() for d in "abc")


# -- dynamic thresholding --------------------------------------------------------------------------------


def test_dynamic_thresholding_keeps_predictions_in_range():
    g = torch.Generator().manual_seed(0)
    wild = 3 * torch.randn(2, 3, 8, 8, generator=g)  # far outside [-1, 1]
    tame = 0.9 * torch.rand(1, 3, 8, 8, generator=g) * 2 - 0.9  # inside
    x0 = torch.cat([wild, tame])
    out = dynamic_thresholding(lambda x_t, t: x0, 0.9)(torch.zeros_like(x0), torch.tensor([10]))
    assert out.abs().max() <= 1 + 1e-6
    assert torch.equal(out[2], tame[0])  # already in range: untouched
    s = torch.quantile(wild[0].abs().flatten(), 0.9)
    torch.testing.assert_close(out[0], wild[0].clamp(-s, s) / s)  # Imagen's rule: clip to ±s, divide by s
    assert (out[0].abs() > 0.999).float().mean() == pytest.approx(0.1, abs=0.02)  # the top 10 % saturate
    # Per image: the first image's result does not depend on the others in the batch.
    alone = dynamic_thresholding(lambda x_t, t: wild[:1], 0.9)(torch.zeros_like(wild[:1]), torch.tensor([10]))
    assert torch.equal(alone[0], out[0])
    with pytest.raises(ValueError, match="percentile must be in"):
        dynamic_thresholding(lambda x_t, t: x0, 1.5)


def test_dynamic_thresholding_bounds_every_step_of_a_guided_pixel_sampler(base):
    from diffusers import UNet2DConditionModel

    from t2i.sampling import Denoiser, alphas_cumprod, guided, per_image_randn, sample_ddim, spaced_timesteps, \
        unet_network
    from t2i.text import load_text_encoder

    out, info = base
    unet = UNet2DConditionModel.from_pretrained(out)
    encoder = load_text_encoder("minilm", max_length=16)
    cond, uncond = encoder.encode(["a red circle", "a blue square"])[0], encoder.encode([""])[0]
    ac = alphas_cumprod(BASE_PRESETS["tiny"]().schedule)
    denoise = guided(Denoiser(unet_network(unet), ac, info["prediction_type"]), cond, uncond, 20.0)
    x = per_image_randn((3, 8, 8), [torch.Generator().manual_seed(k) for k in (0, 1)])

    def peaks(d):
        seen = []
        with torch.no_grad():
            sample_ddim(d, x, spaced_timesteps(1000, 6), ac, callback=lambda i, x_t, x0: seen.append(x0.abs().max()))
        return torch.stack(seen)

    assert peaks(denoise).max() > 1.5  # guidance 20 pushes the predictions far out of range ...
    assert peaks(dynamic_thresholding(denoise, 0.995)).max() <= 1 + 1e-5  # ... thresholding keeps them in


# -- the pipeline ----------------------------------------------------------------------------------------


def test_base_trains_and_the_cascade_describes_itself(base, cascade_dir, cascade):
    _, info = base
    assert info["component"] == "base" and info["losses"][-1] < info["losses"][0]
    meta = json.loads((cascade_dir / "t2i.json").read_text())
    assert meta["variant"] == "cascade" and meta["image_size"] == 16
    assert meta["base"]["image_size"] == 8 and meta["upsamplers"][0]["low_size"] == 8
    assert not (cascade_dir / "model_index.json").exists()  # no diffusers pipeline class fits this layout
    assert type(cascade).__name__ == "CascadePipeline" and cascade.image_size == 16


def test_base_and_upsampler_read_the_training_split_only(shapes16, tmp_path):
    """Rows marked held_out stay out of both networks' data (the 64-px model's held-out figures rest on it)."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(shapes16, data)
    rows = [json.loads(line) for line in (data / "metadata.jsonl").read_text().splitlines()]
    (data / "metadata.jsonl").write_text("".join(json.dumps({**r, "split": "held_out" if i % 4 == 0 else "train"})
                                                 + "\n" for i, r in enumerate(rows)))
    train = TrainConfig(steps=2, batch_size=8, lr=1e-3, warmup_steps=1, log_every=1)
    base_info = train_base(data, tmp_path / "base", BaseTrainConfig(
        image_size=8, model=BASE_PRESETS["tiny"](), text=TextEncoderConfig(max_length=16), train=train))
    up_info = train_upsampler(data, tmp_path / "up", UpsamplerTrainConfig(
        model=UPSAMPLER_PRESETS["tiny"](8, 16), train=train, held_out=8, eval_steps=2))
    kept = len(rows) - len(rows[::4])
    for info in (base_info, up_info):
        assert info["data_split"] == "train" and f"kept {kept} of {kept}" in str(info["data_report"])


def test_a_cascade_may_name_the_installed_minilm_instead_of_copying_it(base, upsampler, cascade_dir, cascade, tmp_path):
    named = compose_cascade(base[0], [upsampler[0]], tmp_path / "named", defaults={"steps": 4, "upsampler_steps": 3},
                            copy_text_encoder=False)
    assert not (named / "text_encoder").exists() and (cascade_dir / "text_encoder").is_dir()
    meta = json.loads((named / "t2i.json").read_text())["components"]["text_encoder"]
    assert meta["source"] == "minilm" and meta["copied"] is False and len(meta["weights_digest"]) == 16
    a = cascade("a red circle", num_images=2, seed=0)
    b = t2i.load(named)("a red circle", num_images=2, seed=0)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))


@pytest.mark.parametrize("sampler", ["ddpm", "dpmpp_2m"])
def test_same_seed_same_image_at_any_batch_position(cascade, sampler):
    alone = cascade("a blue square", seed=[7], sampler=sampler)
    batch = cascade(["a red circle", "a green diamond", "a blue square"], seed=[1, 2, 7], sampler=sampler)
    # Batched matmuls may differ in the last float bits; after uint8 rounding at most one level.
    assert np.abs(_arr(alone) - _arr(batch[2:])).max() <= 1
    assert np.abs(_arr(batch[:1]) - _arr(batch[2:])).max() > 10  # the others really are different
    assert alone[0].size == (16, 16) and "Seed: 7" in alone[0].info["parameters"]


def test_previews_show_each_stage_in_turn(cascade):
    events = list(cascade.stream("a yellow triangle", seed=5, num_images=2, steps=3, upsampler_steps=2))
    previews, final = events[:-1], events[-1]
    assert [(e.step, e.total) for e in previews] == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    assert all(img.size == (16, 16) for e in events for img in e.images)
    base_last = _arr(previews[2].images)  # the base's 8×8 prediction, enlarged: constant 2×2 blocks
    assert np.array_equal(base_last, base_last[:, ::2, ::2].repeat(2, axis=1).repeat(2, axis=2))
    direct = cascade("a yellow triangle", seed=5, num_images=2, steps=3, upsampler_steps=2)
    assert final.final and np.array_equal(_arr(final.images), _arr(direct))
    assert np.abs(_arr(previews[-1].images) - _arr(direct)).max() <= 1  # the last step's prediction is the result


def test_bad_cascade_settings_are_refused_with_a_reason(cascade):
    with pytest.raises(ValueError, match=r"height 10 is not a positive multiple of 4 \(upsampling 2 × the U-Nets"):
        cascade("a red circle", height=10)
    with pytest.raises(ValueError, match="2 noise levels for 1 upsamplers"):
        cascade("a red circle", noise_level=[10, 20])
    with pytest.raises(ValueError, match="noise level must be a timestep in 0..999, got 1000"):
        cascade("a red circle", noise_level=1000)
    with pytest.raises(ValueError, match="upsampler steps must be at least 1"):
        cascade("a red circle", upsampler_steps=0)
    (img,) = cascade("a red circle", seed=0, height=16, width=32)
    assert img.size == (32, 16)


# -- composition and the CLI -----------------------------------------------------------------------------


def test_stages_chain_to_a_larger_image(base, upsampler, shapes16, tmp_path):
    second = tmp_path / "up32"
    train_upsampler(shapes16, second, _upsampler_cfg(low=16, size=32, steps=1, held_out=0))
    pipe = t2i.load(compose_cascade(base[0], [upsampler[0], second], tmp_path / "pipe"))
    assert pipe.image_size == 32 and pipe.factors == [2, 2]
    events = list(pipe.stream("a red circle", seed=0, steps=2, upsampler_steps=2))
    assert [e.step for e in events] == [1, 2, 3, 4, 5, 6, 6] and events[-1].total == 6
    assert events[-1].images[0].size == (32, 32) and all(e.images[0].size == (32, 32) for e in events)


def test_mismatched_resolutions_are_refused_naming_both_sizes(base, upsampler, shapes16, tmp_path, capsys):
    small = tmp_path / "up4"
    train_upsampler(shapes16, small, _upsampler_cfg(low=4, size=8, steps=1, held_out=0))
    with pytest.raises(CompositionError) as e:
        compose_cascade(base[0], [small], tmp_path / "pipe")
    assert f"the base draws 8×8 images, but upsampler {small} takes 4×4 images (it was trained 4→8)" in str(e.value)
    up = upsampler[0]
    code = main(["compose", "--base", str(base[0]), "--upsampler", str(up), "--upsampler", str(up),
                 "--out", str(tmp_path / "pipe")])
    err = capsys.readouterr().err
    assert code == 1 and f"upsampler {up} makes 16×16 images, but upsampler {up} takes 8×8 images" in err
    assert "Traceback" not in err and not (tmp_path / "pipe").exists()


def test_cli_trains_composes_and_generates_a_cascade(shapes16, tmp_path):
    base, up, pipe, out = tmp_path / "base", tmp_path / "up", tmp_path / "pipe", tmp_path / "images"
    assert main(["train", "base", "--data", str(shapes16), "--out", str(base), "--size", "8", "--preset", "tiny",
                 "--steps", "3", "--batch-size", "8", "--max-length", "16"]) == 0
    assert main(["train", "upsampler", "--data", str(shapes16), "--out", str(up), "--low-size", "8", "--size", "16",
                 "--preset", "tiny", "--steps", "3", "--batch-size", "8", "--held-out", "0", "--noise-level", "30"]) == 0
    assert main(["compose", "--base", str(base), "--upsampler", str(up), "--out", str(pipe), "--steps", "3",
                 "--upsampler-steps", "2", "--dynamic-threshold", "0.99"]) == 0
    meta = json.loads((pipe / "t2i.json").read_text())
    assert meta["variant"] == "cascade" and meta["upsamplers"][0]["noise_level"] == 30
    assert meta["defaults"]["dynamic_threshold"] == 0.99 and meta["defaults"]["upsampler_steps"] == 2
    assert main(["generate", "a red circle", "--model", str(pipe), "--n", "2", "--seed", "4", "--out", str(out),
                 "--preview", str(tmp_path / "p.gif"), "--noise-level", "60"]) == 0
    from PIL import Image

    img = Image.open(out / "a_red_circle_1.png")
    assert img.size == (16, 16) and "Seed: 5," in img.text["parameters"]
    assert Image.open(tmp_path / "p.gif").n_frames >= 3  # base steps, then the upsampler's


def test_cli_trains_a_text_conditioned_upsampler_and_refuses_a_bad_pooling(base, shapes16, tmp_path, capsys):
    up, pipe = tmp_path / "up", tmp_path / "pipe"
    flags = ["train", "upsampler", "--data", str(shapes16), "--low-size", "8", "--size", "16", "--preset", "tiny",
             "--steps", "2", "--batch-size", "8", "--held-out", "0", "--text-encoder", "minilm", "--max-length", "16"]
    assert main(flags + ["--out", str(up)]) == 0
    assert main(["compose", "--base", str(base[0]), "--upsampler", str(up), "--out", str(pipe),
                 "--upsampler-guidance", "2", "--steps", "2", "--upsampler-steps", "2"]) == 0
    meta = json.loads((pipe / "t2i.json").read_text())
    assert meta["upsamplers"][0]["text_conditioned"] is True and meta["defaults"]["upsampler_guidance"] == 2
    assert main(["generate", "a red circle", "--model", str(pipe), "--n", "1", "--seed", "0",
                 "--upsampler-guidance", "3", "--out", str(tmp_path / "images")]) == 0
    capsys.readouterr()
    assert main(flags + ["--out", str(tmp_path / "bad"), "--pooled-text-heads", "7"]) == 1
    err = capsys.readouterr().err
    assert "pooled_text_heads 7 must divide the text width 384" in err and "Traceback" not in err
    assert not (tmp_path / "bad").exists()  # refused before the captions were encoded: nothing written


def test_cli_trains_a_base_with_pooled_text_and_the_cascade_draws_with_it(upsampler, shapes16, tmp_path, capsys):
    base, pipe = tmp_path / "base", tmp_path / "pipe"
    flags = ["train", "base", "--data", str(shapes16), "--size", "8", "--preset", "tiny", "--steps", "2",
             "--batch-size", "8", "--max-length", "16"]
    assert main(flags + ["--out", str(base), "--pooled-text-heads", "4"]) == 0
    assert json.loads((base / "config.json").read_text())["addition_embed_type"] == "text"
    assert main(["compose", "--base", str(base), "--upsampler", str(upsampler[0]), "--out", str(pipe),
                 "--steps", "2", "--upsampler-steps", "2"]) == 0
    cascade = t2i.load(pipe)
    before = cascade("a red circle", seed=0)[0]
    with torch.no_grad():  # silence the pooled summary: the same call must then draw something else
        for w in cascade.base.add_embedding.parameters():
            w.zero_()
    after = cascade("a red circle", seed=0)[0]
    assert before.size == (16, 16) and np.abs(np.asarray(before, float) - np.asarray(after, float)).mean() > 0
    capsys.readouterr()
    assert main(flags + ["--out", str(tmp_path / "bad"), "--pooled-text-heads", "7"]) == 1
    err = capsys.readouterr().err
    assert "pooled_text_heads 7 does not divide the text width 384" in err and "Traceback" not in err
    assert not (tmp_path / "bad").exists()  # refused before anything was written or encoded


def test_random_flip_mirrors_only_images_whose_captions_allow_it(monkeypatch):
    rows = flippable_rows([["red apple, noto style"], ["left-facing fist"], ["flag: Germany"], ["keycap #"],
                           ["ten o’clock"], ["copyright", "copyright sign"],
                           ["a red circle", "a red circle to the left of a blue square"]])
    assert rows.tolist() == [True, False, False, False, False, True, False]  # any caption that names one: kept

    seen = []  # the clean images the loss is taken on
    monkeypatch.setattr("t2i.cascade.train.diffusion_loss", lambda denoiser, x0, *a, **k: seen.append(x0) or x0.sum())
    x0 = torch.arange(64 * 3 * 2 * 2, dtype=torch.float32).reshape(64, 3, 2, 2)  # no row is its own mirror
    batch = {"pixel_values": x0, "caption_index": torch.zeros(64, dtype=torch.long),
             "flippable": torch.arange(64) % 2 == 0}
    table, uncond, cfg = torch.zeros(1, 4, 8), torch.zeros(1, 4, 8), BASE_PRESETS["tiny"]()
    generators = [torch.Generator().manual_seed(0) for _ in range(3)]
    for p, g in zip((0.0, 0.5, 1.0), generators):
        base_loss(None, cfg, uncond, table, random_flip=p)(None, batch, g)
    off, half, always = ((x != x0).flatten(1).any(1) for x in seen)  # (64,) which rows were changed
    assert not off.any() and always.tolist() == batch["flippable"].tolist()
    assert torch.equal(seen[2][0], x0[0].flip(-1))  # mirrored left to right, nothing else
    assert 0 < int(half.sum()) < 32 and not half[1::2].any()
    reference = torch.Generator().manual_seed(0)
    sample_rand((64,), reference)  # caption dropout's draw: with flips off, the only one (old runs reproduce)
    assert torch.equal(generators[0].get_state(), reference.get_state())


def test_cli_records_a_base_s_random_flip_and_refuses_a_bad_one(shapes16, tmp_path):
    from t2i.cli import parser

    base = tmp_path / "base"
    assert main(["train", "base", "--data", str(shapes16), "--size", "8", "--preset", "tiny", "--steps", "2",
                 "--batch-size", "8", "--max-length", "16", "--out", str(base), "--random-flip", "0.5"]) == 0
    assert json.loads((base / "t2i_component.json").read_text())["config"]["random_flip"] == 0.5
    with pytest.raises(SystemExit):
        parser().parse_args(["train", "base", "--data", "d", "--out", "o", "--random-flip", "1.5"])
    with pytest.raises(ValueError, match="random_flip is a probability"):
        train_base(shapes16, tmp_path / "bad", BaseTrainConfig(random_flip=-0.1))
    assert not (tmp_path / "bad").exists()


def test_cascade_options_are_refused_for_a_latent_pipeline(pipeline_dir, tmp_path, capsys):
    assert main(["generate", "a red circle", "--model", str(pipeline_dir), "--out", str(tmp_path),
                 "--noise-level", "10"]) == 1
    assert "--noise-level do(es) not apply to" in capsys.readouterr().err
    assert main(["compose", "--generator", "x", "--upsampler", "y", "--out", str(tmp_path / "p")]) == 1
    assert "--upsampler belong(s) to the cascade variant: compose with --base" in capsys.readouterr().err


def test_cascade_training_flag_defaults_match_the_configs():
    from t2i.cli import parser

    base = BaseTrainConfig()
    args = parser().parse_args(["train", "base", "--data", "d", "--out", "o"])
    assert (args.steps, args.batch_size, args.lr, args.ema) == (base.train.steps, base.train.batch_size, base.train.lr,
                                                                 base.train.ema_decay)
    assert (args.size, args.prediction, args.min_snr_gamma, args.caption_dropout, args.random_flip) == (
        base.image_size, base.model.prediction_type, base.model.min_snr_gamma, base.model.caption_dropout,
        base.random_flip)
    up = UpsamplerTrainConfig()
    args = parser().parse_args(["train", "upsampler", "--data", "d", "--out", "o"])
    assert (args.steps, args.batch_size, args.lr, args.ema, args.held_out) == (
        up.train.steps, up.train.batch_size, up.train.lr, up.train.ema_decay, up.held_out)
    assert (args.low_size, args.size, args.prediction, args.min_snr_gamma, args.max_noise_level, args.noise_level) == (
        up.model.low_size, up.model.image_size, up.model.prediction_type, up.model.min_snr_gamma,
        up.model.max_noise_level, up.model.sampling_noise_level)
    assert (args.text_encoder, args.caption_dropout) == (up.text, up.model.caption_dropout)  # no text by default
