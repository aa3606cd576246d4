"""Deferred patch masking for the transformer backbone (MicroDiT): the hooks drop the patches after the mixer
blocks and put them back before the output layer, the loss counts the kept patches only, REPA compares the kept
tokens with the target at their positions, and a masked run trains, resumes bitwise and samples every patch."""

import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import t2i
from t2i.diffusion import repa
from t2i.diffusion.loss import squared_error
from t2i.diffusion.transformer import (TRANSFORMER_PRESETS, build_transformer, kept_patches, patch_loss_mask,
                                       patch_masking)
from t2i.diffusion.unet import GeneratorConfig, check_objective
from t2i.latent.compose import compose
from t2i.latent.train import GeneratorTrainConfig, train_generator
from t2i.text import TextEncoderConfig
from t2i.training.trainer import TrainConfig

WEIGHTS = "diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    cfg = TRANSFORMER_PRESETS["tiny"]()  # 2 blocks
    return build_transformer(cfg, sample_size=8, latent_channels=4, cross_attention_dim=12).eval()  # 16 patches


def _run(net, x, keep=None, mixer=0):
    text, t = torch.randn(x.shape[0], 5, 12, generator=torch.Generator().manual_seed(1)), torch.tensor([10, 500])
    with torch.no_grad():
        if keep is None:
            return net(x, timestep=t[: x.shape[0]], encoder_hidden_states=text).sample
        with patch_masking(net, keep, mixer):
            return net(x, timestep=t[: x.shape[0]], encoder_hidden_states=text).sample


def test_keeping_every_patch_is_the_plain_forward_and_the_hooks_are_gone_after(net):
    x = torch.randn(2, 4, 8, 8)
    everything = torch.arange(16).repeat(2, 1)
    plain = _run(net, x)
    assert torch.allclose(_run(net, x, everything, mixer=1), plain, atol=1e-6)
    assert torch.equal(_run(net, x), plain)  # no hook left behind
    assert not net.norm_out._forward_pre_hooks and not any(b._forward_pre_hooks for b in net.transformer_blocks)


def test_dropped_patches_reach_the_kept_ones_only_through_the_mixer(net):
    x = torch.randn(2, 4, 8, 8)
    keep = kept_patches(net, 2, 0.5, torch.Generator().manual_seed(0))
    mask = patch_loss_mask(net, keep).bool().expand_as(x)
    y = x.clone()
    y[~mask] = torch.randn(int((~mask).sum()))  # other content in every dropped patch
    # No mixer: a kept patch's output depends on nothing dropped
    a, b = _run(net, x, keep, mixer=0), _run(net, y, keep, mixer=0)
    assert torch.allclose(a[mask], b[mask], atol=1e-6)
    assert not torch.allclose(a[mask], _run(net, x)[mask], atol=1e-3)  # yet it is not the unmasked forward
    # One mixer block sees every patch first, so what was dropped still shapes the kept outputs
    a, b = _run(net, x, keep, mixer=1), _run(net, y, keep, mixer=1)
    assert not torch.allclose(a[mask], b[mask], atol=1e-3)


def test_kept_patches_are_drawn_per_sample_reproducibly_and_the_mask_covers_them(net):
    keep = kept_patches(net, 4, 0.75, torch.Generator().manual_seed(3))
    assert keep.shape == (4, 4)  # 16 patches, a quarter kept
    assert all(torch.equal(row, row.unique()) for row in keep)  # ascending, no repeats
    assert len({tuple(row.tolist()) for row in keep}) > 1  # each sample its own draw
    assert torch.equal(keep, kept_patches(net, 4, 0.75, torch.Generator().manual_seed(3)))
    mask = patch_loss_mask(net, keep)  # (B, 1, 8, 8), 2×2 latent pixels per patch
    assert mask.shape == (4, 1, 8, 8) and mask.flatten(1).sum(1).tolist() == [16.0] * 4
    side = mask[0, 0].reshape(4, 2, 4, 2).amax(dim=(1, 3)).flatten()  # per patch
    assert side.nonzero().flatten().tolist() == keep[0].tolist()
    assert kept_patches(net, 1, 0.99, torch.Generator()).shape == (1, 1)  # never none


def test_the_masked_error_is_the_mean_over_the_kept_positions():
    pred, target = torch.randn(2, 4, 4, 4), torch.randn(2, 4, 4, 4)
    mask = torch.zeros(2, 1, 4, 4)
    mask[0, :, :2, :2], mask[1, :, 2:, :] = 1, 1
    err = squared_error(pred, target, mask)
    assert torch.allclose(err[0], (pred[0, :, :2, :2] - target[0, :, :2, :2]).pow(2).mean())
    assert torch.allclose(err[1], (pred[1, :, 2:, :] - target[1, :, 2:, :]).pow(2).mean())
    assert torch.allclose(squared_error(pred, target, torch.ones(2, 1, 4, 4)), squared_error(pred, target))


