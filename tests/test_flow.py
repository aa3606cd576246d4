"""Rectified flow (flow matching, SD3's objective): the loss, the flow-ODE samplers against a closed form and
against diffusers, guidance, negative prompts, per-image seeds, exact resume, and a flow generator composed and
sampled end to end (by t2i and by diffusers' StableDiffusionPipeline)."""

import json
import math

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FlowMatchHeunDiscreteScheduler, UNet2DConditionModel

import t2i
from t2i.diffusion.loss import flow_loss
from t2i.diffusion.unet import GeneratorConfig
from t2i.latent.compose import compose
from t2i.latent.train import GeneratorTrainConfig, train_generator
from t2i.pipeline import CompositionError
from t2i.sampling import (
    FlowDenoiser,
    flow_scheduler_config,
    flow_sigmas,
    guided,
    per_image_randn,
    sample_flow_euler,
    sample_flow_heun,
    unet_network,
)
from t2i.text import TextEncoderConfig
from t2i.training.trainer import TrainConfig

B, C, S, L, D = 2, 4, 8, 5, 16  # batch, latent channels, latent size, tokens, embedding width
WEIGHTS = "diffusion_pytorch_model.safetensors"


def randn(*shape, seed, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.fixture(scope="module")
def unet():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = UNet2DConditionModel(
            sample_size=S, in_channels=C, out_channels=C, block_out_channels=(32, 64), layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=D, attention_head_dim=8, norm_num_groups=32)
    return net.eval().requires_grad_(False)


# ---------------------------------------------------------------- the loss


def test_flow_loss_draws_logit_normal_t_then_noise_and_regresses_the_velocity(unet):
    x0, cond = randn(B, C, S, S, seed=1), randn(B, L, D, seed=2)
    den = FlowDenoiser(unet)
    seen = {}

    def predict(x_t, timestep):
        seen["x_t"], seen["timestep"] = x_t, timestep
        return unet(x_t, timestep, encoder_hidden_states=cond).sample

    loss = flow_loss(den, x0, predict, torch.Generator().manual_seed(5))
    # By hand, from the same generator: n ~ N(0, 1) per sample, t = sigmoid(n), then ε.
    g = torch.Generator().manual_seed(5)
    t = torch.sigmoid(torch.randn(B, generator=g))
    eps = torch.randn(x0.shape, generator=g)
    x_t = (1 - t.view(B, 1, 1, 1)) * x0 + t.view(B, 1, 1, 1) * eps
    assert torch.allclose(seen["timestep"], 1000 * t) and torch.allclose(seen["x_t"], x_t)
    v = unet(x_t, 1000 * t, encoder_hidden_states=cond).sample
    assert torch.allclose(loss, (v - (eps - x0)).pow(2).mean(), rtol=1e-5)


def test_flow_loss_shifts_the_logit_normal_by_its_mean():
    x0, seen = randn(B, C, S, S, seed=1), []
    flow_loss(FlowDenoiser(None), x0, lambda x_t, ts: seen.append(ts) or x_t, torch.Generator().manual_seed(5),
              logit_mean=0.5, logit_std=0.6)
    n = torch.randn(B, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(seen[0], 1000 * torch.sigmoid(0.5 + 0.6 * n))


def test_the_true_velocity_has_zero_flow_loss_and_a_wrong_time_scale_does_not():
    """An oracle that knows x0 and reads t from the timestep it is handed: only the convention the denoiser and
    the samplers use (timestep = 1000·t, v = ε − x0) gives zero loss."""
    x0, den = randn(B, C, S, S, seed=3), FlowDenoiser(net=None)

    def oracle(scale):
        return lambda x_t, timestep: (x_t - x0) / (timestep / scale).view(-1, 1, 1, 1)

    assert flow_loss(den, x0, oracle(1000), torch.Generator().manual_seed(0)) < 1e-8
    assert flow_loss(den, x0, oracle(1), torch.Generator().manual_seed(0)) > 1e-2


def test_flow_loss_falls_when_a_tiny_unet_trains():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = UNet2DConditionModel(sample_size=S, in_channels=C, out_channels=C, block_out_channels=(16, 32),
                                   layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                                   up_block_types=("UpBlock2D", "UpBlock2D"), cross_attention_dim=D,
                                   norm_num_groups=8)
    x0, cond, den = randn(8, C, S, S, seed=4) * 0.5 + 1.0, randn(8, L, D, seed=5), FlowDenoiser(net)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(40):
        loss = flow_loss(den, x0, lambda x_t, t: net(x_t, t, encoder_hidden_states=cond).sample, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


def test_flow_objective_refuses_min_snr():
    from t2i.diffusion.unet import build_unet

    with pytest.raises(ValueError, match="min_snr_gamma 5.0 weighs a VP diffusion loss"):
        build_unet(GeneratorConfig(objective="flow"), sample_size=8, latent_channels=4, cross_attention_dim=16)


# ---------------------------------------------------------------- samplers against a closed form


MU, SD = 0.7, 0.3  # data x0 ~ N(MU, SD²) in every coordinate


def gaussian_denoiser(x_t, t):
    """E[x0 | x_t] for x0 ~ N(MU, SD²), x_t = (1−t)·x0 + t·ε: the exact denoiser, so the flow ODE has the
    closed-form solution x(t) = (1−t)·MU + √((1−t)²·SD² + t²)·x_1, taking x_1 to MU + SD·x_1 at t = 0."""
    t = t.to(x_t.dtype).view(-1, *([1] * (x_t.dim() - 1)))
    var = (1 - t) ** 2 * SD**2 + t**2
    return MU + (1 - t) * SD**2 / var * (x_t - (1 - t) * MU)


def test_euler_and_heun_converge_to_the_closed_form_at_their_orders():
    x1 = randn(3, 2, 4, 4, seed=0, dtype=torch.float64)
    exact = MU + SD * x1

    def err(sampler, steps):
        sigmas = torch.linspace(1, 0, steps + 1, dtype=torch.float64)
        return (sampler(gaussian_denoiser, x1, sigmas) - exact).abs().max().item()

    e_euler = [err(sample_flow_euler, n) for n in (20, 40, 80)]
    e_heun = [err(sample_flow_heun, n) for n in (20, 40, 80)]
    # Euler is first order (halving h halves the error), Heun second order (quarters it).
    assert all(1.7 < a / b < 2.3 for a, b in zip(e_euler, e_euler[1:])), e_euler
    assert all(3.4 < a / b < 4.6 for a, b in zip(e_heun, e_heun[1:])), e_heun
    assert e_heun[-1] < 1e-3 and e_heun[-1] < e_euler[-1] / 10, (e_euler, e_heun)


def diffusers_sample(sched, x: torch.Tensor) -> torch.Tensor:
    """x integrated by a diffusers flow scheduler (timesteps already set) with the Gaussian flow's velocity."""
    for t in sched.timesteps:
        sigma = t / 1000
        v = (x - gaussian_denoiser(x, sigma.expand(len(x)))) / sigma
        x = sched.step(v, t, x).prev_sample
    return x


def test_euler_matches_diffusers_flow_match_euler_and_its_grid():
    steps, x = 12, randn(2, 4, 8, 8, seed=1)
    sched = FlowMatchEulerDiscreteScheduler.from_config(flow_scheduler_config())
    sched.set_timesteps(steps)
    assert torch.allclose(sched.sigmas.double(), flow_sigmas(steps), atol=1e-6)
    theirs = diffusers_sample(sched, x)
    ours = sample_flow_euler(gaussian_denoiser, x, flow_sigmas(steps))
    assert (ours - theirs).abs().max() < 1e-5


def test_heun_matches_diffusers_flow_match_heun():
    steps, x = 8, randn(2, 4, 8, 8, seed=2)
    sched = FlowMatchHeunDiscreteScheduler.from_config(flow_scheduler_config())
    sched.set_timesteps(steps)
    theirs = diffusers_sample(sched, x)
    ours = sample_flow_heun(gaussian_denoiser, x, flow_sigmas(steps))
    assert (ours - theirs).abs().max() < 1e-5


def test_flow_samplers_call_back_once_per_step_and_refuse_bad_grids():
    seen = []
    out = sample_flow_euler(gaussian_denoiser, randn(1, 1, 2, 2, seed=0), flow_sigmas(5),
                            callback=lambda i, x_t, x0: seen.append((i, x0)))
    assert [i for i, _ in seen] == [0, 1, 2, 3, 4]
    assert torch.equal(seen[-1][1], out)  # the last step returns its prediction of x0
    heun_seen = []
    sample_flow_heun(gaussian_denoiser, randn(1, 1, 2, 2, seed=0), flow_sigmas(5),
                     callback=lambda i, x_t, x0: heun_seen.append(i))
    assert heun_seen == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="strictly decrease from at most 1 to 0"):
        sample_flow_euler(gaussian_denoiser, randn(1, 1, 2, 2, seed=0), torch.tensor([1.0, 0.5]))
    with pytest.raises(ValueError, match="strictly decrease"):
        sample_flow_euler(gaussian_denoiser, randn(1, 1, 2, 2, seed=0), torch.tensor([0.5, 0.7, 0.0]))


def test_guiding_x0_is_guiding_the_velocity(unet):
    den = FlowDenoiser(unet_network(unet))
    x, t, cond, uncond, scale = randn(B, C, S, S, seed=3), torch.tensor([0.3, 0.8]), randn(B, L, D, seed=4), \
        randn(1, L, D, seed=5), 3.0
    v_u = unet(x, 1000 * t, encoder_hidden_states=uncond.expand(B, -1, -1)).sample
    v_c = unet(x, 1000 * t, encoder_hidden_states=cond).sample
    expected = den.to_x0(v_u + scale * (v_c - v_u), x, t)
    ours = guided(den, cond, uncond, scale)(x, t)
    assert ((ours - expected).abs().max() / expected.abs().max()) < 1e-5
    assert (ours - den(x, t, cond)).abs().max() > 1e-2


# ---------------------------------------------------------------- a flow generator, end to end


def flow_config(**train):
    return GeneratorTrainConfig(
        model=GeneratorConfig(block_out_channels=(16, 32), norm_num_groups=8, objective="flow", min_snr_gamma=0.0),
        text=TextEncoderConfig(max_length=16),
        train=TrainConfig(**{"steps": 6, "batch_size": 8, "lr": 1e-3, "warmup_steps": 2, "ema_decay": 0.99,
                             "log_every": 2, "checkpoint_every": 2, **train}))


@pytest.fixture(scope="module")
def flow_folder(demo_run, tmp_path_factory):
    out, tmp = demo_run[0], tmp_path_factory.mktemp("flow")
    info = train_generator(out / "data", out / "autoencoder", tmp / "gen", flow_config(steps=20, checkpoint_every=0))
    assert info["objective"] == "flow"
    return compose(tmp / "gen", tmp / "pipe", defaults={"steps": 6, "guidance": 3.0})


@pytest.fixture(scope="module")
def flow_pipe(flow_folder):
    return t2i.load(flow_folder)


def _arr(images):
    return np.stack([np.asarray(i, dtype=np.int16) for i in images])


def test_composed_folder_records_the_objective(flow_folder, flow_pipe):
    info = json.loads((flow_folder / "t2i.json").read_text())
    assert info["objective"] == "flow" and info["components"]["generator"]["objective"] == "flow"
    assert info["defaults"]["sampler"] == "flow_euler"
    index = json.loads((flow_folder / "model_index.json").read_text())
    assert index["scheduler"] == ["diffusers", "FlowMatchEulerDiscreteScheduler"]
    assert flow_pipe.objective == "flow" and flow_pipe.samplers == ("flow_euler", "flow_heun")
    (img,) = flow_pipe("a red circle", seed=0)
    assert img.size == (flow_pipe.image_size, flow_pipe.image_size)
    (heun,) = flow_pipe("a red circle", seed=0, sampler="flow_heun")
    assert np.abs(_arr([img]) - _arr([heun])).max() > 0


def test_each_objective_refuses_the_others_samplers(flow_pipe, pipe):
    with pytest.raises(ValueError, match="sampler 'dpmpp_2m' is for VP diffusion generators; this one is a flow "
                                         "generator: choose from flow_euler, flow_heun"):
        flow_pipe("a red circle", sampler="dpmpp_2m")
    with pytest.raises(ValueError, match="sampler 'flow_heun' is for flow generators; this one is a diffusion"):
        pipe("a red circle", sampler="flow_heun")


def test_compose_refuses_a_vp_default_sampler_for_a_flow_generator(flow_folder, tmp_path):
    gen = json.loads((flow_folder / "t2i.json").read_text())["components"]["generator"]["folder"]
    with pytest.raises(CompositionError, match="default sampler 'ddim' does not fit a flow generator"):
        compose(gen, tmp_path / "p", defaults={"sampler": "ddim"})


def test_negative_prompt_replaces_the_unconditional_input(flow_pipe):
    r = flow_pipe.request("a red circle", negative_prompt="a blue square", seed=[3], steps=5, guidance=4.0)
    ours = flow_pipe._sample(r)
    # By hand: guidance whose unconditional half is the negative prompt's embedding.
    cond, neg = flow_pipe.encode_prompts(["a red circle"]), flow_pipe.encode_prompts(["a blue square"])
    net = unet_network(flow_pipe._unet_module, reuse_text_kv=True)
    denoise = guided(FlowDenoiser(net), cond, neg, 4.0)
    h = flow_pipe.image_size // flow_pipe.vae_factor
    x = per_image_randn((flow_pipe.unet.config.in_channels, h, h), [torch.Generator().manual_seed(3)])
    with torch.inference_mode():
        by_hand = sample_flow_euler(denoise, x, flow_sigmas(5))
    assert torch.equal(ours, by_hand)
    plain = flow_pipe._sample(flow_pipe.request("a red circle", seed=[3], steps=5, guidance=4.0))
    assert (plain - ours).abs().max() > 1e-3  # and the empty prompt's run differs


@pytest.mark.parametrize("sampler", ["flow_euler", "flow_heun"])
def test_same_seed_same_image_at_any_batch_position(flow_pipe, sampler):
    alone = flow_pipe("a blue square", seed=[7], steps=5, guidance=3.0, sampler=sampler)
    batch = flow_pipe(["a red circle", "a green diamond", "a blue square"], seed=[1, 2, 7], steps=5, guidance=3.0,
                      sampler=sampler)
    assert np.abs(_arr(alone) - _arr(batch[2:])).max() <= 1  # batched matmuls: last float bits
    assert np.abs(_arr(batch[:1]) - _arr(batch[2:])).max() > 10


def test_previews_show_the_predicted_clean_image(flow_folder):
    from t2i.pipeline.speed import SpeedConfig

    pipe = t2i.load(flow_folder, speed=SpeedConfig(fast_previews=False))
    events = list(pipe.stream("a yellow triangle", seed=5, steps=4))
    assert [e.step for e in events[:-1]] == [1, 2, 3, 4]
    # flow Euler's last step returns its prediction, so the last preview is the result.
    assert np.abs(_arr(events[-2].images) - _arr(events[-1].images)).max() <= 1


def test_diffusers_loads_the_flow_folder_and_runs_it_after_one_line(flow_folder, flow_pipe):
    """StableDiffusionPipeline loads the folder with FlowMatchEulerDiscreteScheduler, but its __call__ reads the
    scheduler's init_noise_sigma, which that class lacks; set to 1 (x_1 is unit noise), it runs our model like t2i."""
    from diffusers import StableDiffusionPipeline

    sd = StableDiffusionPipeline.from_pretrained(flow_folder, safety_checker=None)
    assert type(sd.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"
    c, h = flow_pipe.unet.config.in_channels, flow_pipe.image_size // flow_pipe.vae_factor
    prompts, seeds = ["a red circle", "a blue square"], [0, 1]
    latents = per_image_randn((c, h, h), [torch.Generator().manual_seed(s) for s in seeds])
    if not hasattr(sd.scheduler, "init_noise_sigma"):  # diffusers 0.42; docs/training.md says so
        with pytest.raises(AttributeError, match="init_noise_sigma"):
            sd(prompts, num_inference_steps=6, guidance_scale=3.0, latents=latents)
        sd.scheduler.init_noise_sigma = 1.0
    theirs = sd(prompts, num_inference_steps=6, guidance_scale=3.0, latents=latents, output_type="pil").images
    ours = flow_pipe(prompts, seed=seeds, steps=6, guidance=3.0, sampler="flow_euler")
    assert np.abs(_arr(ours) - _arr(theirs)).max() <= 2


def test_flow_run_stopped_and_resumed_equals_uninterrupted_bitwise(demo_run, tmp_path):
    from safetensors.torch import load_file

    out, common = demo_run[0], dict(cache_dir=tmp_path / "cache")
    whole = train_generator(out / "data", out / "autoencoder", tmp_path / "whole", flow_config(), **common)
    train_generator(out / "data", out / "autoencoder", tmp_path / "part", flow_config(stop_at=3), **common)
    resumed = train_generator(out / "data", out / "autoencoder", tmp_path / "part", flow_config(), resume=True,
                              **common)
    a, b = load_file(tmp_path / "whole" / WEIGHTS), load_file(tmp_path / "part" / WEIGHTS)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["losses"] == whole["losses"] and not math.isnan(whole["metrics"]["final_loss"])


def test_cli_objective_flag_builds_a_flow_config_and_refuses_min_snr():
    from t2i.cli import parser
    from t2i.cli.train import text_conditioned_config
    from t2i.diffusion.unet import GENERATOR_PRESETS

    base = ["train", "generator", "--data", "d", "--autoencoder", "a", "--out", "o"]
    model, _ = text_conditioned_config(parser().parse_args(base + ["--objective", "flow"]), GENERATOR_PRESETS)
    assert (model.objective, model.min_snr_gamma) == ("flow", 0.0)
    model, _ = text_conditioned_config(parser().parse_args(base), GENERATOR_PRESETS)
    assert (model.objective, model.min_snr_gamma) == ("diffusion", 5.0)
    with pytest.raises(ValueError, match="--min-snr-gamma 3.0 weighs the diffusion objective"):
        text_conditioned_config(parser().parse_args(base + ["--objective", "flow", "--min-snr-gamma", "3"]),
                                GENERATOR_PRESETS)
