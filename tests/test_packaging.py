"""Packaging: ranges rather than pins, the lower bounds CI installs, every imported distribution declared, and the
training command's entry point."""

import ast
import importlib
import importlib.metadata
import sys

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.helpers import REPO_ROOT as ROOT

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the checks do not depend on the interpreter

PACKAGES = ("modeling_btsr", "data_processing", "model_cards")


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _declared() -> list[Requirement]:
    project = _project()
    extras = [text for group in project["optional-dependencies"].values() for text in group]
    return [Requirement(text) for text in [*project["dependencies"], *extras]]


def test_dependencies_are_ranges_and_the_constraints_pin_each_lower_bound():
    lower = {}
    for requirement in _declared():
        operators = [spec.operator for spec in requirement.specifier]
        assert "==" not in operators and ">=" in operators, requirement
        (bound,) = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        lower[canonicalize_name(requirement.name)] = bound
    pinned = {}
    for line in (ROOT / ".ci" / "constraints-lower.txt").read_text().splitlines():
        if line.split("#")[0].strip():
            requirement = Requirement(line.split("#")[0])
            (spec,) = requirement.specifier
            assert spec.operator == "==", line
            pinned[canonicalize_name(requirement.name)] = spec.version
    assert pinned == lower


def _imported_top_level_names() -> set[str]:
    names = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - set(PACKAGES) - {"__future__"}


def test_every_imported_distribution_is_declared():
    """An import that works only because another dependency happens to bring the distribution in is a bug."""
    declared = {canonicalize_name(r.name) for r in _declared() if r.marker is None}
    distributions = importlib.metadata.packages_distributions()
    imported = _imported_top_level_names()
    assert {"numpy", "pandas", "pyarrow", "torch", "yaml"} <= imported  # the scan sees the imports
    # An extra's import (gradio, for the Space demo) may be absent here: its distribution then goes by its name.
    missing = {
        name for name in imported if not {canonicalize_name(d) for d in distributions.get(name, [name])} & declared
    }
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"


def test_the_console_script_runs_the_training_command(capsys):
    entry_point = _project()["scripts"]["btsr-train"]
    module, function = entry_point.split(":")
    main = getattr(importlib.import_module(module), function)
    assert main(["--bt_alpha", "-1", "--output_dir", "unused"]) == 2  # refused before any data is read
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --bt_alpha")
