"""Bundle the wheels an air-gapped GPU cluster needs for the project: ``make gpu-wheels``.

    python -m benchmarks.wheels [--dest .whl] [--max-mib 56]

For GPU nodes that reach no package index: run this on a machine that does, carry ``.whl/``
(git-ignored) across with the project, and install it there with
``pip install --no-index --no-deps --target /tmp/site .whl/*.whl`` (benchmarks/README.md).
The target is CPython 3.12 on Linux x86-64 (``PLATFORM``, ``MARKERS``), in an image that already
has a CUDA build of torch and the data stack, as the usual PyTorch containers do (``PROVIDED``).

Which wheels: ``pyproject.toml``'s runtime dependencies and everything they require, at exactly
the versions installed in this environment (the pinned, tested set: one version each), less
``PROVIDED`` (torch and its CUDA libraries, numpy, pandas, pyarrow, sympy, networkx, lxml, psutil,
pyyaml: the image has them, and torch's CUDA build alone is several GB) and wandb (imported only
with ``tracking.wandb: true``). Requirements are followed with their markers evaluated for the
target, extras included. Each is fetched with ``pip download --no-deps --only-binary=:all:`` for
cp312 manylinux; a package that publishes no wheel (rouge-score) is built here into a pure-Python
wheel. Writes ``<dest>/MANIFEST.txt`` and fails when the total exceeds ``--max-mib``: set it to
what your transfer medium or upload takes (0: no limit).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What the cluster's image is expected to have (a CUDA PyTorch image): torch's CUDA build and its
# libraries, the data stack, and what those require in any recent version (torch: networkx;
# sacrebleu: lxml; accelerate: psutil, pyyaml). Not tokenizers and regex: the pinned transformers
# needs newer ones than images commonly ship, so they travel. Edit this set to match your image.
PROVIDED = {"torch", "triton", "numpy", "pandas", "pyarrow", "sympy", "mpmath", "networkx", "lxml", "psutil",
            "pyyaml"}
NOT_IMPORTED = {"wandb"}  # only with tracking.wandb: true; the rehearsal sets it false
PLATFORM = ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
            "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_27_x86_64",
            "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
            "--platform", "manylinux1_x86_64"]
# Where pip finds no wheel for the tags above, these tags too (pip matches N exactly).
MORE_PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in (24, 31, 34, 35, 39)]
MARKERS = {"python_version": "3.12", "python_full_version": "3.12.3", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "sys_platform": "linux", "platform_system": "Linux",
           "platform_machine": "x86_64", "os_name": "posix"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def skipped(name: str) -> bool:
    return name in PROVIDED | NOT_IMPORTED or name.startswith(("nvidia-", "cuda-"))


def closure(top: list[str]) -> dict[str, str]:
    """name -> installed version, for ``top`` and every requirement they have on the target's Python."""
    from packaging.requirements import Requirement

    found: dict[str, str] = {}
    queue: list[tuple[str, frozenset[str]]] = [(canonical(Requirement(t).name), frozenset(Requirement(t).extras))
                                               for t in top]
    seen: set[tuple[str, frozenset[str]]] = set()
    while queue:
        name, extras = queue.pop()
        if (name, extras) in seen or skipped(name):
            continue
        seen.add((name, extras))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            sys.exit(f"error: {name} is required but not installed here: run `make setup` first")
        found[name] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            wanted = not req.marker or any(req.marker.evaluate({**MARKERS, "extra": e}) for e in {"", *extras})
            if wanted:
                queue.append((canonical(req.name), frozenset(req.extras)))
    return found


def download(name: str, version: str, dest: Path) -> None:
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    base = [*pip, "download", "--no-deps", "-q", "-d", str(dest)]
    if subprocess.run([*base, *PLATFORM, f"{name}=={version}"], capture_output=True).returncode == 0:
        return
    more = [arg for p in MORE_PLATFORMS for arg in ("--platform", p)]
    if subprocess.run([*base, *PLATFORM, *more, f"{name}=={version}"], capture_output=True).returncode == 0:
        return
    # No wheel published (an sdist only): build one here; it must be pure Python to run there.
    built = subprocess.run([*pip, "wheel", "--no-deps", "-q", "-w", str(dest), f"{name}=={version}"],
                           capture_output=True, text=True)
    wheel = next(iter(sorted(dest.glob(f"{name.replace('-', '_')}-{version}-*.whl"))), None)
    if built.returncode != 0 or wheel is None or not wheel.name.endswith("-none-any.whl"):
        sys.exit(f"error: no cp312 manylinux wheel of {name}=={version}, and no pure-Python one could be "
                 f"built: {built.stderr.strip()[-300:]}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", default=str(ROOT / ".whl"))
    parser.add_argument("--max-mib", type=float, default=56.0,
                        help="fail when the wheels take more than this many MiB: set it to what your transfer "
                             "medium or upload takes, less the project's working tree (about 7 MiB); "
                             "0: no limit (default: %(default)s)")
    args = parser.parse_args(argv)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = closure(project["dependencies"])
    dest = Path(args.dest)
    shutil.rmtree(dest, ignore_errors=True)  # one version of each: an older wheel would stop the install
    dest.mkdir(parents=True)
    for name, version in sorted(wanted.items()):
        print(f"{name}=={version}", flush=True)
        download(name, version, dest)
    wheels = sorted(dest.glob("*.whl"))
    total = sum(w.stat().st_size for w in wheels) / 2**20
    lines = [f"{w.name}  {w.stat().st_size / 2**20:.2f} MiB" for w in wheels]
    (dest / "MANIFEST.txt").write_text("\n".join([*lines, f"total {total:.1f} MiB, {len(wheels)} wheels"]) + "\n")
    print(f"{len(wheels)} wheels, {total:.1f} MiB in {dest}")
    if len(wheels) != len(wanted):
        sys.exit(f"error: {len(wanted)} packages but {len(wheels)} wheels in {dest}")
    if args.max_mib and total > args.max_mib:
        sys.exit(f"error: {total:.1f} MiB of wheels is over --max-mib {args.max_mib:g}: raise it if your transfer "
                 "takes more, or add to PROVIDED what the cluster's image already has")


if __name__ == "__main__":
    main()
