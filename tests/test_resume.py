"""Real components through the real entry points: exact resume of the autoencoder and the generator,
SIGTERM on a `t2i train` process, refusal of a changed dataset, and a 2-process `torchrun` run against
one process. Tiny sizes on the quick demo's data (the session's `demo_run`)."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from t2i.autoencoder import AutoencoderConfig, AutoencoderTrainConfig, train_autoencoder
from t2i.cli import main
from t2i.diffusion.unet import GeneratorConfig
from t2i.latent.train import GeneratorTrainConfig, train_generator
from t2i.text import TextEncoderConfig
from t2i.training.trainer import TrainConfig

WEIGHTS = "diffusion_pytorch_model.safetensors"


def same_weights(a: Path, b: Path) -> bool:
    x, y = load_file(a / WEIGHTS), load_file(b / WEIGHTS)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def with_train(cfg, **changes):
    cfg.train = TrainConfig(**{**cfg.train.__dict__, **changes})
    return cfg


def ae_config(**train):
    return AutoencoderTrainConfig(
        model=AutoencoderConfig(image_size=16, block_out_channels=(16, 32, 32), norm_num_groups=8), held_out=16,
        train=TrainConfig(**{"steps": 6, "batch_size": 8, "lr": 2e-3, "warmup_steps": 2, "log_every": 2,
                             "checkpoint_every": 2, **train}))


def gen_config(**train):
    return GeneratorTrainConfig(
        model=GeneratorConfig(block_out_channels=(16, 32), norm_num_groups=8), text=TextEncoderConfig(max_length=16),
        train=TrainConfig(**{"steps": 6, "batch_size": 8, "lr": 1e-3, "warmup_steps": 2, "ema_decay": 0.99,
                             "log_every": 2, "checkpoint_every": 2, **train}))


def test_autoencoder_stopped_and_resumed_equals_uninterrupted_bitwise(demo_run, tmp_path):
    data = demo_run[0] / "data"
    whole = train_autoencoder(data, tmp_path / "whole", ae_config())
    stopped = train_autoencoder(data, tmp_path / "part", ae_config(stop_at=3))
    assert stopped["stopped"] == "stop_at=3" and stopped["step"] == 3
    assert not (tmp_path / "part" / WEIGHTS).exists()  # no component from a stopped run
    resumed = train_autoencoder(data, tmp_path / "part", ae_config(), resume=True)
    assert same_weights(tmp_path / "whole", tmp_path / "part")
    assert resumed["latent_scaling_factor"] == whole["latent_scaling_factor"]
    assert resumed["losses"] == whole["losses"]


def test_generator_stopped_and_resumed_equals_uninterrupted_bitwise(demo_run, tmp_path):
    out = demo_run[0]
    cache = tmp_path / "cache"  # shared by both runs: computed once
    common = dict(cache_dir=cache)
    whole = train_generator(out / "data", out / "autoencoder", tmp_path / "whole", gen_config(sample_every=3), **common)
    grids = sorted(p.name for p in (tmp_path / "whole" / "samples").iterdir())
    assert grids == ["step-000000003.png", "step-000000006.png"]
    assert Image.open(tmp_path / "whole" / "samples" / grids[0]).size == (4 * 32 + 5 * 2, 32 + 2 * 2)  # 4 prompts
    stopped = train_generator(out / "data", out / "autoencoder", tmp_path / "part", gen_config(stop_at=4), **common)
    assert stopped["step"] == 4
    resumed = train_generator(out / "data", out / "autoencoder", tmp_path / "part", gen_config(), resume=True, **common)
    # The EMA weights, which are what is saved; drawing sample grids in one run and not the other changes nothing.
    assert same_weights(tmp_path / "whole", tmp_path / "part")
    assert resumed["losses"] == whole["losses"]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_sigterm_checkpoints_and_exits_0_then_a_changed_dataset_is_refused(demo_run, tmp_path, capsys):
    data, ae = tmp_path / "data", tmp_path / "ae"
    shutil.copytree(demo_run[0] / "data", data)
    args = ["train", "autoencoder", "--data", str(data), "--out", str(ae), "--preset", "tiny", "--size", "16",
            "--steps", "100000", "--batch-size", "4", "--checkpoint-every", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "t2i.cli", *args], env=_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (ae / "checkpoints" / "latest").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    latest = (ae / "checkpoints" / "latest").read_text().strip()
    step = int(latest.split("-")[1])
    assert f"stopped by SIGTERM after step {step}; checkpoint {ae / 'checkpoints' / latest}" in stdout
    assert "to continue: t2i train autoencoder" in stdout and "--resume" in stdout
    assert 1 <= step < 100000

    capsys.readouterr()
    assert main(args) == 1  # the same command again without --resume: refused, nothing overwritten
    assert "already holds checkpoints" in capsys.readouterr().err
    Image.new("RGB", (16, 16), (255, 0, 0)).save(data / "images" / "000000.png")  # one image changed
    assert main(args + ["--resume"]) == 1
    err = capsys.readouterr().err
    assert "cannot resume from" in err and "data_fingerprint" in err and "--reset-data-position" in err
    assert (ae / "checkpoints" / "latest").read_text().strip() == latest


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
def test_two_processes_under_torchrun_reach_the_weights_of_one_process(demo_run, tmp_path, capsys):
    """Global batch 8 as 2 × 4 (gloo, CPU) against 1 × 8, 3 steps. Tolerance: 1e-5 absolute on weights of
    magnitude ~1 (measured: ~1e-6). The gradients are sums in another order, so float32 rounding differs;
    nothing else may: same samples, same noise per sample, same EMA. The cache (4 shards of 32) is computed
    by both processes, 2 shards each, and must equal the one a single process computes, bitwise."""
    out = demo_run[0]
    common = ["--data", out / "data", "--autoencoder", out / "autoencoder", "--preset", "tiny", "--max-length", "16",
              "--steps", "3", "--batch-size", "8", "--cache-shard-rows", "32", "--checkpoint-every", "0"]
    two_args = ["train", "generator", "--out", str(tmp_path / "two"), *map(str, common), "--checkpoint-every", "3"]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "t2i.cli", *two_args],
                       env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("generator: final loss") == 1  # rank 0 speaks, rank 1 is silent
    assert main(["train", "generator", "--out", str(tmp_path / "one"), *map(str, common)]) == 0
    one, two = load_file(tmp_path / "one" / WEIGHTS), load_file(tmp_path / "two" / WEIGHTS)
    worst = max((one[k] - two[k]).abs().max().item() for k in one)
    assert worst < 1e-5, worst
    for name in ("latents", "text"):
        [a], [b] = (sorted((tmp_path / run / "cache").glob(f"{name}-*")) for run in ("one", "two"))
        shards = sorted(p.name for p in a.glob("*.safetensors"))
        assert shards == sorted(p.name for p in b.glob("*.safetensors"))
        for shard in shards:
            x, y = load_file(a / shard), load_file(b / shard)
            assert all(torch.equal(x[k], y[k]) for k in x), shard
    # The 2-process run's checkpoint, resumed by one process: its data position means nothing there, refused.
    capsys.readouterr()
    assert main([*two_args, "--resume"]) == 1
    assert "world_size 2 → 1" in capsys.readouterr().err
