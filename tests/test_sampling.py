"""Schedule, parameterisation, guidance and samplers, against diffusers' schedulers on a real tiny U-Net."""

import math

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    UNet2DConditionModel,
)

from t2i.sampling import (
    SAMPLERS,
    Denoiser,
    NoiseScheduleConfig,
    alphas_cumprod,
    diffusers_scheduler_config,
    get_sampler,
    guided,
    max_timestep_above,
    per_image_randn,
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
    sample_euler,
    spaced_timesteps,
    unet_network,
)

B, C, S, L, D = 2, 4, 8, 5, 16  # batch, latent channels, latent size, tokens, embedding width


@pytest.fixture(scope="module")
def unet():
    with torch.random.fork_rng():  # the U-Net initialises from the global RNG; keep the caller's untouched
        torch.manual_seed(0)
        net = UNet2DConditionModel(
            sample_size=S, in_channels=C, out_channels=C, block_out_channels=(32, 64), layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=D, attention_head_dim=8, norm_num_groups=32,
        )
    return net.eval().requires_grad_(False)


def randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


COND, UNCOND, NOISE = randn(B, L, D, seed=1), randn(1, L, D, seed=2), randn(B, C, S, S, seed=3)
SCHEDULE = NoiseScheduleConfig()
AC = alphas_cumprod(SCHEDULE)


def max_rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


# ---------------------------------------------------------------- schedule


@pytest.mark.parametrize("beta_schedule", ["scaled_linear", "linear", "squaredcos_cap_v2"])
def test_alphas_cumprod_matches_diffusers(beta_schedule):
    config = NoiseScheduleConfig(beta_schedule=beta_schedule)
    theirs = DDPMScheduler.from_config(diffusers_scheduler_config(config, "epsilon")).alphas_cumprod.double()
    ours = alphas_cumprod(config)
    assert ours.dtype == torch.float64 and ours.shape == (1000,)
    # diffusers multiplies 1000 float32 factors: ~1e-7 relative error each, 1.3e-5 measured at the cosine's tail.
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=0)


@pytest.mark.parametrize("spacing", ["trailing", "leading", "linspace"])
@pytest.mark.parametrize("steps", [1, 10, 25, 28, 30, 61, 1000])
def test_spaced_timesteps_match_diffusers(spacing, steps):
    ours = spaced_timesteps(1000, steps, spacing)
    assert ours.dtype == torch.long and len(ours) == steps and bool((ours[:-1] > ours[1:]).all())
    config = diffusers_scheduler_config(SCHEDULE, "epsilon", spacing)
    classes = [DDIMScheduler, DDPMScheduler]
    if spacing != "linspace" or 999 % max(steps - 1, 1) == 0:
        classes.append(EulerDiscreteScheduler)  # its "linspace" timesteps are unrounded floats otherwise
    if spacing == "trailing":
        classes.append(DPMSolverMultistepScheduler)  # its leading/linspace spread steps+1 points and drop t=0
    for cls in classes:
        scheduler = cls.from_config(config)
        scheduler.set_timesteps(steps)
        theirs = scheduler.timesteps.long()
        # diffusers' float-stride arange adds a spurious t = −1 for some counts (61 here); the rest must agree
        assert len(theirs) in (steps, steps + 1), cls.__name__
        assert torch.equal(ours, theirs[:steps]), cls.__name__


def test_spaced_timesteps_rejects_bad_input():
    with pytest.raises(ValueError, match="steps must be at least 1, got 0"):
        spaced_timesteps(1000, 0)
    with pytest.raises(ValueError, match="at most"):
        spaced_timesteps(1000, 1001)
    with pytest.raises(ValueError, match="spacing"):
        spaced_timesteps(1000, 10, "uniform")
    with pytest.raises(ValueError, match="beta_schedule"):
        NoiseScheduleConfig(beta_schedule="cosine")


def test_lambda_clip_is_diffusers_first_dpm_timestep():
    for beta_schedule, expected in [("squaredcos_cap_v2", 995), ("scaled_linear", 999)]:
        config = NoiseScheduleConfig(beta_schedule=beta_schedule)
        scheduler = DPMSolverMultistepScheduler.from_config(diffusers_scheduler_config(config, "epsilon"))
        scheduler.set_timesteps(20)
        assert max_timestep_above(alphas_cumprod(config), -5.1) == int(scheduler.timesteps[0]) == expected


