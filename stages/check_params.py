"""check_params: ``params.yaml`` -> ``{paths.metrics}/records/params_checked``, before any stage.

Reads every params section (the whole file, through ``stages.params``).

DVC removes a stage's outputs before it runs the stage's command, so a stage that refused a bad
value itself would refuse it only after its last good results were gone: ``dvc exp run -S
lora.r=-1`` would cost the adapter and the training metrics. This stage runs first (every other
stage depends on its output) and validates the whole file, so DVC stops here with one line and
leaves every result in place. Its output is the same few bytes whenever the params are valid, so
a valid change reruns only the stages whose own sections changed, as before.

``dvc exp run -S`` writes its values into the workspace's ``params.yaml`` before this stage runs,
and leaves them there when it refuses them: a typo (``-S +lora.rr=8``) would then fail every
later run, whatever it sets. So when the refused file differs from the last commit, the error
ends with the command that restores the committed params (``git checkout -- params.yaml``).
Not when the file is as committed (nothing to undo: the line names the key to fix), outside a
git work tree, or in a ``--temp`` or queued experiment's copy, where the workspace was never
touched (DVC names the real repository in ``DVC_ROOT``).
"""

from __future__ import annotations

if not __package__:  # `python stages/check_params.py`: no `stages` to import from there (stages/tokenize.py)
    raise SystemExit("error: the stages are modules of the package stages/: from the project root, "
                     "run python -m stages.check_params (not python stages/check_params.py)")

import os
import subprocess
from pathlib import Path

from stages import cli
from stages.atomic import write_text
from stages.errors import ParamsError
from stages.params import UNDECLARED, Params, load_params

PARAMS = tuple(name for name in Params.model_fields if name not in UNDECLARED)  # dvc.yaml's `params:`

CHECKED = "params.yaml is valid (stages/params.py)\n"  # constant: dependents rerun on their own params only


def undo_hint(params_file: str | os.PathLike) -> str:
    """How to get the committed ``params_file`` back, or "" where there is nothing to undo."""
    path = Path(params_file)
    folder = path.parent.resolve()

    def git(*args: str) -> subprocess.CompletedProcess | None:
        try:
            return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):  # no git here
            return None

    top = git("rev-parse", "--show-toplevel")
    if top is None or top.returncode != 0:
        return ""
    root = os.environ.get("DVC_ROOT")
    if root and Path(root).resolve() != Path(top.stdout.strip()).resolve():
        return ""  # a --temp or queued experiment's copy: the workspace is as it was
    tracked = git("ls-files", "--error-unmatch", "--", path.name)
    changed = git("diff", "--quiet", "HEAD", "--", path.name)  # 1: differs, 0: same, other: no HEAD
    if tracked is None or tracked.returncode != 0 or changed is None or changed.returncode != 1:
        return ""
    return (f"; {path} differs from the last commit (a refused `dvc exp run -S` leaves its values there); "
            f"undo: git checkout -- {path}")


def main(argv: list[str] | None = None) -> None:
    args = cli.parser(__doc__).parse_args(argv)

    def body() -> None:
        try:
            params = load_params(args.params)  # ParamsError: one line, exit 1, nothing written
        except ParamsError as exc:
            raise ParamsError(f"{exc}{undo_hint(args.params)}") from None
        write_text(params.paths.params_check(), CHECKED)

    cli.run(body, PARAMS, args.params)


if __name__ == "__main__":
    main()
