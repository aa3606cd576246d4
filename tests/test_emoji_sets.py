"""`t2i data emoji-sets`: a tiny offline fixture laid out like the real npm packages (written here), and one build
from the real packages when `make emoji-sets` has fetched them (in CI it must have: the test fails there)."""

import json

import numpy as np
import pytest
from PIL import Image

from t2i.data import DataError, dataset_fingerprint, scan_folder
from t2i.data.emoji_sets import DEFAULT_SETS, EMOJI_SETS, EmojiSetsConfig, fetch_emoji_sets, write_emoji_sets
from t2i.data.families import family_key, family_split
from t2i.data.npm_packages import default_cache_dir, tarball_name
from t2i.data.svg import iconify_svg, render_svg

SUPERHERO = ["1f9b8", "1f9b8-200d-2640", "1f9b8-200d-2642", "1f9b8-1f3fd"]  # a held-out family (rule v2)
GESTURE = ["1f646", "1f646-200d-2642"]  # a training family
OTHERS = ["1f600", "1f44d", "1f44d-1f3fd", "1f34e"]  # grinning face, thumbs up (held out) + a tone, red apple
COLOURS = ["#d00000", "#00a000", "#0000d0", "#e0a000", "#a000a0", "#00a0a0", "#804000", "#606060", "#ff60a0", "#2080ff"]


def _names(hexcodes):
    import emoji

    out = {}
    for h in hexcodes:
        text = "".join(chr(int(x, 16)) for x in h.split("-"))
        data = emoji.EMOJI_DATA.get(text) or emoji.EMOJI_DATA.get(text + "\ufe0f") or \
            emoji.EMOJI_DATA["".join(c + ("\ufe0f" if c in "\u2640\u2642" else "") for c in text)]
        out[h] = data["en"].strip(":").lower().replace("_", "-")
    return out


def _write_package(folder, name, version, files):
    folder.mkdir(parents=True)
    (folder / "package.json").write_text(json.dumps({"name": name, "version": version}))
    for member, content in files.items():
        (folder / member).parent.mkdir(parents=True, exist_ok=True)
        (folder / member).write_text(json.dumps(content))


def _icon(colour, inset=4):
    """A filled circle on a 36-unit canvas with a transparent margin of `inset` units."""
    r = 18 - inset
    return {"body": f'<circle cx="18" cy="18" r="{r}" fill="{colour}"/>'}


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """node_modules/ with two Iconify sets (twemoji with chars.json, fluent named only by icon names) and the
    annotations, written like the published packages, plus the entries a build must skip and count."""
    root = tmp_path_factory.mktemp("npm")
    modules = root / "node_modules"
    hexcodes = SUPERHERO + GESTURE + OTHERS
    names = _names(hexcodes)
    icons = {names[h]: _icon(COLOURS[i % len(COLOURS)]) for i, h in enumerate(hexcodes)}
    bad = {"": _icon("#000000"), "my-own-drawing": _icon("#000000"), "old-name": {**_icon("#000000"), "hidden": True},
           "empty-drawing": {"body": "<g></g>"}, "bodyless": {"body": ""}, "no-such-emoji": _icon("#000000")}
    chars = {h: names[h] for h in hexcodes}
    # green apple and pear, drawn badly; a private-use extra of the set's own (not an emoji)
    chars.update({"1f34f": "empty-drawing", "1f350": "bodyless", "e000": "my-own-drawing"})
    for pkg, extra in (("@iconify-json/twemoji", {"chars.json": chars}), ("@iconify-json/fluent-emoji", {})):
        _write_package(modules / pkg, pkg, "0.0.1", {"icons.json": {"prefix": pkg, "width": 36, "height": 36,
                                                                    "icons": {**icons, **bad}},
                                                     "info.json": {"name": pkg}, **extra})
    tags = {"1F600": ["face", "grin"], "1F44D": ["thumb", "approve"], "1F34E": ["fruit", "apple"],
            "1F9B8": ["hero", "heroine", "superpower"], "1F646": ["gesture", "okay"]}
    data = []
    for base in ["1F600", "1F44D", "1F34E", "1F9B8", "1F646"]:
        label = names[base.lower()].replace("-", " ")
        skins = [{"label": f"{label}: medium skin tone", "hexcode": f"{base}-1F3FD"}]
        data.append({"label": label, "hexcode": base, "tags": tags[base], "group": 1, "subgroup": 0, "skins": skins})
    messages = {"groups": [{"order": 1, "message": "people & body"}], "subgroups": [{"order": 0, "message": "misc"}]}
    _write_package(modules / "emojibase-data", "emojibase-data", "0.0.1",
                   {"en/data.json": data, "en/messages.json": messages})
    return root


