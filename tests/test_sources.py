"""Data at scale: WebDataset shards (written by the webdataset library itself) and a Hugging Face `datasets`
folder serve the same samples as the imagefolder they were made from, and train a tiny model; the sharded
cache reads back exactly what was written, row by row, without loading whole files."""

import io
import json
import threading

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from t2i.autoencoder import AutoencoderConfig, AutoencoderTrainConfig, train_autoencoder
from t2i.data import DataError, ShapesConfig, write_shapes
from t2i.data.sources import FolderSource, HFDiskSource, ImageRows, TarShardSource, open_source
from t2i.training.cache import ShardedRows, map_safetensors, sharded_cache
from t2i.training.trainer import TrainConfig


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("src") / "shapes"
    write_shapes(out, ShapesConfig(n=40, size=16, seed=3))
    return out


def test_webdataset_shards_serve_the_folders_samples_and_train_a_model(folder, tmp_path):
    wds = pytest.importorskip("webdataset")
    reference = FolderSource(folder)
    shards = tmp_path / "shards"
    shards.mkdir()
    with wds.ShardWriter(str(shards / "%05d.tar"), maxcount=16) as sink:  # img2dataset's layout: 3 shards
        for i, (path, caption) in enumerate(zip(reference.paths, reference.captions)):
            sample = {"__key__": f"{i:09d}", "png": path.read_bytes()}
            if i % 2:  # captions as .txt for some samples, as img2dataset's .json for the others
                sample["txt"] = caption
            else:
                sample["json"] = json.dumps({"caption": caption, "url": "file://x"}).encode()
            sink.write(sample)
        sink.write({"__key__": "no-caption", "png": reference.paths[0].read_bytes()})  # skipped, counted
    source = open_source(shards)
    assert isinstance(source, TarShardSource) and len(source.shards) == 3
    assert source.captions == reference.captions and source.report.skipped == {"no_caption": 1}
    everything = torch.arange(len(reference))
    assert torch.equal(ImageRows(source, 16)[everything], ImageRows(reference, 16)[everything])
    assert len(source.where) == 40 and source.where.nbytes == 40 * 24  # the index, not the images, is in memory

    cfg = AutoencoderTrainConfig(model=AutoencoderConfig(image_size=16, block_out_channels=(8, 8), norm_num_groups=4),
                                 train=TrainConfig(steps=2, batch_size=8, warmup_steps=1), held_out=4)
    info = train_autoencoder(shards, tmp_path / "ae", cfg)
    assert info["data_fingerprint"] == source.fingerprint() and (tmp_path / "ae" / "config.json").exists()


def test_a_hugging_face_datasets_folder_serves_the_folders_samples_and_trains_a_model(folder, tmp_path):
    datasets = pytest.importorskip("datasets")
    reference = FolderSource(folder)
    ds = datasets.Dataset.from_dict({"image": [str(p) for p in reference.paths], "text": reference.captions})
    ds = ds.cast_column("image", datasets.Image())
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "hf"))
    source = open_source(tmp_path / "hf")
    assert isinstance(source, HFDiskSource) and source.captions == reference.captions
    everything = torch.arange(len(reference))
    assert torch.equal(ImageRows(source, 16)[everything], ImageRows(reference, 16)[everything])

    cfg = AutoencoderTrainConfig(model=AutoencoderConfig(image_size=16, block_out_channels=(8, 8), norm_num_groups=4),
                                 train=TrainConfig(steps=2, batch_size=8, warmup_steps=1), held_out=4)
    info = train_autoencoder(tmp_path / "hf", tmp_path / "ae", cfg)
    assert info["data_fingerprint"] == source.fingerprint()
    with pytest.raises(DataError, match="needs an Image column and a 'text' or 'caption' column"):
        datasets.Dataset.from_dict({"text": ["a"]}).save_to_disk(str(tmp_path / "bad"))
        open_source(tmp_path / "bad")


def test_an_undecodable_image_is_replaced_by_the_next_and_counted(tmp_path):
    import webdataset as wds

    good = io.BytesIO()
    Image.new("RGB", (16, 16), (0, 0, 255)).save(good, format="PNG")
    with wds.TarWriter(str(tmp_path / "a.tar")) as sink:
        sink.write({"__key__": "broken", "png": b"not a png", "txt": "broken"})
        sink.write({"__key__": "fine", "png": good.getvalue(), "txt": "a blue square"})
    rows = ImageRows(open_source(tmp_path / "a.tar"), 16)
    batch = rows[torch.tensor([0, 1])]
    assert torch.equal(batch[0], batch[1]) and rows.failed == 1


def test_sharded_cache_is_split_between_ranks_and_reads_back_row_by_row(tmp_path):
    table = torch.randn(10, 3, 2)
    computed = {0: [], 1: []}
    barrier = threading.Barrier(2)  # two ranks as two threads, with a real barrier between them
    results = {}

    def rank(r):
        def compute(a, b):
            computed[r].append(a)
            return {"x": table[a:b]}
        results[r] = sharded_cache(tmp_path, "t", {"k": 1}, 10, compute, rank=r, world_size=2, shard_rows=3,
                                   barrier=barrier.wait, small=lambda: {"extra": torch.ones(2)})

    threads = [threading.Thread(target=rank, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert computed == {0: [0, 6], 1: [3, 9]}  # shards 0, 2 on rank 0; shards 1, 3 on rank 1
    cache = results[1]
    assert isinstance(cache["x"], ShardedRows) and len(cache["x"]) == 10 and torch.equal(cache["extra"], torch.ones(2))
    index = torch.tensor([[9, 0], [4, 5]])
    assert torch.equal(cache["x"][index], table[index])
    again = sharded_cache(tmp_path, "t", {"k": 1}, 10, lambda a, b: 1 / 0, shard_rows=3)  # cached: not computed
    assert torch.equal(again["x"][torch.arange(10)], table)
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(ValueError, match="is not a safetensors file"):
        map_safetensors(tmp_path / "junk.safetensors")
    save_file({"y": torch.zeros(4)}, tmp_path / "ok.safetensors")
    assert torch.equal(map_safetensors(tmp_path / "ok.safetensors")["y"], torch.zeros(4))
