"""The package's shape, as a newcomer would check it: no import cycles, one Langevin loop, harness code outside the
installed package, and model-card templates that ship in the wheel."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "vaebm_hub"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """``module -> modules of the package it imports`` (statically, at any depth, relative imports resolved)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_no_import_cycles():
    assert find_cycle(import_graph()) is None


def test_lower_layers_import_nothing_above_them():
    graph = import_graph()
    lower = {"vaebm_hub.models", "vaebm_hub.schedulers", "vaebm_hub.hub", "vaebm_hub.data", "vaebm_hub.presets"}
    upper = ("vaebm_hub.training", "vaebm_hub.evaluation", "vaebm_hub.cli", "vaebm_hub.convert")
    for module, imported in graph.items():
        if any(module == m or module.startswith(m + ".") for m in lower):
            assert not [t for t in imported if t.startswith(upper)], module
    for module in (m for m in graph if m.startswith("vaebm_hub.evaluation")):
        assert not [t for t in graph[module] if t.startswith("vaebm_hub.training")], module


def test_one_function_loops_over_the_langevin_steps():
    loops = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.For) and "timesteps" in ast.unparse(node.iter):
                loops.append(path.relative_to(PACKAGE).as_posix())
    assert loops == ["pipelines/langevin_chain.py"]


def test_harness_code_is_outside_the_installed_package():
    assert not (PACKAGE / "reproduction").exists() and not (PACKAGE / "training" / "demo.py").exists()
    assert (ROOT / "benchmarks" / "reproduction" / "runs.py").is_file() and (ROOT / "examples" / "demo.py").is_file()
    assert "KILL" not in (PACKAGE / "training" / "checkpointing.py").read_text()  # tests kill from outside


@pytest.mark.slow
def test_the_wheel_carries_the_card_templates_and_works_without_the_source_tree(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("vaebm_hub-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"vaebm_hub/hub/templates/vaebm_pipeline.md", "vaebm_hub/hub/templates/converted_nvae.md"} <= set(names)
    target = tmp_path / "installed"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    code = (
        "import vaebm_hub, vaebm_hub.hub.cards as c; "
        f"assert vaebm_hub.__file__.startswith({str(target)!r}), vaebm_hub.__file__; "
        "print(c._template_path('trained').read_text()[:3])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("---")