def _build(packages, out, **kw):
    cfg = EmojiSetsConfig(sets=("twemoji", "fluent"), size=32, max_failure_rate=0.5, **kw)
    return write_emoji_sets(out, cfg, source=packages, cache_dir=packages / "no-cache", download=False)


@pytest.fixture(scope="module")
def corpus(packages, tmp_path_factory):
    folder = _build(packages, tmp_path_factory.mktemp("c") / "corpus")
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    return folder, rows, json.loads((folder / "info.json").read_text())


def test_every_image_has_its_captions_style_and_licence(corpus):
    folder, rows, info = corpus
    n = len(SUPERHERO + GESTURE + OTHERS)
    assert info["images_per_set"] == {"twemoji": n, "fluent": n} and info["n"] == 2 * n == len(rows)
    for row in rows:
        s = EMOJI_SETS[row["set"]]
        assert row["text"] == row["captions"][0] == f"{row['name']}, {s.style}"
        assert row["name"] in row["captions"] and len(row["captions"]) >= 3
        assert (row["license"], row["attribution"], row["style"]) == (s.license, s.attribution, s.style)
        assert row["family"] == family_key(tuple(int(c, 16) for c in row["codepoints"].split()))
    thumbs = next(r for r in rows if r["codepoints"] == "1F44D 1F3FD" and r["set"] == "fluent")
    assert thumbs["captions"][:2] == ["thumbs up, medium skin tone, fluent color style", "thumbs up, medium skin tone"]
    assert "thumb, approve" in thumbs["captions"]  # CLDR keywords, inherited by the skin tone
    assert "thumbs up, medium skin tone, misc, people and body" in thumbs["captions"]  # subgroup, group
    base = next(r for r in rows if r["codepoints"] == "1F44D" and r["set"] == "fluent")
    assert "thumbsup" in base["captions"] and "thumbs up sign" in base["captions"]  # alias, Unicode name
    assert (thumbs["group"], thumbs["subgroup"]) == ("people and body", "misc")
    licences = (folder / "LICENSES.md").read_text()
    assert all(EMOJI_SETS[s].attribution in licences and EMOJI_SETS[s].license in licences for s in ("twemoji", "fluent"))
    # Skipped and counted, per set: no name, a name no emoji has, Iconify's hidden old names, a body that draws
    # nothing, no body, a private-use extra. (fluent has no chars.json: twemoji's names its icons.)
    reasons = ("no_name", "unmatched", "hidden", "render_failed", "no_body", "not_an_emoji")
    assert info["skipped"] == {f"{s}: {reason}": 1 for s in ("twemoji", "fluent") for reason in reasons}
    assert scan_folder(folder)[1].kept == len(rows)


def test_images_are_cropped_to_their_ink_and_composited_on_white(corpus):
    folder, rows, _ = corpus
    hexcodes = SUPERHERO + GESTURE + OTHERS
    for row in rows:
        with Image.open(folder / row["file_name"]) as im:
            assert im.mode == "RGB" and im.size == (32, 32)
            pixels = np.asarray(im).astype(int)
        assert (pixels[0, 0] == 255).all()  # transparent corners become white
        colour = COLOURS[hexcodes.index(row["codepoints"].lower().replace(" ", "-")) % len(COLOURS)]
        assert (pixels[16, 16] == [int(colour[i:i + 2], 16) for i in (1, 3, 5)]).all()  # the icon's own colour
        # Cropped to the drawing: the circle touches all four sides, whatever margin the SVG had.
        ink = np.abs(pixels - 255).max(axis=2) > 60
        assert ink[16, 0] and ink[16, 31] and ink[0, 16] and ink[31, 16]


def test_a_held_out_family_is_held_out_in_every_style_and_variant(corpus):
    folder, rows, info = corpus
    held = {r["family"] for r in rows if r["split"] == "held_out"}
    assert held == {"1F9B8", "1F44D"}  # superhero (with woman, man, a skin tone), thumbs up (with a tone)
    assert not [r for r in rows if r["split"] == "train" and r["family"] in held]
    assert {r["codepoints"] for r in rows if r["family"] == "1F9B8"} == {"1F9B8", "1F9B8 200D 2640", "1F9B8 200D 2642",
                                                                         "1F9B8 1F3FD"}
    assert all(family_split(tuple(int(c, 16) for c in r["codepoints"].split())) == r["split"] for r in rows)
    assert info["held_out_families"] == 2 and info["held_out_images"] == 2 * 6
    words = json.loads((folder / "held_out_words.json").read_text())
    assert {"superhero", "superpower", "thumb", "thumbs"} <= set(words) and "face" not in words
    training_text = " ".join(c for r in rows if r["split"] == "train" for c in r["captions"])
    assert not [w for w in words if w in training_text.split() or w in training_text.replace(",", " ").split()]
    assert words["superpower"] == ["superhero", "superhero, medium skin tone"]  # the fixture's keyword, and its tone's