# ---------------------------------------------------------------- parameterisation and guidance


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_denoiser_conversions_match_diffusers(unet, prediction_type):
    x0, eps, t = randn(B, C, S, S, seed=4), randn(B, C, S, S, seed=5), torch.tensor([10, 900])
    den = Denoiser(unet_network(unet), AC, prediction_type)
    scheduler = DDPMScheduler.from_config(diffusers_scheduler_config(SCHEDULE, prediction_type))
    x_t = den.add_noise(x0, eps, t)
    torch.testing.assert_close(x_t, scheduler.add_noise(x0, eps, t), rtol=1e-5, atol=1e-6)
    target = den.target(x0, eps, t)
    expected = {"epsilon": eps, "v_prediction": scheduler.get_velocity(x0, eps, t), "sample": x0}[prediction_type]
    torch.testing.assert_close(target, expected, rtol=1e-5, atol=1e-6)
    # the exact target maps back to the clean sample and the noise (float32 round trip through 1/α at t = 900)
    torch.testing.assert_close(den.to_x0(target, x_t, t), x0, rtol=0, atol=1e-4)
    torch.testing.assert_close(den.to_eps(target, x_t, t), eps, rtol=0, atol=1e-4)


def test_guidance_scale_one_is_the_conditional_denoiser(unet):
    batch_sizes = []

    def net(x_t, t, cond):  # the real U-Net, recording how many samples each forward carries
        batch_sizes.append(x_t.shape[0])
        return unet(x_t, t, encoder_hidden_states=cond).sample

    den = Denoiser(net, AC, "v_prediction")
    t = torch.tensor([500, 500])
    assert torch.equal(guided(den, COND, UNCOND, 1.0)(NOISE, t), den(NOISE, t, COND))
    assert torch.equal(guided(den, COND, None, 1.0)(NOISE, t), den(NOISE, t, COND))
    assert batch_sizes == [B] * 4  # no unconditional forward at all
    guided(den, COND, UNCOND, 3.0)(NOISE, t)
    assert batch_sizes[-1] == 2 * B  # one batched forward over [uncond; cond]


def test_guidance_interval_guides_only_the_timesteps_inside_it(unet):
    batch_sizes = []

    def net(x_t, t, cond):
        batch_sizes.append(x_t.shape[0])
        return unet(x_t, t, encoder_hidden_states=cond).sample

    den = Denoiser(net, AC, "v_prediction")
    everywhere, limited = guided(den, COND, UNCOND, 3.0), guided(den, COND, UNCOND, 3.0, interval=(200, 800))
    high, mid = torch.tensor([900, 900]), torch.tensor([500, 500])
    assert torch.equal(limited(NOISE, high), den(NOISE, high, COND))  # outside: the conditional prediction
    assert batch_sizes[-2:] == [B, B]  # ... from a forward over the B conditional samples only
    assert torch.equal(limited(NOISE, mid), everywhere(NOISE, mid))  # inside: guided as without an interval
    assert max_rel_err(everywhere(NOISE, high), den(NOISE, high, COND)) > 1e-2  # so the interval did change t=900
    mixed = limited(NOISE, torch.tensor([500, 900]))  # per image, when a batch mixes timesteps
    assert torch.equal(mixed[0], everywhere(NOISE, torch.tensor([500, 900]))[0])
    # the second is the conditional half of the batched forward (equal to a separate one up to the last bits)
    assert max_rel_err(mixed[1], den(NOISE, torch.tensor([500, 900]), COND)[1]) < 1e-5


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_guidance_in_x0_space_equals_guiding_the_network_output(unet, prediction_type):
    den = Denoiser(unet_network(unet), AC, prediction_type)
    t, scale = torch.tensor([300, 700]), 4.0
    out_u = unet(NOISE, t, encoder_hidden_states=UNCOND.expand(B, -1, -1)).sample
    out_c = unet(NOISE, t, encoder_hidden_states=COND).sample
    expected = den.to_x0(out_u + scale * (out_c - out_u), NOISE, t)
    ours = guided(den, COND, UNCOND, scale)(NOISE, t)
    # batched vs separate forwards and the two association orders differ in the last float32 bits
    assert max_rel_err(ours, expected) < 1e-5
    assert torch.equal(ours, guided(den, COND, UNCOND.expand(B, -1, -1), scale)(NOISE, t))  # broadcast
    assert max_rel_err(ours, den(NOISE, t, COND)) > 1e-2  # guidance does change the prediction