def test_repa_on_kept_tokens_compares_them_with_the_target_where_they_sit():
    torch.manual_seed(0)
    projector, target = repa.make_projector(8, 6, hidden=16), torch.randn(2, 6, 4, 4)
    tokens = torch.randn(2, 16, 8)  # a transformer layer's tokens on a 4×4 grid
    keep = torch.tensor([[0, 5, 6, 15], [1, 2, 3, 4]])
    kept_tokens = tokens.gather(1, keep[..., None].expand(-1, -1, 8))
    masked = repa.alignment_loss(projector, kept_tokens, target, keep)
    by_hand = [torch.nn.functional.cosine_similarity(
        projector(tokens[i, keep[i]].T[..., None])[..., 0], target[i].flatten(1)[:, keep[i]], dim=0) for i in range(2)]
    assert torch.allclose(masked, 1 - torch.cat(by_hand).mean(), atol=1e-6)
    assert torch.allclose(repa.alignment_loss(projector, tokens, target, torch.arange(16).repeat(2, 1)),
                          repa.alignment_loss(projector, tokens, target), atol=1e-6)


def test_masking_is_refused_where_it_does_not_apply():
    with pytest.raises(ValueError, match="the U-Net backbone has none"):
        check_objective(GeneratorConfig(patch_mask_ratio=0.5))
    with pytest.raises(ValueError, match=r"patch_mask_ratio 1.0 must be in \[0, 1\)"):
        check_objective(GeneratorConfig(backbone="transformer", patch_mask_ratio=1.0))
    with pytest.raises(ValueError, match=r"patch_mixer_layers 5 must be in \[0, 5\)"):
        check_objective(GeneratorConfig(backbone="transformer", patch_mask_ratio=0.5, patch_mixer_layers=5))
    check_objective(GeneratorConfig(patch_mixer_layers=9))  # no masking: the mixer is not used


def _config(repa_weight=0.5, **train):
    model = TRANSFORMER_PRESETS["tiny"]()
    model.patch_mask_ratio, model.patch_mixer_layers = 0.5, 0  # REPA's block (1 of 2) sees the kept tokens
    return GeneratorTrainConfig(
        model=model, text=TextEncoderConfig(max_length=16), repa_weight=repa_weight,
        train=TrainConfig(**{"steps": 6, "batch_size": 8, "lr": 1e-3, "warmup_steps": 2, "ema_decay": 0.99,
                             "log_every": 2, "checkpoint_every": 2, **train}))


def test_a_masked_run_with_repa_resumes_bitwise_saves_a_plain_transformer_and_samples(demo_run, tmp_path):
    out, common = demo_run[0], dict(cache_dir=tmp_path / "cache")
    whole = train_generator(out / "data", out / "autoencoder", tmp_path / "whole", _config(), **common)
    train_generator(out / "data", out / "autoencoder", tmp_path / "part", _config(stop_at=3), **common)
    resumed = train_generator(out / "data", out / "autoencoder", tmp_path / "part", _config(), resume=True, **common)
    a, b = load_file(tmp_path / "whole" / WEIGHTS), load_file(tmp_path / "part" / WEIGHTS)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["losses"] == whole["losses"] and not math.isnan(whole["metrics"]["final_loss"])
    assert not any(repa.PROJECTOR in k for k in a)
    unmasked = _config()
    unmasked.model.patch_mask_ratio = 0.0
    plain = train_generator(out / "data", out / "autoencoder", tmp_path / "plain", unmasked, **common)
    assert plain["losses"] != whole["losses"]
    pipe = t2i.load(compose(tmp_path / "whole", tmp_path / "pipe"))
    images = pipe(["a red circle", "a blue square"], seed=[0, 1], steps=3, guidance=2.0)
    assert [im.size for im in images] == [(16, 16)] * 2
    assert np.asarray(images[0]).std() > 0


def test_an_unmasked_phase_resumes_a_masked_run(demo_run, tmp_path):
    """MicroDiT's closing unmasked phase: the same run resumed with the masking off, and more steps."""
    out, common = demo_run[0], dict(cache_dir=tmp_path / "cache")
    masked = train_generator(out / "data", out / "autoencoder", tmp_path / "gen", _config(repa_weight=0, steps=4),
                             **common)
    unmasked = _config(repa_weight=0, steps=8)
    unmasked.model.patch_mask_ratio = 0.0
    after = train_generator(out / "data", out / "autoencoder", tmp_path / "gen", unmasked, resume=True, **common)
    assert after["losses"][:2] == masked["losses"] and len(after["losses"]) == 4
    assert after["config"]["model"]["patch_mask_ratio"] == 0.0
