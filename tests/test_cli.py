"""The `t2i` command end to end on tiny configs, and its answers to bad input."""

import json
import os
import re
import subprocess
import sys

import pytest
from PIL import Image

from t2i.cli import main

# Subprocesses run the code under test, also where it is not the installed copy (PYTHONPATH=src).
PYTHONPATH = {"PYTHONPATH": os.pathsep.join(map(os.path.abspath, os.environ["PYTHONPATH"].split(os.pathsep)))} \
    if os.environ.get("PYTHONPATH") else {}


def run(*args):
    """The real console entry point in a subprocess: what a user sees, exit code included."""
    return subprocess.run([sys.executable, "-m", "t2i.cli", *map(str, args)], capture_output=True, text=True,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", **PYTHONPATH}, timeout=300)


def test_cli_trains_composes_and_generates(tmp_path):
    data, ae, gen, pipe = tmp_path / "data", tmp_path / "ae", tmp_path / "gen", tmp_path / "pipe"
    assert main(["data", "shapes", "--out", str(data), "--n", "64", "--size", "16"]) == 0
    assert main(["train", "autoencoder", "--data", str(data), "--out", str(ae), "--preset", "tiny", "--size", "16",
                 "--steps", "3", "--batch-size", "8"]) == 0
    assert main(["train", "generator", "--data", str(data), "--autoencoder", str(ae), "--out", str(gen),
                 "--preset", "tiny", "--steps", "3", "--batch-size", "8", "--max-length", "16",
                 "--pipeline-out", str(pipe)]) == 0
    assert main(["compose", "--generator", str(gen), "--out", str(tmp_path / "pipe2"), "--guidance", "2.5"]) == 0
    out = tmp_path / "images"
    assert main(["generate", "a red circle", "a blue square", "--model", str(pipe), "--n", "2", "--steps", "3",
                 "--seed", "9", "--out", str(out), "--preview", str(tmp_path / "p.gif")]) == 0
    pngs = sorted(out.glob("a_*.png"))
    assert len(pngs) == 4
    assert "Seed: 9," in Image.open(out / "a_red_circle_0.png").text["parameters"]
    assert "Seed: 12," in Image.open(out / "a_blue_square_1.png").text["parameters"]
    gif = Image.open(tmp_path / "p.gif")
    # 3 steps + the final images; PIL merges identical consecutive frames (the last step's prediction is the result)
    assert 2 <= gif.n_frames <= 4


@pytest.mark.parametrize("args, message", [
    (["train", "autoencoder", "--data", "/nonexistent/data", "--out", "/tmp/x"], "data folder /nonexistent/data does not exist"),
    (["generate", "a red circle", "--model", "/nonexistent/pipe"], "is not a pipeline folder"),
    (["compose", "--generator", "/nonexistent/gen", "--out", "/tmp/x"], "component folder /nonexistent/gen does not exist"),
])
def test_bad_input_gives_one_clear_line_and_no_traceback(args, message):
    r = run(*args)
    assert r.returncode == 1
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_import_and_check_a_sidecar_folder_with_a_bad_image(tmp_path):
    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    for k in range(9):
        Image.new("RGB", (40, 30), (20 * k, 100, 200)).save(src / "sub" / f"p{k}.png")
        (src / "sub" / f"p{k}.txt").write_text(f"photo number {k}\n")
    (src / "broken.png").write_bytes(b"not a png")
    (src / "broken.txt").write_text("a broken file\n")
    r = run("data", "import", "--src", src, "--out", tmp_path / "data", "--size", "16")
    assert r.returncode == 0, r.stderr
    assert "kept 9 of 10" in r.stdout + r.stderr
    r = run("data", "check", tmp_path / "data")
    assert r.returncode == 0 and "kept 9 of 9" in r.stdout + r.stderr and "fingerprint" in r.stdout
    assert Image.open(next((tmp_path / "data" / "images").glob("*.png"))).size == (16, 16)
    r = run("data", "import", "--src", src, "--out", tmp_path / "data2", "--max-failure-rate", "0.05")
    assert r.returncode == 1 and "above the 5% limit" in r.stderr and "Traceback" not in r.stderr


def test_autoencoder_size_not_divisible_fails_before_reading_data(tmp_path):
    r = run("train", "autoencoder", "--data", tmp_path / "missing", "--out", tmp_path / "ae", "--size", "30")
    assert r.returncode == 1 and "image size 30 is not divisible by the autoencoder factor 4" in r.stderr


def test_generate_reports_its_start_up_time(demo_run, tmp_path):
    out, _ = demo_run
    r = run("generate", "a red circle", "--model", out / "pipeline", "--n", "1", "--steps", "2", "--seed", "0",
            "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    startup = re.search(r"start-up ([0-9.]+) s: imports and loading; generating and writing ([0-9.]+) s", r.stdout)
    assert startup and float(startup.group(1)) > 0, r.stdout
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["a_red_circle_0.png", "grid_a_red_circle.png"]


def test_a_component_folder_of_the_wrong_kind_is_refused(demo_run, tmp_path):
    out, _ = demo_run
    r = run("train", "generator", "--data", out / "data", "--autoencoder", out / "generator", "--out", tmp_path / "g")
    assert r.returncode == 1 and "holds a 'generator' component, not 'autoencoder'" in r.stderr
    r = run("generate", "a red circle", "--model", out / "autoencoder", "--out", tmp_path)
    assert r.returncode == 1 and "is not a pipeline folder (no model_index.json)" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "g").exists()  # refused before anything was written


def test_argument_errors_are_caught_before_any_work():
    r = run("generate", "a red circle", "--model", "x", "--steps", "0")
    assert r.returncode == 2 and "must be at least 1, got 0" in r.stderr and "Traceback" not in r.stderr


def test_size_not_divisible_is_refused(pipeline_dir, tmp_path):
    r = run("generate", "a red circle", "--model", pipeline_dir, "--height", "30", "--out", tmp_path)
    assert r.returncode == 1 and "height 30 is not a positive multiple of 8" in r.stderr
    assert "Traceback" not in r.stderr


def test_every_command_has_help():
    for args in (["--help"], ["data", "shapes", "--help"], ["train", "generator", "--help"], ["compose", "--help"],
                 ["generate", "--help"], ["demo", "--help"], ["train", "vq", "--help"], ["train", "tokens", "--help"]):
        r = run(*args)
        assert r.returncode == 0 and "usage: t2i" in r.stdout, args


def test_training_flag_defaults_match_the_component_configs():
    """The CLI spells its training defaults out (so --help needs no torch); they must be the library's."""
    from t2i.autoencoder import AutoencoderTrainConfig
    from t2i.cli import parser
    from t2i.latent.train import GeneratorTrainConfig
    from t2i.tokens.train import TokensTrainConfig
    from t2i.tokens.vq_train import VQTrainConfig

    extra = {"generator": ["--autoencoder", "a"], "tokens": ["--vq", "v"]}
    parsed = {}
    for component, cfg in (("autoencoder", AutoencoderTrainConfig().train), ("generator", GeneratorTrainConfig().train),
                           ("vq", VQTrainConfig().train), ("tokens", TokensTrainConfig().train)):
        args = parsed[component] = parser().parse_args(["train", component, "--data", "d", "--out", "o",
                                                        *extra.get(component, [])])
        assert (args.steps, args.batch_size, args.lr, args.ema) == (cfg.steps, cfg.batch_size, cfg.lr, cfg.ema_decay), component
    vq, tokens = VQTrainConfig(), TokensTrainConfig()
    assert (parsed["vq"].commitment, parsed["vq"].reinit_every) == (vq.commitment, vq.reinit_every)
    assert (parsed["tokens"].caption_dropout, parsed["tokens"].max_length) == (tokens.model.caption_dropout,
                                                                                 tokens.text.max_length)
    args = parsed["generator"]
    model = GeneratorTrainConfig().model
    assert (args.prediction, args.beta_schedule, args.caption_dropout, args.min_snr_gamma, args.pooled_text_heads) == (
        model.prediction_type, model.schedule.beta_schedule, model.caption_dropout, model.min_snr_gamma,
        model.pooled_text_heads)
    assert (args.repa_weight, args.repa_target) == (GeneratorTrainConfig().repa_weight, GeneratorTrainConfig().repa_target)
    assert (args.patch_mask_ratio, args.patch_mixer_layers) == (model.patch_mask_ratio, model.patch_mixer_layers)


@pytest.mark.parametrize("cuda, cuda_bf16, cpu_bf16, expected", [
    (False, False, True, "bf16"), (False, False, False, "no"), (True, True, False, "bf16"), (True, False, True, "no")])
def test_mixed_precision_auto_follows_the_hardware(monkeypatch, cuda, cuda_bf16, cpu_bf16, expected):
    """--mixed-precision auto trains in bf16 only where the device computes it natively; the config records the
    choice made, not "auto"."""
    import torch

    import t2i.hardware
    from t2i.cli import parser
    from t2i.cli.common import train_config

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: cuda_bf16)
    monkeypatch.setattr(t2i.hardware, "native_bf16", lambda: cpu_bf16)
    args = parser().parse_args(["train", "base", "--data", "d", "--out", "o", "--mixed-precision", "auto"])
    assert train_config(args).mixed_precision == expected
    args = parser().parse_args(["train", "base", "--data", "d", "--out", "o", "--mixed-precision", "no"])
    assert train_config(args).mixed_precision == "no"


@pytest.mark.slow
def test_train_text_encoder_writes_minilm_cut_and_never_overwrites_other_files(tmp_path):
    out = tmp_path / "minilm-2l"
    r = run("train", "text-encoder", "--out", out, "--layers", "2")
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 2
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    r = run("train", "text-encoder", "--out", mine)
    assert r.returncode == 1 and "already holds files" in r.stderr and "Traceback" not in r.stderr
    assert (mine / "notes.txt").read_text() == "keep me"
    # A model folder t2i did not cut (here: the cut without its record) is neither taken as the cut at its own
    # depth nor rewritten at another.
    (out / "t2i_minilm_cut.json").unlink()
    for layers in ("2", "3"):
        r = run("train", "text-encoder", "--out", out, "--layers", layers)
        assert r.returncode == 1 and "already holds files" in r.stderr
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 2
    r = run("train", "text-encoder", "--out", tmp_path / "x", "--layers", "7")
    assert r.returncode == 1 and "cannot keep 7" in r.stderr
