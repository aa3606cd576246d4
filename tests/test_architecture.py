"""The package's shape: no import cycles, and no import that runs up the layers (docs/ARCHITECTURE.md).

Every `import` and `from ... import` statement counts, those inside functions too (a lazy import is still a
dependency). Run `python -m pytest tests/test_architecture.py -q` to check; the failure lists the offending
imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Lowest first. A module may import its own layer and the layers below it, never above; packages of the
# variants layer never import each other.
LAYERS = [
    ("foundation", {"version", "components", "files", "images", "startup", "hardware", "data", "sampling",
                    "training"}),
    ("components", {"text", "autoencoder", "diffusion", "pipeline"}),
    ("variants", {"latent", "cascade", "tokens"}),
    ("registry", {"variants"}),
    ("consumers", {"evaluation", "experiments", "server", "models", "demo", "cli", "__init__"}),
]
LAYER_OF = {part: k for k, (_, parts) in enumerate(LAYERS) for part in parts}
VARIANTS_LAYER = 2


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, name: str, modules: set[str]) -> set[str]:
    """The t2i modules `path` imports (a `from package import name` counts the submodule when there is one)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in (SRC / "t2i").rglob("*.py")}
    return {name: imports_of(path, name, set(paths)) for name, path in paths.items()}


def layer(module: str) -> tuple[int, str]:
    top = module.split(".")[1] if module.count(".") else "__init__"
    if top not in LAYER_OF:
        raise AssertionError(f"{module} belongs to no layer: add its package to LAYERS (and docs/ARCHITECTURE.md)")
    return LAYER_OF[top], top


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan's algorithm)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def against_layers(graph: dict[str, set[str]]) -> list[str]:
    """Every import that runs up a layer, or from one variant into another."""
    wrong = []
    for module, targets in sorted(graph.items()):
        (mine, package) = layer(module)
        for target in sorted(targets):
            (theirs, other) = layer(target)
            if theirs > mine or (mine == theirs == VARIANTS_LAYER and other != package):
                wrong.append(f"{module} ({LAYERS[mine][0]}) imports {target} ({LAYERS[theirs][0]})")
    return wrong


def test_the_checker_finds_a_cycle_an_upward_import_and_a_sideways_one():
    graph = {"t2i.data.a": {"t2i.data.b"}, "t2i.data.b": {"t2i.data.a"}, "t2i.cli.x": set()}
    assert cycles(graph) == [["t2i.data.a", "t2i.data.b"]]
    graph = {"t2i.data.layout": {"t2i.latent.pipeline"}, "t2i.cascade.train": {"t2i.latent.train"},
             "t2i.latent.train": {"t2i.latent.pipeline", "t2i.diffusion.unet"}, "t2i.cli.x": {"t2i.variants"}}
    assert against_layers(graph) == ["t2i.cascade.train (variants) imports t2i.latent.train (variants)",
                                      "t2i.data.layout (foundation) imports t2i.latent.pipeline (variants)"]


def test_no_module_imports_in_a_circle():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" ↔ ".join(c) for c in found)


def test_no_package_imports_in_a_circle():
    graph: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        graph.setdefault(layer(module)[1], set()).update(layer(t)[1] for t in targets)
    for package, targets in graph.items():
        targets.discard(package)
    found = cycles(graph)
    assert not found, "package cycles:\n" + "\n".join(" ↔ ".join(c) for c in found)


def test_no_import_runs_up_a_layer_or_across_variants():
    wrong = against_layers(import_graph())
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


@pytest.mark.parametrize("variant", sorted(LAYERS[VARIANTS_LAYER][1]))
def test_every_variant_has_the_same_files(variant):
    files = {p.name for p in (SRC / "t2i" / variant).glob("*.py")}
    assert {"__init__.py", "train.py", "compose.py", "pipeline.py"} <= files