# ---------------------------------------------------------------- samplers against diffusers


def run_diffusers(unet, scheduler, steps, x, generator=None):
    """The loop of diffusers' StableDiffusionPipeline, without guidance."""
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        out = unet(scheduler.scale_model_input(x, t), t, encoder_hidden_states=COND).sample
        kwargs = {"generator": generator} if generator is not None else {}
        x = scheduler.step(out, t, x, **kwargs).prev_sample
    return x


PARITY = {"ddim": DDIMScheduler, "dpmpp_2m": DPMSolverMultistepScheduler, "euler": EulerDiscreteScheduler}


@pytest.mark.parametrize("steps", [10, 25])
@pytest.mark.parametrize("sampler", list(PARITY))
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_sampler_matches_diffusers_scheduler(unet, prediction_type, sampler, steps):
    config = diffusers_scheduler_config(SCHEDULE, prediction_type)
    scheduler = PARITY[sampler].from_config(config)
    den = Denoiser(unet_network(unet), AC, prediction_type)
    ours = get_sampler(sampler)(lambda x, t: den(x, t, COND), NOISE, spaced_timesteps(1000, steps), AC)
    x_start = NOISE * scheduler.init_noise_sigma  # 1 for DDIM and DPM-Solver
    if sampler == "euler":
        # Euler works in σ-space, x̃ = x_t/√ᾱ. diffusers' pipeline starts from noise·σ_max (init_noise_sigma
        # for trailing spacing), treating the signal as negligible; we map x_T exactly, x_T·√(1+σ_max²):
        # 0.23 % larger here. Start diffusers where we start, so that the test compares the steps.
        assert scheduler.init_noise_sigma == pytest.approx(scheduler.sigmas[0].item())
        x_start = NOISE * math.sqrt(1 + scheduler.sigmas[0].item() ** 2)
    theirs = run_diffusers(unet, scheduler, steps, x_start)
    # Same model, same steps; the differences are float32 arithmetic and diffusers' float32 ᾱ against our
    # float64 one (~1e-6 relative). The random U-Net's ε-samples reach |x| ≈ 50, v-samples ≈ 3: hence a
    # tolerance relative to the sample's magnitude. Measured: ≤ 1e-6.
    assert max_rel_err(ours, theirs) < 1e-5


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_ddpm_matches_diffusers_and_ddim_eta_one(unet, prediction_type):
    steps = 10
    den = Denoiser(unet_network(unet), AC, prediction_type)
    scheduler = DDPMScheduler.from_config(diffusers_scheduler_config(SCHEDULE, prediction_type))
    assert scheduler.config.variance_type == "fixed_small" and not scheduler.config.clip_sample

    def gens():
        return [torch.Generator().manual_seed(s) for s in (21, 22)]

    ts = spaced_timesteps(1000, steps)
    ours = sample_ddpm(lambda x, t: den(x, t, COND), NOISE, ts, AC, generators=gens())
    # diffusers draws the same per-image noise from a list of generators (plus one unused draw at the end)
    theirs = run_diffusers(unet, scheduler, steps, NOISE, generator=gens())
    assert max_rel_err(ours, theirs) < 1e-5
    ddim = sample_ddim(lambda x, t: den(x, t, COND), NOISE, ts, AC, generators=gens(), eta=1.0)
    assert max_rel_err(ours, ddim) < 1e-5
    deterministic = sample_ddim(lambda x, t: den(x, t, COND), NOISE, ts, AC)
    assert max_rel_err(ours, deterministic) > 1e-2  # the noise was really injected


