"""Dependencies declared honestly: every import is a distribution pyproject.toml declares and
constraints.txt pins, and the stack as installed prints no warning about its own packaging."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

from tests.conftest import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
# Which of pyproject.toml's lists each folder may import from: the runtime dependencies everywhere,
# an extra only where it is meant for.
MAY_USE = {
    "stages": ("dependencies",),
    "demo": ("dependencies",),
    "benchmarks": ("dependencies",),
    "review": ("dependencies", "review"),
    "tests": ("dependencies", "review", "test"),
}
OWN = {*PROJECT["tool"]["setuptools"]["packages"], "tests"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(lists: tuple[str, ...]) -> set[str]:
    extras = PROJECT["project"]["optional-dependencies"]
    lines = [line for key in lists
             for line in (PROJECT["project"]["dependencies"] if key == "dependencies" else extras.get(key, []))]
    return {canonical(Requirement(line).name) for line in lines}


def modules(folder: str) -> list[Path]:
    # demo/: its scripts only (demo/tiny-t5 is a model folder)
    return sorted((ROOT / folder).glob("*.py") if folder == "demo" else (ROOT / folder).rglob("*.py"))


def imports(path: Path) -> list[tuple[int, str]]:
    """(first line, top-level module) of each absolute import in ``path``, at any depth (lazy ones too)."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            found[top] = min(found.get(top, node.lineno), node.lineno)
    return sorted((line, module) for module, line in found.items())


def test_every_import_is_a_declared_distribution() -> None:
    providers = metadata.packages_distributions()
    undeclared = []
    for folder, lists in MAY_USE.items():
        allowed = declared(lists)
        for path in modules(folder):
            for line, module in imports(path):
                if module in sys.stdlib_module_names or module in OWN:
                    continue
                dists = {canonical(d) for d in providers.get(module, [])}
                where = f"{path.relative_to(ROOT)}:{line}: import {module}"
                if not dists:
                    undeclared.append(f"{where}: no installed distribution provides it")
                elif not dists & allowed:
                    undeclared.append(f"{where}: {' or '.join(sorted(dists))} is not declared in pyproject.toml "
                                      f"({' / '.join(lists)})")
    assert not undeclared, "\n".join(undeclared)


def test_every_declared_distribution_is_pinned_at_its_installed_version() -> None:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            pins[canonical(req.name)] = next(iter(req.specifier)).version
    wrong = []
    for name in sorted(declared(("dependencies", *PROJECT["project"]["optional-dependencies"]))):
        installed = Version(metadata.version(name)).public  # torch 2.13.0+cpu is torch==2.13.0
        if name not in pins:
            wrong.append(f"{name}: declared in pyproject.toml, not pinned in constraints.txt (installed: {installed})")
        elif Version(pins[name]) != Version(installed):
            wrong.append(f"{name}: constraints.txt pins {pins[name]}, installed is {installed} (`make setup`)")
    assert not wrong, "\n".join(wrong)


def test_no_stage_import_warns_that_pynvml_is_deprecated() -> None:
    # The pynvml *distribution* (deprecated; dvclive < 3.49.1 required it) installs a .pth whose
    # import hook warns on every import of the pynvml module, which torch and dvclive import at
    # start; the module itself is nvidia-ml-py's.
    code = "import stages.cli, stages.tracking, torch, dvclive.monitor_system, pynvml"
    result = subprocess.run([sys.executable, "-W", "always", "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "pynvml" not in result.stderr, (
        "the deprecated pynvml distribution is installed (`pip uninstall pynvml`; `make setup` does it):\n"
        + result.stderr)
    assert metadata.packages_distributions()["pynvml"] == ["nvidia-ml-py"]
