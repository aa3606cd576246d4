"""REPA (t2i.diffusion.repa): the alignment loss, the layer it reads, the targets it caches, and a generator trained
with it: saved without its projector (diffusers loads it), resumed bitwise, aligned to a CLIP's patch tokens."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from t2i.diffusion import repa
from t2i.diffusion.transformer import TRANSFORMER_PRESETS, build_transformer
from t2i.diffusion.unet import GeneratorConfig, build_unet
from t2i.latent.train import GeneratorTrainConfig, train_generator
from t2i.text import TextEncoderConfig
from t2i.training.trainer import TrainConfig

WEIGHTS = "diffusion_pytorch_model.safetensors"


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def identity(channels: int) -> nn.Module:
    conv = nn.Conv2d(channels, channels, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(channels)[:, :, None, None])
    return conv


def test_alignment_loss_is_one_minus_the_cosine_at_each_position():
    target = randn(2, 3, 4, 4)
    proj = identity(3)
    assert repa.alignment_loss(proj, 2.5 * target, target).item() == pytest.approx(0, abs=1e-6)
    assert repa.alignment_loss(proj, -target, target).item() == pytest.approx(2, abs=1e-6)
    # half the positions aligned, half opposed: the mean of 0 and 2
    mixed = target.clone()
    mixed[..., :2] *= -1
    assert repa.alignment_loss(proj, mixed, target).item() == pytest.approx(1, abs=1e-6)
    # a transformer's (B, N, C) tokens, row by row, are read as the same grid
    tokens = (2 * target).flatten(2).transpose(1, 2)
    assert repa.alignment_loss(proj, tokens, target).item() == pytest.approx(0, abs=1e-6)


def test_tokens_to_grid_keeps_each_token_at_its_place_and_refuses_other_counts():
    grid = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    assert torch.equal(repa.tokens_to_grid(grid.flatten(2).transpose(1, 2)), grid)
    with pytest.raises(ValueError, match="5 tokens are not a square grid"):
        repa.tokens_to_grid(torch.zeros(1, 5, 3))


def test_the_aligned_layer_is_the_unets_middle_block_or_a_third_up_the_transformer():
    size, text = 8, dict(timestep=torch.zeros(1), encoder_hidden_states=torch.zeros(1, 5, 16))
    unet = build_unet(GeneratorConfig(block_out_channels=(16, 32), norm_num_groups=8), sample_size=size,
                      latent_channels=4, cross_attention_dim=16)
    assert repa.aligned_layer(unet) is unet.mid_block
    assert repa.layer_shape(unet, torch.zeros(1, 4, size, size), **text) == (32, size // 2)
    cfg = TRANSFORMER_PRESETS["tiny"]()
    transformer = build_transformer(cfg, sample_size=size, latent_channels=4, cross_attention_dim=16)
    blocks = transformer.transformer_blocks
    assert len(blocks) == 2 and repa.aligned_layer(transformer) is blocks[0]
    width = cfg.transformer_heads * cfg.transformer_head_dim
    assert repa.layer_shape(transformer, torch.zeros(1, 4, size, size), **text) == (width, size // cfg.patch_size)
    with pytest.raises(ValueError, match="no middle block or transformer blocks on Linear"):
        repa.aligned_layer(nn.Linear(2, 2))


def test_the_autoencoder_target_is_its_encoder_before_the_latent_projection(demo_run):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(demo_run[0] / "autoencoder").eval()
    size = json.loads((demo_run[0] / "autoencoder" / "t2i_component.json").read_text())["image_size"]
    x = randn(2, 3, size, size).clamp(-1, 1)
    with torch.no_grad():
        features = repa.FrozenFeatures(repa.AUTOENCODER, vae)(x)
        assert torch.allclose(vae.encoder.conv_out(features), vae.encoder(x), atol=1e-5)
    assert features.shape[1] == vae.config.block_out_channels[-1]


def repa_config(**train) -> GeneratorTrainConfig:
    return GeneratorTrainConfig(
        model=GeneratorConfig(block_out_channels=(16, 32), norm_num_groups=8),
        text=TextEncoderConfig(max_length=16),
        train=TrainConfig(**{"steps": 6, "batch_size": 8, "lr": 1e-3, "warmup_steps": 2, "ema_decay": 0.99,
                             "log_every": 2, "checkpoint_every": 2, **train}),
        repa_weight=0.5)


def test_a_repa_run_saves_a_plain_unet_resumes_bitwise_and_trains_differently(demo_run, tmp_path):
    from diffusers import UNet2DConditionModel

    out, common = demo_run[0], dict(cache_dir=tmp_path / "cache")
    whole = train_generator(out / "data", out / "autoencoder", tmp_path / "whole", repa_config(), **common)
    train_generator(out / "data", out / "autoencoder", tmp_path / "part", repa_config(stop_at=3), **common)
    checkpoint = sorted((tmp_path / "part" / "checkpoints").iterdir())[-1]
    assert any(repa.PROJECTOR in k for k in load_file(next(checkpoint.glob("model*.safetensors"))))
    off = repa_config()
    off.repa_weight = 0.0
    with pytest.raises(ValueError, match="was written with REPA on; resume it with --repa-weight > 0"):
        train_generator(out / "data", out / "autoencoder", tmp_path / "part", off, resume=True, **common)
    resumed = train_generator(out / "data", out / "autoencoder", tmp_path / "part", repa_config(), resume=True,
                              **common)
    a, b = load_file(tmp_path / "whole" / WEIGHTS), load_file(tmp_path / "part" / WEIGHTS)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["losses"] == whole["losses"] and not math.isnan(whole["metrics"]["final_loss"])
    # The projector is not saved: the same keys as a run without REPA, and diffusers loads the folder as is.
    plain = train_generator(out / "data", out / "autoencoder", tmp_path / "plain", off, **common)
    assert a.keys() == load_file(tmp_path / "plain" / WEIGHTS).keys()
    assert not any(repa.PROJECTOR in k for k in a)
    UNet2DConditionModel.from_pretrained(tmp_path / "whole")
    assert plain["losses"] != whole["losses"]  # the alignment term is in the loss
    assert len(list((tmp_path / "cache").glob("repa-*/0*.safetensors"))) == 1


@pytest.fixture(scope="module")
def clip_folder(demo_run, tmp_path_factory):
    """An untrained tiny CLIP at the demo's image size: enough to read patch tokens from."""
    from transformers import AutoTokenizer

    from t2i.evaluation.clip import CLIP_PRESETS, build_clip
    from t2i.text import source_folder

    size = json.loads((demo_run[0] / "autoencoder" / "t2i_component.json").read_text())["image_size"]
    folder = tmp_path_factory.mktemp("clip")
    build_clip(CLIP_PRESETS["tiny"](size), AutoTokenizer.from_pretrained(source_folder("minilm"))).save_pretrained(folder)
    return folder, size