def test_euler_is_ddim_at_integer_timesteps(unet):
    den = Denoiser(unet_network(unet), AC, "v_prediction")
    ts = spaced_timesteps(1000, 10)
    euler = sample_euler(lambda x, t: den(x, t, COND), NOISE, ts, AC)
    ddim = sample_ddim(lambda x, t: den(x, t, COND), NOISE, ts, AC)
    assert max_rel_err(euler, ddim) < 1e-5


# ---------------------------------------------------------------- properties


def test_ddim_eta_zero_is_deterministic(unet):
    den = Denoiser(unet_network(unet), AC, "epsilon")
    ts = spaced_timesteps(1000, 10)
    first = sample_ddim(lambda x, t: den(x, t, COND), NOISE.clone(), ts, AC)
    assert torch.equal(first, sample_ddim(lambda x, t: den(x, t, COND), NOISE.clone(), ts, AC))


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_same_seed_same_image_at_any_batch_position(unet, sampler):
    den = Denoiser(unet_network(unet), AC, "v_prediction")
    cond = randn(4, L, D, seed=6)
    ts = spaced_timesteps(1000, 10)

    def generate(seeds, cond):
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        x = per_image_randn((C, S, S), generators)  # x_T, then the sampler's fresh noise, from the same streams
        return get_sampler(sampler)(guided(den, cond, UNCOND, 3.0), x, ts, AC, generators=generators)

    alone = generate([7], cond[2:3])
    batched = generate([11, 12, 7, 13], cond)
    # batched matmuls may differ from single ones in the last bits; v-prediction samples are O(1)
    torch.testing.assert_close(batched[2:3], alone, rtol=0, atol=2e-5)  # measured ≤ 5e-6
    assert (batched[1:2] - alone).abs().max() > 0.1  # other seeds give other images


def test_dpmpp_2m_stays_bounded_on_the_cosine_schedule(unet):
    # docs/pitfalls.md. Unit-variance data, whose exact ε-prediction is E[ε | x_t] = σ_t·x_t, plus the
    # tiny U-Net's output as the network's error, 0.1 of it. At t = 999 of the cosine schedule α = 5e-5, so
    # converting ε to x0 multiplies that error by 2e4 unless λ(t) is clipped (α ≥ 6e-3 at λ = −5.1).
    ac = alphas_cumprod(NoiseScheduleConfig(beta_schedule="squaredcos_cap_v2"))

    def net(x_t, t, cond):
        sigma = (1 - ac[t]).sqrt().float().view(-1, 1, 1, 1)
        return sigma * x_t + 0.1 * unet(x_t, t, encoder_hidden_states=cond).sample

    den = Denoiser(net, ac, "epsilon")
    ts = spaced_timesteps(1000, 20)
    clipped = sample_dpmpp_2m(lambda x, t: den(x, t, COND), NOISE, ts, ac)
    assert clipped.std() < 10  # measured ≈ 1.0
    unclipped = sample_dpmpp_2m(lambda x, t: den(x, t, COND), NOISE, ts, ac, lambda_min=-math.inf)
    assert unclipped.std() > 10  # measured ≈ 47: the guard is what keeps it bounded


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_callback_once_per_step_with_the_predicted_clean_sample(unet, sampler):
    den = Denoiser(unet_network(unet), AC, "epsilon")
    calls = []
    generators = [torch.Generator().manual_seed(s) for s in range(B)]
    ts = spaced_timesteps(1000, 7)
    out = get_sampler(sampler)(lambda x, t: den(x, t, COND), NOISE, ts, AC, generators=generators,
                               callback=lambda i, x_t, x0: calls.append((i, x_t.shape, x0.shape)))
    assert calls == [(i, NOISE.shape, NOISE.shape) for i in range(7)]
    assert out.shape == NOISE.shape


def test_unknown_sampler_lists_the_choices():
    with pytest.raises(ValueError, match=r"^unknown sampler 'foo'; choose from ddim, ddpm, dpmpp_2m, euler$"):
        get_sampler("foo")
    with pytest.raises(ValueError, match="generator"):
        sample_ddpm(lambda x, t: x, NOISE, spaced_timesteps(1000, 3), AC)
    with pytest.raises(ValueError, match="strictly decrease"):
        sample_ddim(lambda x, t: x, NOISE, torch.tensor([10, 20]), AC)
