"""recipes/ship_model.py, how a model is put inside t2i: float16 weights that load as float32 and draw what the
float32 folder draws, only what loading needs, a SHA256SUMS that catches any change, and no DEST overwritten
unless it is an unchanged earlier ship. On the tiny demo pipeline (conftest's `pipeline_dir`)."""

import hashlib
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import t2i
import t2i.models
from t2i.models import DIGESTS, check_digests, default_model

RECIPE = Path(__file__).parents[1] / "recipes" / "ship_model.py"
WEIGHT_BUDGET = 25e6  # bytes of weights a shipped folder may hold (issue 9)
PROMPTS, SEEDS = ["a red circle", "a small blue square above a large green circle"], [3, 4]


def _load_recipe():
    spec = importlib.util.spec_from_file_location("ship_model", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ship_model = _load_recipe()


@pytest.fixture(scope="module")
def source(pipeline_dir, tmp_path_factory):
    """The demo pipeline with what a training folder leaves around, which shipping must drop."""
    folder = tmp_path_factory.mktemp("source") / "pipeline"
    shutil.copytree(pipeline_dir, folder)
    (folder / "checkpoints" / "step-000000010").mkdir(parents=True)
    (folder / "checkpoints" / "step-000000010" / "model.safetensors").write_bytes(b"not shipped")
    (folder / "cache").mkdir()
    (folder / "cache" / "index.json").write_text("{}")
    (folder / "log.csv").write_text("step,loss\n")
    (folder / "unet" / "optimizer.pt").write_bytes(b"a pickle")
    return folder


@pytest.fixture(scope="module")
def shipped(source, tmp_path_factory):
    card = tmp_path_factory.mktemp("card") / "card.md"
    card.write_text("# a tiny model\n")
    dest = tmp_path_factory.mktemp("ship") / "emoji64"
    assert ship_model.main([str(source), str(dest), "--card", str(card), "--check-steps", "4"]) == 0
    return dest


def _images(pipe):
    return np.stack([np.asarray(im, dtype=np.int16) for im in pipe(PROMPTS, seed=SEEDS, steps=4)])


def test_weights_are_float16_round_trips_of_the_source(source, shipped):
    weights = sorted(p.relative_to(shipped) for p in shipped.rglob("*.safetensors"))
    assert [w.as_posix() for w in weights] == [
        "text_encoder/model.safetensors", "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors", "vae/preview_decoder/model.safetensors"]
    for rel in weights:
        ours, theirs = load_file(shipped / rel), load_file(source / rel)
        assert ours.keys() == theirs.keys()
        for name, t in ours.items():
            assert t.dtype == torch.float16 and t.shape == theirs[name].shape
            # Rounding to float16 moves a weight by at most half a unit in the last of its 10 mantissa bits.
            bound = theirs[name].abs() * 2.0**-11 + 2.0**-25
            assert ((t.double() - theirs[name].double()).abs() <= bound).all(), f"{rel}: {name}"
    size = lambda folder: sum((folder / rel).stat().st_size for rel in weights)  # noqa: E731
    assert size(shipped) < 0.51 * size(source)


def test_only_what_loading_needs_is_shipped(source, shipped):
    files = {p.relative_to(shipped).as_posix() for p in shipped.rglob("*") if p.is_file()}
    expected = {p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()}
    dropped = {"checkpoints/step-000000010/model.safetensors", "cache/index.json", "log.csv", "unet/optimizer.pt"}
    assert files == (expected - dropped) | {"MODEL_CARD.md", DIGESTS}
    assert (shipped / "MODEL_CARD.md").read_text() == "# a tiny model\n"
    for config in ("model_index.json", "unet/config.json", "vae/config.json", "scheduler/scheduler_config.json"):
        assert (shipped / config).read_bytes() == (source / config).read_bytes()
    record = t2i.load(shipped).info["shipped"]
    assert record["weights_dtype"] == "float16" and record["loaded_as"] == "float32"
    unet = "unet/diffusion_pytorch_model.safetensors"
    assert record["source_sha256"][unet] == hashlib.sha256((source / unet).read_bytes()).hexdigest()


def test_sha256sums_lists_every_other_file_sorted(shipped):
    lines = (shipped / DIGESTS).read_text().splitlines()
    names = [line.split("  ", 1)[1] for line in lines]
    files = sorted(p.relative_to(shipped).as_posix() for p in shipped.rglob("*") if p.is_file())
    assert names == sorted(names) == [f for f in files if f != DIGESTS]
    for line in lines:  # sha256sum's own format: "<hex>  <path>"
        digest, name = line.split("  ", 1)
        assert digest == hashlib.sha256((shipped / name).read_bytes()).hexdigest()
    check_digests(shipped)


def test_t2i_loads_float32_networks_that_draw_what_the_float32_folder_draws(shipped, pipe):
    ours = t2i.load(shipped)
    networks = [ours.unet, ours.vae, ours.preview_decoder, ours.text_encoder]
    assert all(t.dtype == torch.float32 for net in networks for t in [*net.parameters(), *net.buffers()]
               if t.is_floating_point())
    diff = np.abs(_images(ours) - _images(pipe))
    assert diff.max() <= 4 and diff.mean() < 0.5  # measured: at most 1 level, mean 0.02


def test_diffusers_loads_the_shipped_folder_as_float32_too(shipped, pipeline_dir):
    """diffusers upcasts float16 files into the float32 models it builds when given no torch_dtype; transformers
    loads the text encoder in the dtype its config.json names (float32, copied unchanged)."""
    from diffusers import StableDiffusionPipeline

    def run(folder):
        sd = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None)
        assert {sd.unet.dtype, sd.vae.dtype, sd.text_encoder.dtype} == {torch.float32}
        return sd(PROMPTS, num_inference_steps=4, guidance_scale=3.0, output_type="np",
                  generator=[torch.Generator().manual_seed(s) for s in SEEDS]).images

    np.testing.assert_allclose(run(shipped), run(pipeline_dir), atol=0.02)