def test_the_build_is_deterministic_and_a_second_run_is_a_cache_hit(corpus, packages, tmp_path, capsys):
    folder, _, info = corpus
    again = _build(packages, tmp_path / "again")
    assert dataset_fingerprint(again) == dataset_fingerprint(folder)
    assert (again / "metadata.jsonl").read_bytes() == (folder / "metadata.jsonl").read_bytes()
    before = (again / "metadata.jsonl").stat().st_mtime_ns
    capsys.readouterr()
    assert _build(packages, again) == again and "up to date" in capsys.readouterr().out
    assert (again / "metadata.jsonl").stat().st_mtime_ns == before
    with pytest.raises(DataError, match="is not empty"):  # other settings: refused, not overwritten
        _build(packages, again, limit=3)
    assert json.loads((again / "info.json").read_text())["build_key"] == info["build_key"]


def test_bad_input_says_what_to_do(packages, tmp_path):
    with pytest.raises(DataError, match="unknown emoji set.* bogus; known: noto, noto-v1, twemoji"):
        write_emoji_sets(tmp_path / "x", EmojiSetsConfig(sets=("twemoji", "bogus")), source=packages)
    with pytest.raises(DataError, match=r"@iconify-json/noto is not in .*: run `make emoji-sets`.* or pass --from DIR "
                                        r"holding iconify-json-noto-1\.2\.9\.tgz"):
        write_emoji_sets(tmp_path / "x", EmojiSetsConfig(sets=("noto",)), cache_dir=tmp_path / "empty", download=False)
    assert not (tmp_path / "x").exists()
    with pytest.raises(DataError, match="more than 5% of set twemoji failed to render"):  # 1 of 11 rendered: abort
        write_emoji_sets(tmp_path / "y", EmojiSetsConfig(sets=("twemoji",), max_failure_rate=0.05), source=packages,
                         download=False)
    assert not (tmp_path / "y").exists()


def test_the_cli_builds_from_a_folder(packages, tmp_path):
    from t2i.cli import main

    out = tmp_path / "cli"
    assert main(["data", "emoji-sets", "--from", str(packages), "--offline", "--sets", "twemoji", "--size", "16",
                 "--limit", "3", "--max-failure-rate", "0.5", "--out", str(out), "--cache-dir", str(tmp_path / "c")]) == 0
    info = json.loads((out / "info.json").read_text())
    # red apple, green apple (draws nothing), pear (no body, not counted by --limit), thumbs up
    assert info["n"] == 2 and info["skipped"]["twemoji: render_failed"] == 1
    assert main(["data", "emoji-sets", "--sets", "nope", "--out", str(tmp_path / "o")]) == 1


def test_svg_documents_keep_the_icons_box():
    svg = iconify_svg({"body": '<rect x="10" y="0" width="20" height="10" fill="#f00"/>', "left": 10, "width": 20,
                       "height": 10}, 36, 36)
    image = render_svg(svg, 40)
    assert image.size == (40, 20) and image.mode == "RGBA"
    assert np.asarray(image)[..., 3].min() == 255  # the viewBox starts at x = 10: the rect fills it exactly


@pytest.mark.system_package("npm, and the emoji set packages `make emoji-sets` fetches with it")
def test_the_real_packages_build():
    """From the packages `make emoji-sets` fetched (skipped when they are missing; a failure in CI, see conftest)."""
    cache = default_cache_dir()
    missing = [s for s in DEFAULT_SETS if not (cache / tarball_name(EMOJI_SETS[s].package, EMOJI_SETS[s].version)).is_file()]
    if missing:
        pytest.skip(f"emoji set packages not fetched ({', '.join(missing)} missing in {cache}): run make emoji-sets")
    assert len(fetch_emoji_sets(DEFAULT_SETS, download=False)) == len(DEFAULT_SETS) + 1
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        folder = write_emoji_sets(f"{tmp}/real", EmojiSetsConfig(size=32, limit=25), download=False)
        rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
        info = json.loads((folder / "info.json").read_text())
    assert info["images_per_set"] == {s: 25 for s in DEFAULT_SETS}
    assert not [s for s, n in info["skipped"].items() if s.endswith("render_failed")]
    keycap = [r for r in rows if r["codepoints"] == "0023 20E3"]  # the first emoji in code-point order
    assert {r["text"] for r in keycap} == {f"keycap #, {EMOJI_SETS[s].style}" for s in DEFAULT_SETS}
    assert all(r["group"] == "symbols" and len(r["captions"]) >= 4 for r in keycap)
    assert {r["license"] for r in rows} == {"Apache-2.0", "CC-BY-4.0", "MIT"}
