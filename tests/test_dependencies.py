"""Dependencies declared honestly: every import is a distribution pyproject.toml declares, the
locks in requirements/ (``make lock``) pin the whole installed stack, and the stack as installed
prints no warning about its own packaging."""

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


def read_lock(name: str) -> dict[str, str]:
    """``requirements/<name>.lock`` as {distribution: version}."""
    text = (ROOT / "requirements" / f"{name}.lock").read_text(encoding="utf-8")
    pins = (line.split("==") for line in text.splitlines() if line and not line.startswith("#"))
    return {canonical(dist): version.strip() for dist, version in pins}


def installed_stack() -> dict[str, str]:
    """pyproject.toml's requirements (every extra) and all they require, as installed: {name: version}."""
    extras = PROJECT["project"]["optional-dependencies"]
    todo = [(Requirement(line), "") for line in PROJECT["project"]["dependencies"] + sum(extras.values(), [])]
    seen: set[tuple[str, str]] = set()  # (distribution, extra) whose requirements were followed
    while todo:
        req, extra = todo.pop()
        if req.marker and not req.marker.evaluate({"extra": extra}):
            continue
        for wanted in ("", *req.extras):
            if (canonical(req.name), wanted) not in seen:
                seen.add((canonical(req.name), wanted))
                todo += [(Requirement(line), wanted) for line in metadata.requires(req.name) or []]
    return {name: metadata.version(name) for name, _ in seen}


def test_the_lock_pins_exactly_the_installed_stack() -> None:
    """The lock of this torch build (the test one: every extra) holds every package the project's
    requirements pull in, at the installed version, and nothing that is not installed."""
    build = "cpu" if "+cpu" in metadata.version("torch") else "cuda"
    pins, stack = read_lock(f"{build}-test"), installed_stack()
    wrong = [f"{name}: installed {version}, not in requirements/{build}-test.lock"
             for name, version in stack.items() if name not in pins]
    for name, pin in pins.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed is None or Version(installed) != Version(pin):
            wrong.append(f"{name}: requirements/{build}-test.lock pins {pin}, installed is {installed} (`make test`)")
    assert not wrong, "\n".join(wrong)


def test_the_locks_agree_with_each_other() -> None:
    """Run and test locks pin the same versions; the CUDA locks are the CPU ones with torch's other
    build and the CUDA libraries it brings (the Makefile reads torch's version from the CPU lock)."""
    locks = {name: read_lock(name) for name in ("cpu", "cpu-test", "cuda", "cuda-test")}
    for build in ("cpu", "cuda"):
        run, test = locks[build], locks[f"{build}-test"]
        assert run.items() <= test.items(), f"{build}.lock and {build}-test.lock pin other versions"
        assert {"pytest", "ruff"} <= test.keys() - run.keys()
    cpu, cuda = locks["cpu-test"], locks["cuda-test"]
    assert Version(cpu["torch"]).local == "cpu" and Version(cuda["torch"]) == Version(cpu["torch"].split("+")[0])
    shared = cpu.keys() - {"torch"}
    assert {k: cuda.get(k) for k in shared} == {k: cpu[k] for k in shared}
    assert all(name.startswith(("nvidia-", "cuda-", "triton")) for name in cuda.keys() - cpu.keys())


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