def test_any_change_to_a_shipped_folder_fails_the_check(shipped, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(shipped, folder)
    unet = folder / "unet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(unet.read_bytes())
    data[-1] ^= 1  # one bit of one weight
    unet.write_bytes(bytes(data))
    (folder / "scheduler" / "scheduler_config.json").unlink()
    (folder / "vae" / "extra.safetensors").write_bytes(b"")
    with pytest.raises(ValueError) as e:
        check_digests(folder)
    message = str(e.value)
    assert "changed: unet/diffusion_pytorch_model.safetensors" in message
    assert "missing: scheduler/scheduler_config.json" in message
    assert f"not in {DIGESTS}: vae/extra.safetensors" in message
    # A changed earlier ship is not overwritten either: the change would be lost.
    assert ship_model.main([str(shipped), str(folder)]) == 1
    assert unet.read_bytes() == bytes(data)


def test_a_dest_that_is_not_an_earlier_ship_is_refused(source, tmp_path, capsys):
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "notes.txt").write_text("keep me")
    assert ship_model.main([str(source), str(dest)]) == 1
    assert "is not a previous ship" in capsys.readouterr().err
    assert [p.name for p in dest.iterdir()] == ["notes.txt"] and (dest / "notes.txt").read_text() == "keep me"
    assert ship_model.main([str(source), str(source / "shipped")]) == 1  # inside the source: refused
    assert not (source / "shipped").exists()


def test_an_unchanged_earlier_ship_is_replaced_and_keeps_its_card(shipped, source, tmp_path, capsys):
    dest, changed = tmp_path / "again", tmp_path / "source"
    shutil.copytree(shipped, dest)
    shutil.copytree(source, changed)
    (changed / "unet" / "config.json").write_text((source / "unet" / "config.json").read_text() + "\n")
    assert ship_model.main([str(changed), str(dest), "--check-steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "max |fp32 − fp16|" in out and " MB" in out and "every network float32" in out
    check_digests(dest)
    assert (dest / "unet" / "config.json").read_text().endswith("\n\n")  # the new ship, not the old one
    assert (dest / "MODEL_CARD.md").read_text() == "# a tiny model\n"  # no --card this time: the earlier one stays


def test_the_default_model_is_the_64px_one_when_installed(shipped, monkeypatch, tmp_path):
    assert default_model() == next(f for f in t2i.models.DEFAULT_MODELS if t2i.models.is_pipeline_folder(f))
    monkeypatch.setattr(t2i.models, "DEFAULT_MODELS", (tmp_path / "absent", shipped))
    assert default_model() == shipped
    monkeypatch.setattr(t2i.models, "DEFAULT_MODELS", (tmp_path / "emoji64", tmp_path / "emoji"))
    with pytest.raises(FileNotFoundError, match="--model"):
        default_model()
