"""A training stage beside a CPU-bound job: OpenMP threads that spin against ones that sleep.

    python -m benchmarks.busy PROJECT [--steps 30] [--hogs 1]

Runs ``python -m stages.train_lora`` in ``PROJECT`` (a scratch project where the pipeline has
run, e.g. ``demo-run/`` after ``make demo``: the stage rewrites its outputs there, with the
project's own params but ``train.max_steps`` cut to ``--steps`` in a temporary params file),
while ``--hogs`` processes each spin on one core. Twice: with OpenMP's default wait policy
(``OMP_WAIT_POLICY`` set empty, which the runtime ignores: what a stage got before ``stages``
set it), and with ``PASSIVE``, what every stage now starts with (``stages/__init__.py``).
Prints the wall time of each and their ratio as JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path


def _spin(stop) -> None:
    while not stop.is_set():
        sum(range(10_000))


def timed_stage(project: Path, params: Path, policy: str, hogs: int) -> float:
    from demo.run import stage_env  # offline, this interpreter's python first on PATH

    env = dict(stage_env(), OMP_WAIT_POLICY=policy)
    stop = multiprocessing.Event()
    workers = [multiprocessing.Process(target=_spin, args=(stop,)) for _ in range(hogs)]
    for w in workers:
        w.start()
    try:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "stages.train_lora", "--params", str(params)], cwd=project,
                       env=env, check=True, capture_output=True)
        return time.perf_counter() - started
    finally:
        stop.set()
        for w in workers:
            w.join()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("project", type=Path)
    parser.add_argument("--steps", type=int, default=30, help="training steps (default: %(default)s)")
    parser.add_argument("--hogs", type=int, default=1, help="CPU-bound processes beside it (default: %(default)s)")
    args = parser.parse_args(argv)
    args.project = args.project.resolve()  # the stage runs there: a relative params path would miss
    from ruamel.yaml import YAML

    yaml = YAML()
    params = yaml.load((args.project / "params.yaml").read_text(encoding="utf-8"))
    params["train"]["max_steps"] = args.steps
    cut = args.project / ".busy-params.yaml"
    with cut.open("w", encoding="utf-8") as f:
        yaml.dump(params, f)
    try:
        spinning = timed_stage(args.project, cut, "", args.hogs)
        passive = timed_stage(args.project, cut, "PASSIVE", args.hogs)
    finally:
        cut.unlink()
    print(json.dumps({"steps": args.steps, "hogs": args.hogs, "default_wait_s": round(spinning, 1),
                      "passive_wait_s": round(passive, 1), "ratio": round(spinning / passive, 2)}))


if __name__ == "__main__":
    main()
