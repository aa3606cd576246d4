"""`t2i experiment --preset corpus-tiny`: both experiments end to end on a made-up corpus laid out like `t2i data
emoji-sets` (concepts, styles, names, captions, the split, held_out_words.json); held-out-word scoring on features
whose answer is known; the optional encoders."""

import json
import logging

import pytest
import torch
from PIL import Image, ImageDraw

from t2i.cli import main
from t2i.data.emoji_sets import held_out_words
from t2i.data.layout import Record
from t2i.evaluation.compare import concept_ranks
from t2i.experiments import recognition as rec

# codepoints → (name, shape, extra captions, split): four concepts trained on, two held out.
CONCEPTS = {
    "1F534": ("red circle", "ellipse", ["round"], "train"),
    "1F7E5": ("red square", "rectangle", ["box, block"], "train"),
    "1F53A": ("red triangle", "polygon", ["pointed"], "train"),
    "1F7E2": ("green disc", "ellipse", ["round, green"], "train"),
    "2B50": ("star", "star", ["twinkle, night"], "held_out"),
    "1F319": ("crescent moon", "moon", ["night, lunar"], "held_out"),
}
STYLES = {"warm": (220, 60, 40), "cool": (40, 90, 220)}
PER_STYLE = 13  # 2 held-out concepts × 2 styles × 13 = 52 held-out images: FID's floor is 50


