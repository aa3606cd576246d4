"""The 64-px model shipped inside t2i: the default of `t2i generate`, `t2i serve` and `t2i.load()`. It loads from
the installed package with no training and no download, its weights are the ones its SHA256SUMS records, and its
model card's comparison comes from the command the card names."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

import t2i
import t2i.models
from t2i.data.emoji_sets import DEFAULT_SETS, EMOJI_SETS
from t2i.evaluation.compare import markdown_table
from t2i.models import EMOJI64, check_digests, default_model

from references import scipy_fid  # tests/references.py

WEIGHT_BUDGET = 25e6  # bytes of weights the shipped folder may hold
COMPARISON = Path(__file__).parents[1] / "docs" / "emoji64" / "compare.json"  # what the card's table is made of


@pytest.fixture(scope="module")
def shipped():
    return t2i.load()


def test_the_64px_model_is_the_default_and_the_32px_model_has_left_the_package():
    assert default_model() == EMOJI64
    assert not (Path(t2i.models.__file__).parent / "emoji").exists()


def test_the_shipped_folder_is_small_float16_and_matches_its_digests():
    check_digests(EMOJI64)  # every file as recorded, none missing, none unlisted
    files = [f for f in EMOJI64.rglob("*") if f.is_file()]
    weights = [f for f in files if f.suffix == ".safetensors"]
    assert {f.parent.name for f in weights} == {"base", "upsampler_1"}  # MiniLM is named, not copied
    assert not [f for f in files if f.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]
    assert sum(f.stat().st_size for f in weights) <= WEIGHT_BUDGET
    for f in weights:
        with safe_open(f, "pt") as st:
            dtypes = {str(st.get_slice(k).get_dtype()) for k in st.keys()}
        assert dtypes <= {"F16", "I64"}, (f, dtypes)
    info = json.loads((EMOJI64 / "t2i.json").read_text())
    assert info["components"]["text_encoder"]["source"] == "minilm"
    assert info["components"]["text_encoder"]["copied"] is False
    assert info["variant"] == "cascade" and info["image_size"] == 64
    # Both networks trained on the training split only: the held-out concepts of the card's table stayed unseen.
    assert info["components"]["base"]["data_split"] == "train"
    assert [u["data_split"] for u in info["components"]["upsamplers"]] == ["train"]


def test_the_card_names_data_licences_command_and_its_table_is_the_measured_one():
    card = (EMOJI64 / "MODEL_CARD.md").read_text()
    info = json.loads((EMOJI64 / "t2i.json").read_text())
    assert info["components"]["base"]["data_fingerprint"] in card
    for name in DEFAULT_SETS:  # per-set attribution and licence
        assert EMOJI_SETS[name].attribution in card and EMOJI_SETS[name].license in card
    comparison = json.loads(COMPARISON.read_text())
    assert comparison["command"].startswith("t2i compare ") and comparison["command"] in card
    assert markdown_table(comparison).strip() in card  # the card's table, character for character
    assert "bash recipes/emoji64.sh" in card


def test_the_recipe_defaults_are_the_shipped_model_s_commands():
    """`bash recipes/emoji64.sh` with no overrides trains and composes what ships: its defaults are the flags of
    the commands the shipped t2i.json records (a changed default without a new ship, or the reverse, fails)."""
    recipe = (Path(__file__).parents[1] / "recipes" / "emoji64.sh").read_text()
    default = dict(re.findall(r"^([A-Z_]+)=\$\{\1:-([^}]*)\}", recipe, flags=re.MULTILINE))
    info = json.loads((EMOJI64 / "t2i.json").read_text())
    base, upsampler = info["components"]["base"]["command"], info["components"]["upsamplers"][0]["command"]
    for flag, name in [("--preset", "BASE_PRESET"), ("--steps", "BASE_STEPS"), ("--lr", "BASE_LR"),
                       ("--mixed-precision", "BASE_PRECISION"), ("--random-flip", "BASE_FLIP"), ("--size", "LOW")]:
        assert f" {flag} {default[name]} " in base, (flag, default[name], base)
    for flag, name in [("--preset", "UP_PRESET"), ("--steps", "UP_STEPS"), ("--low-size", "LOW"), ("--size", "SIZE")]:
        assert f" {flag} {default[name]} " in upsampler, (flag, default[name], upsampler)
    assert info["defaults"]["steps"] == int(default["BASE_SAMPLE_STEPS"])
    assert info["defaults"]["upsampler_steps"] == int(default["UP_SAMPLE_STEPS"])
    assert info["defaults"]["guidance"] == float(default["GUIDANCE"])


def test_the_shipped_model_draws_64px_images(shipped):
    images = shipped(["grinning face, twemoji style", "red apple", "grinning face, twemoji style"], seed=[0, 1, 0],
                     steps=4)
    assert [im.size for im in images] == [(64, 64)] * 3
    pixels = [np.asarray(im, dtype=np.int16) for im in images]
    assert np.array_equal(pixels[0], pixels[2])  # image i depends only on seed i
    assert np.abs(pixels[0] - pixels[1]).max() > 30  # another prompt and seed: another image
    assert pixels[0].std() > 10  # not a flat colour
    for network in (shipped.base, *shipped.upsamplers, shipped.text_encoder.model):  # float16 files, float32 here
        assert {str(p.dtype) for p in network.parameters()} == {"torch.float32"}


def test_t2i_generate_with_no_model_uses_the_shipped_one(tmp_path):
    from PIL import Image

    from t2i.cli import main

    assert main(["generate", "red apple", "--n", "1", "--steps", "2", "--seed", "0", "--out", str(tmp_path)]) == 0
    (png,) = [p for p in tmp_path.glob("*apple*.png") if not p.name.startswith("grid")]
    assert Image.open(png).size == (64, 64)


@pytest.mark.slow
@pytest.mark.system_package("npm, and the emoji set packages `make emoji-sets` fetches with it")
def test_the_cards_comparison_command_runs_on_a_small_corpus(shipped, tmp_path):
    """The card's table comes from `t2i compare` on the corpus with an in-domain CLIP. Here the same commands on
    a small corpus (30 images per set), a tiny CLIP and 4 sampling steps: the FID equals the plain formula on
    features computed here."""
    from t2i.cli import main
    from t2i.data import scan_folder
    from t2i.data.emoji_sets import EmojiSetsConfig, write_emoji_sets
    from t2i.evaluation.clip import ClipExtractor
    from t2i.evaluation.reference import evaluation_subset
    from t2i.images import load_image

    try:
        data = write_emoji_sets(tmp_path / "data", EmojiSetsConfig(size=64, limit=30), download=False)
    except (FileNotFoundError, ValueError) as e:
        pytest.skip(f"emoji set packages not fetched ({e}): run make emoji-sets")
    clip, out = tmp_path / "clip", tmp_path / "compare"
    assert main(["train", "clip", "--data", str(data), "--split", "train", "--out", str(clip), "--preset", "tiny",
                 "--size", "64", "--steps", "20", "--batch-size", "32"]) == 0
    assert main(["compare", str(EMOJI64), "--data", str(data), "--clip", str(clip), "--out", str(out), "--n", "16",
                 "--n-seen", "8", "--steps", "4", "--cache-dir", str(tmp_path / "cache")]) == 0
    result = json.loads((out / "compare.json").read_text())
    measured = result["models"][str(EMOJI64)]["held_out"]
    extractor = ClipExtractor.from_folder(clip)
    records = scan_folder(data, verify=False)[0]
    held = [r for r in records if r.extra.get("split") == "held_out"]
    real = extractor([load_image(r.path, 64) for r in held])
    prompts = evaluation_subset(held, 16)
    fake = extractor(shipped([r.caption for r in prompts], seed=list(range(16)), steps=4))
    assert measured["fid"] == pytest.approx(scipy_fid(real.double().numpy(), fake.double().numpy()), rel=1e-4)
