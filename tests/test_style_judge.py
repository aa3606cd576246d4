"""The pixel style judge of `t2i compare` (t2i.evaluation.style): it learns how a set draws, generalises to
shapes it never saw, refuses what it cannot judge, and is trained once per corpus and setting (cached)."""

import pytest
import torch
from PIL import Image, ImageDraw

from t2i.evaluation import style
from t2i.evaluation.style import PixelStyleClassifier, StyleNetConfig, as_pixels, trained_style_classifier

SHAPES = ("ellipse", "rectangle")


def _drawn(shape: str, how: str, g: torch.Generator, size: int = 32) -> Image.Image:
    """One shape in a random colour, drawn "filled" or "outlined" (a black 3-px outline on white): the style
    is how it is drawn, not its colour or its shape."""
    im = Image.new("RGB", (size, size), "white")
    colour = tuple(int(c) for c in torch.randint(0, 256, (3,), generator=g))
    o = int(torch.randint(3, 9, (1,), generator=g))
    box = (o, o, size - o, size - o)
    kwargs = {"fill": colour} if how == "filled" else {"outline": (0, 0, 0), "width": 3}
    if shape == "polygon":
        ImageDraw.Draw(im).polygon([(size // 2, o), (size - o, size - o), (o, size - o)], **kwargs)
    else:
        getattr(ImageDraw.Draw(im), shape)(box, **kwargs)
    return im


def _set(shapes, n, seed):
    g = torch.Generator().manual_seed(seed)
    images, labels = [], []
    for shape in shapes:
        for how in ("filled", "outlined"):
            for _ in range(n):
                images.append(_drawn(shape, how, g))
                labels.append(how)
    return images, labels


CFG = StyleNetConfig(epochs=12, batch_size=16, width=8)


def test_the_judge_learns_how_a_set_draws_and_reads_it_on_unseen_shapes():
    images, labels = _set(SHAPES, 16, seed=0)
    judge = PixelStyleClassifier.fit(as_pixels(images), labels, CFG, progress=False)
    assert judge.labels == ["filled", "outlined"]
    unseen, wanted = _set(("polygon",), 16, seed=1)  # a shape it never saw, in both styles
    right = sum(p == w for p, w in zip(judge.predict(unseen), wanted)) / len(wanted)
    assert right >= 0.9
    # The same images with shuffled labels: nothing to learn that carries to new images.
    g = torch.Generator().manual_seed(2)
    shuffled = [labels[i] for i in torch.randperm(len(labels), generator=g).tolist()]
    blind = PixelStyleClassifier.fit(as_pixels(images), shuffled, CFG, progress=False)
    assert sum(p == w for p, w in zip(blind.predict(unseen), wanted)) / len(wanted) < right


def test_the_judge_refuses_one_style_mismatched_labels_and_images_of_another_size():
    images, labels = _set(SHAPES, 2, seed=0)
    with pytest.raises(ValueError, match="at least two styles"):
        PixelStyleClassifier.fit(as_pixels(images), ["filled"] * len(images), CFG, progress=False)
    with pytest.raises(ValueError, match="8 images for 7 labels"):
        PixelStyleClassifier.fit(as_pixels(images), labels[:7], CFG, progress=False)
    judge = PixelStyleClassifier.fit(as_pixels(images), labels, StyleNetConfig(epochs=1, width=8), progress=False)
    with pytest.raises(ValueError, match="reads 32-px images, got 64 px"):
        judge.predict([im.resize((64, 64)) for im in images])


def test_the_judge_is_trained_once_per_corpus_and_setting(tmp_path, monkeypatch):
    images, labels = _set(SHAPES, 4, seed=0)
    loads = []

    def load_pixels():
        loads.append(1)
        return as_pixels(images)

    def judge(fingerprint="abc", cfg=StyleNetConfig(epochs=2, batch_size=8, width=8)):
        return trained_style_classifier(load_pixels, labels, image_size=32, fingerprint=fingerprint, cfg=cfg,
                                        cache_dir=tmp_path)

    first = judge()
    [path] = (tmp_path / "style").glob("*.safetensors")
    trained = []
    real_fit = PixelStyleClassifier.fit.__func__
    monkeypatch.setattr(PixelStyleClassifier, "fit", classmethod(lambda cls, *a, **k: trained.append(1) or
                                                                 real_fit(cls, *a, **k)))
    again = judge()
    assert trained == [] and loads == [1] and again.labels == first.labels  # neither trained nor images loaded
    probe = as_pixels(_set(("polygon",), 4, seed=3)[0])
    assert torch.equal(again.net(style._scaled(probe)), first.net(style._scaled(probe)))  # the same weights
    # Another setting or another corpus trains a judge of its own; a damaged entry is retrained, not trusted.
    judge(cfg=StyleNetConfig(epochs=3, batch_size=8, width=8))
    judge(fingerprint="other")
    assert trained == [1, 1]
    path.write_bytes(b"not safetensors")
    judge()
    assert trained == [1, 1, 1] and loads == [1, 1, 1, 1]
