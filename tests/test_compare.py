"""`t2i compare`: concept recognition, the style classifier, and the side-by-side run on a made-up corpus."""

import json

import pytest
import torch
from PIL import Image, ImageDraw

from t2i.cli import main
from t2i.evaluation.compare import (StyleClassifier, accuracy, concept_ranks, enlarge, per_group, reference_rows,
                                    top_k_rate)


def test_concepts_rank_by_their_nearest_image_each_counted_once():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    concepts = ["a", "a", "b", "c"]
    ranked = concept_ranks(torch.tensor([[1.0, 0.05]]), bank, concepts, k=3)
    assert ranked == [["a", "b", "c"]]  # two images of "a" nearest, but "a" once; then b (90°), then c (180°)


def test_a_real_image_left_out_of_its_own_ranking_must_match_another_image():
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.1, 1.0]])
    concepts = ["lonely", "pair", "pair"]
    assert concept_ranks(bank[:1], bank, concepts, k=1) == [["lonely"]]
    assert concept_ranks(bank[:1], bank, concepts, exclude=[0], k=1) == [["pair"]]  # its only image is itself
    assert concept_ranks(bank[1:2], bank, concepts, exclude=[1], k=1) == [["pair"]]  # the other image of its pair


def test_top_k_rate_counts_the_wanted_concept_among_the_first_k():
    ranked = [["a", "b", "c"], ["b", "a", "c"], ["c", "b", "a"]]
    assert top_k_rate(ranked, ["a", "a", "a"], 1) == pytest.approx(1 / 3)
    assert top_k_rate(ranked, ["a", "a", "a"], 2) == pytest.approx(2 / 3)
    assert top_k_rate(ranked, ["a", "a", "a"], 3) == 1.0
    with pytest.raises(ValueError, match="2 rankings for 3"):
        top_k_rate(ranked[:2], ["a", "a", "a"], 1)


def test_style_classifier_learns_separable_styles_and_not_shuffled_ones():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 16, generator=g)
    labels = [s for s in ("noto", "twemoji", "fluent") for _ in range(40)]
    features = centres.repeat_interleave(40, 0) + 0.3 * torch.randn(120, 16, generator=g)
    clf = StyleClassifier.fit(features, labels, steps=200)
    assert clf.labels == ["fluent", "noto", "twemoji"]
    test = centres.repeat_interleave(10, 0) + 0.3 * torch.randn(30, 16, generator=g)
    assert accuracy(clf.predict(test), [s for s in ("noto", "twemoji", "fluent") for _ in range(10)]) > 0.95
    shuffled = [labels[i] for i in torch.randperm(120, generator=g).tolist()]
    fit_on_noise = StyleClassifier.fit(features, shuffled, steps=200)
    assert accuracy(fit_on_noise.predict(test), [s for s in ("noto", "twemoji", "fluent") for _ in range(10)]) < 0.8
    with pytest.raises(ValueError, match="at least two styles"):
        StyleClassifier.fit(features[:5], ["noto"] * 5)


def test_per_group_and_enlarge():
    assert per_group([True, False, True, True], ["x", "x", "y", "y"]) == {"x": 0.5, "y": 1.0}
    small = Image.new("RGB", (32, 32), (255, 0, 0))
    big = Image.new("RGB", (64, 64), (0, 0, 255))
    out = enlarge([small, big], 64)
    assert [im.size for im in out] == [(64, 64), (64, 64)]
    assert out[1] is big and out[0].getpixel((40, 40)) == (255, 0, 0)


SHAPES = {"1F534": "ellipse", "1F7E5": "rectangle", "1F53A": "polygon", "2B50": "star"}
STYLES = {"warm": (220, 60, 40), "cool": (40, 90, 220)}


