"""Pipeline overhead: what a person waits for before any work starts.

- ``python -m stages.<stage> --help`` for every stage and ``python -m stages.params`` (validates
  ``params.yaml``): wall time, best of a few runs, and whether the command imported torch,
  seen from inside a subprocess through ``sys.modules``; ``stages.params`` must not;
- ``dvc status`` and ``dvc repro`` with nothing to do, in the offline demo's scratch project
  ``demo-run/`` (made by ``python -m demo.run``). Skipped, with a note, when that project does not
  exist or is not up to date: ``dvc repro`` would then run the pipeline instead of timing a no-op.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_PROJECT = ROOT / "demo-run"
STAGES = ("split", "tokenize", "train_lora", "infer", "score")
COMMANDS = {**{f"stages.{s} --help": ["stages." + s, "--help"] for s in STAGES},
            "stages.params": ["stages.params"]}
MUST_NOT_IMPORT_TORCH = ("stages.params",)

# Runs a module as `python -m` would, then reports at exit (also after SystemExit from --help).
PROBE = """import atexit, runpy, sys
atexit.register(lambda: print("\\nTORCH_IMPORTED=" + str("torch" in sys.modules)))
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def _env() -> dict:
    from demo.run import stage_env  # offline, this interpreter's python first on PATH

    return stage_env()


def imports_torch(module: str, *args: str) -> bool:
    """Whether ``python -m module args`` imports torch, asked of the process itself."""
    result = subprocess.run([sys.executable, "-c", PROBE, module, *args], cwd=ROOT, env=_env(),
                            capture_output=True, text=True, check=False)
    markers = [line for line in result.stdout.splitlines() if line.startswith("TORCH_IMPORTED=")]
    if not markers:
        raise RuntimeError(f"python -m {module} {' '.join(args)} did not finish:\n{result.stderr}")
    return markers[-1] == "TORCH_IMPORTED=True"


def wall_time(command: list[str], cwd: Path, repeats: int = 3) -> dict:
    """Best-of-``repeats`` wall time: the minimum is the least disturbed by a busy machine."""
    runs, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = subprocess.run(command, cwd=cwd, env=_env(), capture_output=True, text=True, check=False)
        runs.append(round(time.perf_counter() - started, 3))
    return {"best_s": min(runs), "runs_s": runs, "exit_code": result.returncode, "stdout": result.stdout}


def cli_overhead(repeats: int = 3) -> dict[str, dict]:
    out = {}
    for name, (module, *args) in COMMANDS.items():
        timing = wall_time([sys.executable, "-m", module, *args], ROOT, repeats)
        timing.pop("stdout")
        out[name] = {**timing, "imports_torch": imports_torch(module, *args)}
    return out


def dvc_noop(project: Path = DEMO_PROJECT, repeats: int = 3) -> dict:
    """``dvc status`` and ``dvc repro`` where the pipeline already ran, or a note why not."""
    dvc = [sys.executable, "-m", "dvc"]
    if not (project / "dvc.lock").is_file():
        return {"skipped": f"{project.name}/ has not run the pipeline (python -m demo.run makes it)"}
    state = subprocess.run([*dvc, "status", "--json"], cwd=project, env=_env(), capture_output=True,
                           text=True, check=False)
    if state.returncode != 0 or json.loads(state.stdout or "null") != {}:
        return {"skipped": f"{project.name}/ is not up to date: dvc repro would run stages, not a no-op"}
    status = wall_time([*dvc, "status"], project, repeats)
    repro = wall_time([*dvc, "repro"], project, repeats)
    ran = "Running stage" in repro.pop("stdout")
    status.pop("stdout")
    return {"project": project.name, "dvc_status": status, "dvc_repro": {**repro, "ran_a_stage": ran}}


def measure(repeats: int = 3) -> dict:
    return {"cli": cli_overhead(repeats), "dvc": dvc_noop(repeats=repeats)}
