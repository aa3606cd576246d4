"""Published npm packages as data: fetched once with `npm pack` into a cache, or found in a folder the user has.

A package is read where it lies, unpacked or not: a tarball as `npm pack` names it (`iconify-json-noto-1.2.9.tgz`,
members under `package/`), or an unpacked package folder (`node_modules/@iconify-json/noto/`, or
`@iconify-json/noto/`). Nothing is installed and no package code runs: only its JSON files are read.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from t2i.data.layout import DataError

FETCH_TIMEOUT = 600  # seconds one `npm pack` may take (the largest default package is 14 MB)


def default_cache_dir() -> Path:
    """Where fetched packages are kept between runs: $XDG_CACHE_HOME/t2i/npm, else ~/.cache/t2i/npm."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "t2i" / "npm"


def tarball_name(package: str, version: str) -> str:
    """The file name `npm pack` gives a package: "@iconify-json/noto", "1.2.9" -> "iconify-json-noto-1.2.9.tgz"."""
    return f"{package.lstrip('@').replace('/', '-')}-{version}.tgz"


@dataclass
class Package:
    """One package, readable file by file."""

    name: str  # npm name, "@iconify-json/noto"
    version: str  # from its package.json
    path: Path  # the tarball or folder it is read from
    sha256: str | None  # of the tarball; None for a folder

    def read_json(self, member: str):
        """The parsed JSON file `member` ("icons.json", "en/data.json") of the package."""
        try:
            if self.path.is_dir():
                return json.loads((self.path / member).read_text(encoding="utf-8"))
            with tarfile.open(self.path, "r:gz") as tar:
                return json.loads(tar.extractfile(f"package/{member}").read())
        except (OSError, KeyError, AttributeError, tarfile.TarError, json.JSONDecodeError) as e:
            raise DataError(f"{self.name}: cannot read {member} from {self.path}: {e}") from None

    def has(self, member: str) -> bool:
        if self.path.is_dir():
            return (self.path / member).is_file()
        with tarfile.open(self.path, "r:gz") as tar:
            return f"package/{member}" in tar.getnames()


def _open(name: str, path: Path) -> Package:
    sha = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    package = Package(name, "?", path, sha)
    package.version = str(package.read_json("package.json").get("version", "?"))
    return package


def _is_tarball_of(path: Path, name: str) -> bool:
    """Whether `path` is named as `npm pack` names a version of `name` (not of a longer name sharing its start)."""
    return re.fullmatch(re.escape(tarball_name(name, "")) + r"\d[\w.+-]*\.tgz", path.name) is not None


def _find_in(folder: Path, name: str, version: str | None) -> Path | None:
    """The package in `folder`: an unpacked folder, the pinned tarball, else any version's tarball (last by name)."""
    for sub in (Path("node_modules") / name, Path(name)):
        if (folder / sub / "package.json").is_file():
            return folder / sub
    if version and (folder / tarball_name(name, version)).is_file():
        return folder / tarball_name(name, version)
    found = sorted(p for p in folder.glob(tarball_name(name, "*")) if _is_tarball_of(p, name))
    return found[-1] if found else None


def fetch(name: str, version: str, cache_dir: Path) -> Path:
    """`npm pack name@version` into cache_dir (written under a temporary name, then moved: never half there)."""
    target = cache_dir / tarball_name(name, version)
    if target.is_file():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise DataError(f"{name}@{version} is not cached in {cache_dir} and npm is not installed: install it "
                        f"(apt-get install npm) and rerun, or pass --from DIR with {tarball_name(name, version)}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".fetch-") as tmp:
        try:
            result = subprocess.run([npm, "pack", f"{name}@{version}", "--pack-destination", tmp, "--silent"],
                                    capture_output=True, text=True, check=False, timeout=FETCH_TIMEOUT)
            last = (result.stderr.strip().splitlines() or ["no output"])[-1] if result.returncode else ""
        except subprocess.TimeoutExpired:
            last = f"no answer in {FETCH_TIMEOUT} s"
        packed = Path(tmp) / tarball_name(name, version)
        if last or not packed.is_file():
            last = last or "no tarball written"
            raise DataError(f"cannot fetch {name}@{version} (npm pack: {last}); when online run `make emoji-sets`, "
                            f"or pass --from DIR holding {tarball_name(name, version)} or node_modules/{name}")
        os.replace(packed, target)
    return target


def find_package(name: str, version: str, *, source: Path | None, cache_dir: Path, download: bool) -> Package:
    """The package from `source` (a folder or a tarball, any version) if given and it holds it, else the pinned
    version from the cache, else fetched into the cache when `download`; a DataError saying what to do otherwise."""
    if source is not None:
        if source.is_file() and _is_tarball_of(source, name):
            return _open(name, source)
        found = _find_in(source, name, version) if source.is_dir() else None
        if found is not None:
            return _open(name, found)
    cached = cache_dir / tarball_name(name, version)  # the cache holds exactly the pinned versions
    if cached.is_file():
        return _open(name, cached)
    if not download:
        raise DataError(f"{name} is not in {source or cache_dir}: run `make emoji-sets` (fetches it with npm) or pass "
                        f"--from DIR holding {tarball_name(name, version)} or node_modules/{name}")
    return _open(name, fetch(name, version, cache_dir))
