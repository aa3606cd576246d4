"""Held-out splits and several captions per image: what training reads, on real folders and real training."""

import json

import pytest
import torch
from PIL import Image

from t2i.data import dataset_fingerprint, scan_folder, write_layout
from t2i.data.sources import open_source
from t2i.text.conditioning import pick_captions

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "cyan", "white"]


def _split_folder(tmp_path, *, n=24, held_every=4):
    """An imagefolder whose every `held_every`-th row is "held_out" and whose held-out image files are then
    deleted: anything that reads a held-out row meets a missing file, which scans count and report."""
    items = []
    for i in range(n):
        colour = COLOURS[i % len(COLOURS)]
        split = "held_out" if i % held_every == 0 else "train"
        items.append((Image.new("RGB", (16, 16), colour), f"a {colour} square {i}",
                      {"split": split, "captions": [f"a {colour} square {i}", f"{colour} {i}"]}))
    folder = write_layout(tmp_path / "data", items, {"source": "test"})
    held = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    held = [row for row in held if row["split"] == "held_out"]
    for row in held:
        (folder / row["file_name"]).unlink()
    return folder, n - len(held), {row["text"] for row in held}


def test_sources_read_only_their_split(tmp_path):
    folder, n_train, held_captions = _split_folder(tmp_path)
    source = open_source(folder, split="train")
    assert len(source) == n_train and source.report.total == n_train and not source.report.n_skipped
    assert not held_captions & set(source.captions)
    assert source.caption_choices[0] == [source.captions[0], source.captions[0].replace("a ", "").replace(" square", "")]
    assert source.fingerprint() == dataset_fingerprint(folder, "train") != dataset_fingerprint(folder)
    with pytest.raises(ValueError, match=f"none of the {len(held_captions)} images .* could be read"):
        scan_folder(folder, split="held_out")  # the held-out rows, and only they
    # Without the filter the missing held-out files are met: 25 % of the rows, over the 10 % limit.
    with pytest.raises(ValueError, match="could not be read"):
        open_source(folder, split=None)


def test_a_folder_without_split_fields_is_all_train(tmp_path):
    items = [(Image.new("RGB", (8, 8), c), c, {}) for c in COLOURS[:3]]
    folder = write_layout(tmp_path / "d", items, {"source": "test"})
    assert len(open_source(folder, split="train")) == 3
    assert dataset_fingerprint(folder, "train") == dataset_fingerprint(folder)
    with pytest.raises(ValueError, match="has no images in split 'held_out'"):
        open_source(folder, split="held_out")


def test_training_never_reads_held_out_rows(tmp_path):
    """The CLI's default --split train: both trainings run on a folder whose held-out files do not exist,
    and report exactly the training rows; --split all meets the missing files and refuses."""
    from t2i.cli import main

    folder, n_train, held_captions = _split_folder(tmp_path)
    ae, gen = tmp_path / "ae", tmp_path / "gen"
    main(["train", "autoencoder", "--data", str(folder), "--out", str(ae), "--preset", "tiny", "--size", "16",
          "--steps", "2", "--batch-size", "4"])
    main(["train", "generator", "--data", str(folder), "--autoencoder", str(ae), "--out", str(gen), "--preset", "tiny",
          "--steps", "2", "--batch-size", "4", "--max-length", "8"])
    for component in (ae, gen):
        info = json.loads((component / "t2i_component.json").read_text())
        assert info["data_report"] == f"kept {n_train} of {n_train} images" and info["data_split"] == "train"
        assert info["data_fingerprint"] == dataset_fingerprint(folder, "train")
    # The text cache holds every caption of every training image (two each) and no held-out caption.
    gen_info = json.loads((gen / "t2i_component.json").read_text())
    assert gen_info["captions_per_image"].startswith("all")
    (cache,) = (gen / "cache").glob("text-*")
    assert json.loads((cache / "index.json").read_text())["rows"] == 2 * n_train
    assert main(["train", "autoencoder", "--data", str(folder), "--out", str(tmp_path / "ae2"), "--preset", "tiny",
                 "--size", "16", "--steps", "1", "--batch-size", "4", "--split", "all"]) == 1


def test_pick_captions_is_uniform_over_each_images_own_captions():
    index = torch.tensor([[0, 1, 2], [3, -1, -1], [4, 5, -1]]).repeat(2000, 1)  # (6000, 3)
    picked = pick_captions(index, torch.Generator().manual_seed(0))
    assert set(picked[0::3].tolist()) == {0, 1, 2} and set(picked[1::3].tolist()) == {3}
    assert set(picked[2::3].tolist()) == {4, 5}
    counts = torch.bincount(picked[0::3], minlength=3).float() / 2000
    assert torch.allclose(counts, torch.full((3,), 1 / 3), atol=0.04)  # 2000 draws: std of a share ≈ 0.011
    again = pick_captions(index, torch.Generator().manual_seed(0))
    assert torch.equal(picked, again)
    with pytest.raises(ValueError, match="an image has no caption"):
        pick_captions(torch.tensor([[-1, -1]]), torch.Generator())
