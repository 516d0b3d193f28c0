"""The import graph, read from the source: layers without cycles, self-contained Hub files, no private names
reached across modules.

Layers, bottom up: the Hub-copied model files (config, modeling, losses, attention) and `data_processing`, neither
importing the other; the training side of `modeling_btsr` (arguments, trainer, training run, evaluation) and
`model_cards` above them. Every import counts, including those inside functions (a deferred import that dodges a
cycle at import time is still a cycle of the design).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT as ROOT

PACKAGES = ("modeling_btsr", "data_processing", "model_cards")
HUB_THIRD_PARTY = {"torch", "transformers", "safetensors", "huggingface_hub"}


def _module_files() -> dict[str, Path]:
    files = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


MODULES = _module_files()


def _imports(name: str, path: Path) -> list[tuple[str, list[str]]]:
    """`(module, imported names)` for every import statement of one module, relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.append((target, [alias.name for alias in node.names]))
    return found


def _edges() -> dict[str, set[str]]:
    """Module -> the modules of this project it imports (`from package import submodule` included)."""
    edges = {}
    for name, path in MODULES.items():
        targets = set()
        for target, names in _imports(name, path):
            for imported in names:
                if f"{target}.{imported}" in MODULES:
                    targets.add(f"{target}.{imported}")
            if target in MODULES:
                targets.add(target)
        edges[name] = targets - {name}
    return edges


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph, or None (depth-first search with colours)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_cycle_finder_finds_a_planted_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_module_import_cycle():
    edges = _edges()
    # A package's __init__ re-exports its modules: an edge into the package is an edge into each module it
    # re-exports, so `pkg -> pkg.x -> pkg` is not a cycle unless pkg.x reaches back into another module of pkg.
    inner = {
        name: {t for t in targets if not (name.startswith(t + ".") and t in PACKAGES)}
        for name, targets in edges.items()
    }
    assert _cycle(inner) is None, " -> ".join(_cycle(inner))


def test_no_package_import_cycle_and_data_processing_imports_no_model():
    between = {package: set() for package in PACKAGES}
    for name, targets in _edges().items():
        between[name.partition(".")[0]] |= {t.partition(".")[0] for t in targets}
    between = {package: targets - {package} for package, targets in between.items()}
    assert between["data_processing"] == set(), between["data_processing"]
    assert _cycle(between) is None, between


def test_hub_files_are_self_contained():
    """The files copied next to a saved model import only each other, the standard library and the libraries
    `trust_remote_code` loading has anyway: what a Hub user reviews is all that runs."""
    from model_cards.hub import CODE_FILES

    hub = {f"modeling_btsr.{Path(file).stem}" for file in CODE_FILES}
    assert hub <= set(MODULES), hub - set(MODULES)
    for name in sorted(hub):
        for target, _ in _imports(name, MODULES[name]):
            top = target.partition(".")[0]
            if top in PACKAGES:
                assert target in hub, f"{name} imports {target}, which is not copied to the Hub"
            else:
                assert top in sys.stdlib_module_names or top in HUB_THIRD_PARTY or top == "__future__", (
                    f"{name} imports {target}"
                )


def _private_uses(path: Path, name: str) -> list[str]:
    """`module._name` attribute reads and `from module import _name` of this project's modules."""
    tree = ast.parse(path.read_text(), filename=str(path))
    bound, uses = {}, []
    for target, names in _imports(name, path):
        if target.partition(".")[0] not in PACKAGES:
            continue
        uses += [f"from {target} import {n}" for n in names if n.startswith("_") and not n.startswith("__")]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.partition(".")[0] in PACKAGES:
                    bound[alias.asname or alias.name.partition(".")[0]] = alias.name
        elif isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").partition(".")[0] in PACKAGES):
            for alias in node.names:
                bound[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and isinstance(node.value, ast.Name)
            and node.value.id in bound
        ):
            uses.append(f"{node.value.id}.{node.attr}")
    return uses


@pytest.mark.parametrize(
    "path",
    [p for p in MODULES.values()] + sorted((ROOT / "benchmarks").glob("*.py")) + [ROOT / "train.py"],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_no_private_name_used_outside_its_module(path):
    """Tests are left out on purpose: a unit test of a private helper belongs to that helper's module."""
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    assert _private_uses(path, name.removesuffix(".__init__")) == []