def test_a_clip_target_is_its_vision_towers_patch_tokens_on_a_grid(demo_run, clip_folder, tmp_path):
    from diffusers import AutoencoderKL
    from transformers import CLIPModel

    folder, size = clip_folder
    vae = AutoencoderKL.from_pretrained(demo_run[0] / "autoencoder").eval()
    features = repa.FrozenFeatures(str(folder), vae)
    x = randn(2, 3, size, size).clamp(-1, 1)
    grid = features(x)
    vision = CLIPModel.from_pretrained(folder).vision_model.eval()
    assert grid.shape == (2, vision.config.hidden_size, 4, 4)  # the tiny preset: 4×4 patches
    # the first token after the class token is the top-left patch
    pixels = ((x + 1) / 2 - features.mean) / features.std
    with torch.no_grad():
        first = vision(pixel_values=pixels).last_hidden_state[:, 1]
    assert torch.allclose(grid[:, :, 0, 0], first, atol=1e-5)
    cfg = repa_config(steps=2, checkpoint_every=0)
    cfg.repa_target = str(folder)
    info = train_generator(demo_run[0] / "data", demo_run[0] / "autoencoder", tmp_path / "gen", cfg)
    assert info["config"]["repa_target"] == str(folder) and not math.isnan(info["metrics"]["final_loss"])
    with pytest.raises(ValueError, match="neither 'autoencoder' nor a CLIP model folder"):
        repa.FrozenFeatures(str(tmp_path / "nothing"), vae)


def test_cli_repa_flags_parse_and_a_negative_weight_is_refused(capsys):
    from t2i.cli import parser

    base = ["train", "generator", "--data", "d", "--autoencoder", "a", "--out", "o"]
    args = parser().parse_args(base + ["--repa-weight", "0.5", "--repa-target", "clip_dir"])
    assert (args.repa_weight, args.repa_target) == (0.5, "clip_dir")
    assert parser().parse_args(base + ["--repa-weight", "0"]).repa_weight == 0.0
    with pytest.raises(SystemExit):
        parser().parse_args(base + ["--repa-weight", "-1"])
    assert "must be 0 or more, got -1.0" in capsys.readouterr().err