def _corpus(folder, size=64):
    """A made-up emoji-sets-like corpus: 4 concepts (shapes) × 2 styles (colours) × 8 jittered images;
    the star is the held-out concept."""
    (folder / "images").mkdir(parents=True)
    rows, g = [], torch.Generator().manual_seed(0)
    for cps, shape in SHAPES.items():
        for style, colour in STYLES.items():
            for j in range(8):
                im = Image.new("RGB", (size, size), "white")
                d = ImageDraw.Draw(im)
                o = int(torch.randint(4, 12, (1,), generator=g))
                box = (o, o, size - o, size - o)
                if shape == "polygon":
                    d.polygon([(size // 2, o), (size - o, size - o), (o, size - o)], fill=colour)
                elif shape == "star":
                    d.polygon([(size // 2, o), (size // 2 + 6, size // 2), (size - o, size // 2), (size // 2 + 6,
                               size // 2 + 6), (size // 2, size - o), (size // 2 - 6, size // 2 + 6), (o, size // 2),
                               (size // 2 - 6, size // 2)], fill=colour)
                else:
                    getattr(d, shape)(box, fill=colour)
                name = f"images/{len(rows):04d}.png"
                im.save(folder / name)
                caption = f"{shape}, {style} style"
                rows.append({"file_name": name, "text": caption, "captions": [caption, shape], "codepoints": cps,
                             "set": style, "split": "held_out" if shape == "star" else "train"})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_seen_fid_reference_rows_are_training_rows_that_no_judged_prompt_owns():
    mask = torch.tensor([True, False, True, True, True, False, True, True])
    rows = reference_rows(mask, judged=[2, 6], n=3, seed=0).tolist()
    assert len(rows) == 3 == len(set(rows)) and set(rows) <= {0, 3, 4, 7}
    assert reference_rows(mask, judged=[2, 6], n=3, seed=0).tolist() == rows  # seeded
    assert sorted(reference_rows(mask, judged=[2, 6], n=10, seed=1).tolist()) == [0, 3, 4, 7]  # fewer than asked


def test_compare_judges_a_smaller_model_enlarged_beside_the_real_ceilings(pipeline_dir, tmp_path):
    data = _corpus(tmp_path / "corpus")
    clip = tmp_path / "clip"
    assert main(["train", "clip", "--data", str(data), "--out", str(clip), "--preset", "tiny", "--size", "64",
                 "--steps", "30", "--batch-size", "16"]) == 0
    out = tmp_path / "compare"
    assert main(["compare", str(pipeline_dir), "--data", str(data), "--clip", str(clip), "--out", str(out),
                 "--n", "16", "--n-seen", "12", "--steps", "4", "--style-epochs", "30",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    result = json.loads((out / "compare.json").read_text())
    assert result["corpus_images"] == 64 and result["held_out_images"] == 16 and result["concepts"] == 4
    assert result["styles"] == ["cool", "warm"]
    model = result["models"][str(pipeline_dir)]
    small = model["image_size"]
    assert small < 64 and model["enlarged_from"] == small  # the quick demo draws small images; the corpus is 64 px
    for part in (model["held_out"], model["seen"], result["real"]["held_out"], result["real"]["seen"]):
        assert 0 <= part["top1"] <= part["top5"] <= 1 and 0 <= part["style_accuracy"] <= 1
    assert model["held_out"]["n"] == 16 and model["seen"]["n"] == 12
    assert model["held_out"]["fid"] > 0 and model["held_out"]["kid"] == model["held_out"]["kid"]
    # Seen FID: against as many training images as the held-out split has (16), none a judged prompt's own
    assert result["seen_reference_images"] == 16 and model["seen"]["fid"] > 0 and result["real"]["seen"]["fid"] > 0
    assert "fid" not in result["real"]["held_out"]  # its real images are among the reference: no floor to report
    # Four concepts: every real image finds its concept among the top 4 of 4, and the top 5 is all of them.
    assert result["real"]["seen"]["top5"] == 1.0
    # Colour is the style here: the pixel judge, trained on the 48 training images, reads the style of the held-out
    # concept's 16 real images (a shape it never saw) far above chance (0.5).
    judge = result["style_judge"]
    assert judge["kind"] == "pixels" and judge["config"]["epochs"] == 30
    assert judge["held_out_real_accuracy"] >= 0.9 and set(judge["held_out_real_accuracy_per_set"]) == {"cool", "warm"}
    assert result["real"]["held_out"]["style_accuracy"] >= 0.9
    assert (tmp_path / "cache" / "style").is_dir()  # trained once, kept for the next comparison of this corpus
    table = (out / "compare.md").read_text()
    assert f"names the set of {judge['held_out_real_accuracy']:.1%} of the held-out concepts' real images" in table
    assert f"| {pipeline_dir.name} (" in table and f"{small} → 64" in table and "real images (ceiling)" in table
    assert f"{pipeline_dir.name} {model['seen']['fid']:.2f}; real images {result['real']['seen']['fid']:.2f}" in table
    assert result["speed"]["bf16"] is None and model["bf16"] is False and ", bf16)" not in table
    # The speed flags apply to every model and are recorded: the same judging with the U-Net in bfloat16 (and the
    # earlier style judge, a linear classifier on the CLIP's features: even a CLIP trained 30 steps sees colour).
    assert main(["compare", str(pipeline_dir), "--data", str(data), "--clip", str(clip), "--out", str(out / "bf16"),
                 "--n", "4", "--n-seen", "4", "--steps", "2", "--bf16", "--style-judge", "clip",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    again = json.loads((out / "bf16" / "compare.json").read_text())
    assert again["speed"]["bf16"] is True and again["models"][str(pipeline_dir)]["bf16"] is True
    assert again["style_judge"]["kind"] == "clip" and again["style_judge"]["held_out_real_accuracy"] >= 0.7
    assert ", bf16) |" in (out / "bf16" / "compare.md").read_text()


@pytest.mark.parametrize("change, message", [({"split": "train"}, "0 held-out and 64 training rows"),
                                              ({"codepoints": None}, "no 'codepoints' field")])
def test_compare_refuses_data_without_concepts_or_a_held_out_split(pipeline_dir, tmp_path, capsys, change, message):
    data = _corpus(tmp_path / "corpus")
    rows = [json.loads(line) for line in (data / "metadata.jsonl").read_text().splitlines()]
    (data / "metadata.jsonl").write_text("".join(json.dumps({k: v for k, v in {**r, **change}.items() if v is not None})
                                                 + "\n" for r in rows))
    out = tmp_path / "compare"
    assert main(["compare", str(pipeline_dir), "--data", str(data), "--clip", str(tmp_path), "--out", str(out)]) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_compare_refuses_an_unknown_style_judge_before_reading_anything(tmp_path):
    from t2i.evaluation.compare import CompareConfig, compare_pipelines

    with pytest.raises(ValueError, match="unknown style judge 'vgg': one of pixels, clip"):
        compare_pipelines([], tmp_path / "no-such-corpus", tmp_path / "no-clip", tmp_path / "out",
                          CompareConfig(style_judge="vgg"))
    assert not (tmp_path / "out").exists()
