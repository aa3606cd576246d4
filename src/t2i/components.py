"""The small JSON file t2i keeps beside each component's weights: what it is and how it was made."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

COMPONENT_FILE = "t2i_component.json"
PIPELINE_INFO = "t2i.json"  # t2i's metadata beside a diffusers pipeline folder


def write_component_info(folder: str | Path, info: dict) -> None:
    path = Path(folder) / COMPONENT_FILE
    path.write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")


def read_component_info(folder: str | Path, expected: str | None = None) -> dict:
    """Read a component folder's info; `expected` names the component kind the caller needs."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"component folder {folder} does not exist")
    path = folder / COMPONENT_FILE
    if not path.exists():
        raise FileNotFoundError(f"{folder} is not a t2i component folder (no {COMPONENT_FILE})")
    info = json.loads(path.read_text())
    if expected and info.get("component") != expected:
        raise ValueError(f"{folder} holds a {info.get('component')!r} component, not {expected!r}")
    return info


def weights_digest(folder: str | Path) -> str:
    """A short hash of a component's weight files: identifies exactly which weights produced a cache."""
    h = hashlib.sha256()
    for path in sorted(Path(folder).glob("*.safetensors")):
        h.update(path.name.encode())
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]