def _draw(shape: str, colour, size: int, o: int) -> Image.Image:
    im = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(im)
    box = (o, o, size - 1 - o, size - 1 - o)
    if shape == "polygon":
        d.polygon([(size // 2, o), (size - 1 - o, size - 1 - o), (o, size - 1 - o)], fill=colour)
    elif shape == "star":
        c = size // 2
        d.polygon([(c, o), (c + 2, c - 2), (size - 1 - o, c), (c + 2, c + 2), (c, size - 1 - o), (c - 2, c + 2),
                   (o, c), (c - 2, c - 2)], fill=colour)
    elif shape == "moon":
        d.ellipse(box, fill=colour)
        d.ellipse((o + 3, o, size - 1 - o + 3, size - 1 - o), fill="white")
    else:
        getattr(d, shape)(box, fill=colour)
    return im


def _corpus(folder, size=16):
    """A made-up corpus with the metadata fields t2i data emoji-sets writes, and its held_out_words.json."""
    (folder / "images").mkdir(parents=True)
    rows, g = [], torch.Generator().manual_seed(0)
    for cps, (name, shape, extra, split) in CONCEPTS.items():
        for style, colour in STYLES.items():
            for _ in range(PER_STYLE):
                file_name = f"images/{len(rows):04d}.png"
                _draw(shape, colour, size, int(torch.randint(0, 3, (1,), generator=g))).save(folder / file_name)
                captions = [f"{name}, {style} style", name, *extra]
                rows.append({"file_name": file_name, "text": captions[0], "captions": captions, "codepoints": cps,
                             "name": name, "set": style, "style": f"{style} style", "family": cps, "split": split})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "held_out_words.json").write_text(json.dumps(held_out_words(rows), indent=1) + "\n")
    return folder


def _records(folder):
    return [Record(folder / r["file_name"], r["text"], {k: v for k, v in r.items() if k not in ("file_name", "text")})
            for r in map(json.loads, (folder / "metadata.jsonl").read_text().splitlines())]


def test_the_made_up_corpus_has_the_held_out_words_it_should(tmp_path):
    words = json.loads((_corpus(tmp_path / "c") / "held_out_words.json").read_text())
    # "star", "twinkle", "crescent", "moon", "lunar" occur only in held-out captions; "night" in both held-out
    # names; "style", "warm", "round" also occur in training captions, so they are no held-out words.
    assert words == {"crescent": ["crescent moon"], "lunar": ["crescent moon"], "moon": ["crescent moon"],
                     "night": ["crescent moon", "star"], "star": ["star"], "twinkle": ["star"]}


def test_held_out_word_prompts_target_the_concepts_of_their_names(tmp_path):
    folder = _corpus(tmp_path / "c")
    records = _records(folder)
    words = rec.unseen_words(rec.load_words(folder), records)
    prompts = {p.key: p for p in rec.word_prompts(words, records)}
    assert prompts["night"].text == "night" and prompts["night"].targets == ("1F319", "2B50")
    assert prompts["twinkle"].targets == ("2B50",)
    concepts = rec.concept_prompts(records)
    assert [(p.text, p.targets) for p in concepts] == [("crescent moon", ("1F319",)), ("star", ("2B50",))]
    # A list that does not match the data is refused: "round" occurs in training captions.
    with pytest.raises(ValueError, match="1 held-out words do not match the data \\(round"):
        rec.unseen_words({**words, "round": ["star"]}, records)


def test_held_out_word_scoring_on_features_whose_answer_is_known():
    # Four concepts, one bank image each, on the axes; the generated images' features are chosen.
    bank = torch.eye(4)
    concepts = ["A", "B", "C", "D"]
    prompts = [rec.RecognitionPrompt("w1", ("A",), "word", "w1"),  # drawn as A: top-1
               rec.RecognitionPrompt("w2", ("B", "C"), "word", "w2"),  # drawn nearest C, then B: top-1 (either)
               rec.RecognitionPrompt("w3", ("D",), "word", "w3"),  # drawn nearest A, D second: top-5 only
               rec.RecognitionPrompt("name", ("B",), "concept", "name")]  # drawn as C, B third: top-5 only
    queries = torch.tensor([[1.0, 0, 0, 0], [0, 0.5, 0.9, 0], [1.0, 0, 0, 0.5], [0.2, 0.1, 1.0, 0]])
    ranked = concept_ranks(queries, bank, concepts, k=5)
    assert ranked[2][:2] == ["A", "D"] and ranked[3][:3] == ["C", "A", "B"]
    scores = rec.score(ranked, prompts, n_concepts=4)
    assert scores["words"]["n"] == 3 and scores["words"]["top1"] == pytest.approx(2 / 3)
    assert scores["words"]["top5"] == 1.0
    assert scores["concepts"]["top1"] == 0.0 and scores["concepts"]["top5"] == 1.0
    assert scores["per_word_top5"] == {"w1": 1.0, "w2": 1.0, "w3": 1.0}
    # Chance with 4 concepts: one target, one guess 1/4; two targets 1/2; five guesses of four: certain.
    assert scores["words"]["chance_top1"] == pytest.approx((0.25 + 0.5 + 0.25) / 3)
    assert scores["concepts"]["chance_top5"] == 1.0
    assert rec.chance(3994, 1, 5) == pytest.approx(5 / 3994)


def test_an_optional_encoder_that_is_not_installed_is_left_out_with_a_note(monkeypatch, caplog, tmp_path):
    from t2i.experiments import encoder_ladder

    monkeypatch.setattr(encoder_ladder, "is_installed", lambda model: False)
    with caplog.at_level(logging.WARNING, logger="t2i.experiments"):
        present, missing = encoder_ladder.available_encoders({"mpnet": "mpnet", "mine": str(tmp_path)})
    assert present == {} and set(missing) == {"mpnet", "mine"}
    assert "not installed (make mpnet" in missing["mpnet"] and "text encoder mpnet left out" in caplog.text
    monkeypatch.setattr(encoder_ladder, "is_installed", lambda model: True)
    (tmp_path / "config.json").write_text("{}")
    assert encoder_ladder.available_encoders({"mpnet": "mpnet", "mine": str(tmp_path)}) == (
        {"mpnet": "mpnet", "mine": str(tmp_path)}, {})


def test_the_corpus_preset_fits_its_budget_and_names_mpnet():
    from t2i.experiments.presets import EXPERIMENT_PRESETS, OPTIONAL_ENCODERS, TRUNCATIONS, UNET_LADDERS

    cfg = EXPERIMENT_PRESETS["corpus"]()
    assert cfg.shared.data.size == cfg.shared.autoencoder.model.image_size == 32 and cfg.seeds == (0, 1)
    assert cfg.eval.split == "held_out" and cfg.recognition_images > 0 and cfg.headline_guidance in cfg.eval.guidance
    assert UNET_LADDERS["corpus"][0] == cfg.generator.model.block_out_channels  # from the recipe's U-Net up
    assert OPTIONAL_ENCODERS["corpus"] == {"mpnet": "mpnet"} and TRUNCATIONS["corpus"]


@pytest.fixture(scope="module")
def corpus_experiments(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus-experiments")
    data = _corpus(root / "corpus")
    common = ["--preset", "corpus-tiny", "--data", str(data), "--out", str(root / "out"), "--threads", "1"]
    assert main(["experiment", "text-encoders", *common]) == 0
    assert main(["experiment", "unet-sizes", *common]) == 0
    return root / "out", data


@pytest.mark.slow
def test_corpus_preset_end_to_end_scores_held_out_words_and_concepts(corpus_experiments):
    root, data = corpus_experiments
    for name, models in (("text-encoders", 4), ("unet-sizes", 4)):
        results = json.loads((root / name / "results.json").read_text())
        assert len(results["models"]) == models
        assert results["recognition"]["held_out_words"] == 6 and results["recognition"]["held_out_concepts"] == 2
        assert results["recognition"]["real_held_out_images_recognised"]["n"] == 52
        for model in results["models"]:
            assert [p["guidance"] for p in model["curve"]] == [1.0, 3.0]
            head = model["headline"]
            for key in ("words_top1", "words_top5", "concepts_top1", "concepts_top5"):
                assert 0 <= head[key]["mean"] <= 1, key
            assert head["words_top1"]["mean"] <= head["words_top5"]["mean"]
            assert set(model["held_out_words"]) == {"crescent", "lunar", "moon", "night", "star", "twinkle"}
            assert "compositional_exact" not in head  # no shapes classifier on a corpus
        for run in results["runs"]:  # evaluated on the held-out split only: its 52 images are the real ones
            assert run["n_real"] == 52
            setting = next(s for s in run["settings"] if s["guidance"] == 3.0)
            assert setting["recognition"]["words"]["n"] == 6 and setting["recognition"]["concepts"]["n"] == 2
        table = (root / name / "results.md").read_text()
        assert "held-out words top-5 ↑" in table and "Chance (top-1 / top-5): words" in table
        assert "shape, held-out synonyms" not in table and (root / name / "figure.png").is_file()
    # corpus-tiny scales the learning rate with the width: the (8, 16) U-Net at twice the recipe's (16, 32) rate, in
    # its own folder; the recipe's U-Net keeps its rate and is the text-encoder experiment's run.
    recipe_lr = json.loads((root / "text-encoders" / "runs" / "minilm-6l" / "seed-0" / "result.json").read_text())
    recipe_lr = recipe_lr["settings_key"]["generator"]["train"]["lr"]
    for run in json.loads((root / "unet-sizes" / "results.json").read_text())["runs"]:
        trained = run["settings_key"]["generator"]["train"]["lr"]
        assert run["lr"] == trained == recipe_lr * 16 / run["unet_channels"][0], run["name"]
        assert (f"-lr-{trained:g}" in run["run"]) == (trained != recipe_lr)
    te = json.loads((root / "text-encoders" / "experiment.json").read_text())
    assert [e["name"] for e in te["encoders"]] == ["scratch", "minilm-random", "minilm-1l", "minilm-6l"]
    assert {p["prompt"] for p in te["held_out"]["prompts"] if p["kind"] == "word"} >= {"twinkle", "night"}
    shared = json.loads((root / "shared" / "shared.json").read_text())
    assert shared["given"]["data"] == str(data)
    # The autoencoder and the CLIP trained on the training split only.
    for part in ("autoencoder", "evaluators/clip"):
        assert json.loads((root / "shared" / part / "t2i_component.json").read_text())["data_split"] == "train"


def test_a_corpus_of_another_size_is_refused_before_anything_trains(tmp_path, capsys):
    data = _corpus(tmp_path / "corpus", size=24)
    out = tmp_path / "out"
    assert main(["experiment", "unet-sizes", "--preset", "corpus-tiny", "--data", str(data), "--out", str(out)]) == 1
    assert "holds 24-px images; the generators here make 16-px images" in capsys.readouterr().err
    assert not (out / "shared" / "autoencoder").exists()
