"""The emoji model shipped inside t2i: it loads and generates in the default install, with no training and no
download, and its model card's numbers come from the command this file runs on a small subset."""

import json
import re

import numpy as np
import pytest

import t2i
from t2i.models import EMOJI, default_model

from references import numpy_clip_score, scipy_fid  # tests/references.py

WEIGHT_BUDGET = 25e6  # bytes of weights the shipped folder may hold (issue 9)


@pytest.fixture(scope="module")
def shipped():
    return t2i.load()


def test_the_shipped_folder_is_small_safe_and_self_describing():
    assert default_model() == EMOJI
    files = [f for f in EMOJI.rglob("*") if f.is_file()]
    weights = [f for f in files if f.suffix == ".safetensors"]
    assert {f.parent.name for f in weights} == {"unet", "vae"}  # MiniLM is named, not copied
    assert not [f for f in files if f.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]
    assert sum(f.stat().st_size for f in weights) <= WEIGHT_BUDGET
    info = json.loads((EMOJI / "t2i.json").read_text())
    assert info["components"]["text_encoder"]["source"] == "minilm"
    assert info["components"]["text_encoder"]["copied"] is False
    generator = info["components"]["generator"]
    assert generator["data_split"] == "train" and generator["captions_per_image"].startswith("all")
    # The card names the data the weights were trained on (its fingerprint), the font file and its licence.
    card = (EMOJI / "MODEL_CARD.md").read_text()
    assert generator["data_fingerprint"] in card and "SIL Open Font License" in card
    assert "--split-rule v1" in card  # the split it was trained and evaluated on, which the default no longer is
    assert re.search(r"sha256 `?[0-9a-f]{64}", card)


def test_the_shipped_model_generates_with_no_arguments(shipped):
    images = shipped(["a red apple", "thumbs up", "a red apple"], seed=[0, 1, 0], steps=4)
    assert [im.size for im in images] == [(32, 32)] * 3
    pixels = [np.asarray(im, dtype=np.int16) for im in images]
    assert np.array_equal(pixels[0], pixels[2])  # image i depends only on seed i
    assert np.abs(pixels[0] - pixels[1]).max() > 30  # another prompt and seed: another image
    assert pixels[0].std() > 10  # not a flat colour


def test_t2i_generate_with_no_model_uses_the_shipped_one(tmp_path):
    from t2i.cli import main

    assert main(["generate", "a red apple", "--n", "1", "--steps", "2", "--seed", "0", "--out", str(tmp_path)]) == 0
    assert [p.name for p in tmp_path.glob("*apple*.png") if not p.name.startswith("grid")]


@pytest.mark.slow
@pytest.mark.system_package("fonts-noto-color-emoji")
def test_the_model_cards_evaluation_runs_on_a_small_subset(shipped, tmp_path):
    """The model card's numbers come from `t2i eval MODEL --split held_out` against the emoji data with an in-domain
    CLIP trained by `t2i train clip` on the training split. Here the same commands on the first 800 emoji (about
    60 held out), a tiny CLIP and 4 sampling steps: FID and CLIP scores equal the plain formulas on the same features."""
    from t2i.cli import main
    from t2i.data import find_emoji_font

    try:
        find_emoji_font()
    except ValueError as e:
        pytest.skip(str(e))
    data, clip, out = tmp_path / "data", tmp_path / "clip", tmp_path / "eval"
    # The split rule the shipped model was trained on (v1): with the default (v2), some "held-out" rows
    # would be emoji the model trained on, and the numbers would flatter it.
    assert main(["data", "emoji", "--out", str(data), "--size", "32", "--limit", "800", "--split-rule", "v1"]) == 0
    assert main(["train", "clip", "--data", str(data), "--split", "train", "--out", str(clip), "--preset", "tiny",
                 "--steps", "20", "--batch-size", "32"]) == 0
    assert main(["eval", str(EMOJI), "--data", str(data), "--split", "held_out", "--n", "50", "--n-real", "50",
                 "--clip", str(clip), "--steps", "4", "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "held_out" and metrics["n"] == metrics["n_real"] == 50
    (setting,) = metrics["settings"]
    # Even 20 steps of CLIP training tell real emoji's own names from shuffled ones.
    assert metrics["real"]["clip_score"] > metrics["real"]["clip_score_shuffled"]
    assert (out / "report.html").is_file()
    # The card's numbers against plain formulas on features computed here: the 50 held-out emoji of the seeded
    # evaluation subset, and the model's 50 images for their names generated again in this process.
    from t2i.data import scan_folder
    from t2i.images import load_image
    from t2i.evaluation.clip import ClipExtractor
    from t2i.evaluation.reference import evaluation_subset

    extractor = ClipExtractor.from_folder(clip)
    assert metrics["fid_extractor"] == extractor.name
    records = evaluation_subset(scan_folder(data, verify=False, split="held_out")[0], 50)
    real = extractor([load_image(r.path, 32) for r in records])
    real_text = extractor.text_features([r.caption for r in records])
    assert metrics["real"]["clip_score"] == pytest.approx(numpy_clip_score(real, real_text), abs=1e-4)
    images = shipped([r.caption for r in records], seed=list(range(50)), steps=4)
    fake = extractor(images)
    # The CLI's process makes the same images (the same seeds in one batch of 50): the numbers agree to float error.
    assert setting["fid"] == pytest.approx(scipy_fid(real.double().numpy(), fake.double().numpy()), rel=1e-5)
    assert setting["clip_score"] == pytest.approx(numpy_clip_score(fake, real_text), abs=1e-3)
