"""check_params: ``params.yaml`` -> ``{paths.metrics}/records/params_checked``, before any stage.

Reads every params section (the whole file, through ``stages.params``).

DVC removes a stage's outputs before it runs the stage's command, so a stage that refused a bad
value itself would refuse it only after its last good results were gone: ``dvc exp run -S
lora.r=-1`` would cost the adapter and the training metrics. This stage runs first (every other
stage depends on its output) and validates the whole file, so DVC stops here with one line and
leaves every result in place. Its output is the same few bytes whenever the params are valid, so
a valid change reruns only the stages whose own sections changed, as before.
"""

from __future__ import annotations

if not __package__:  # `python stages/check_params.py`: no `stages` to import from there (stages/tokenize.py)
    raise SystemExit("error: the stages are modules of the package stages/: from the project root, "
                     "run python -m stages.check_params (not python stages/check_params.py)")

from stages import cli
from stages.atomic import write_text
from stages.params import UNDECLARED, Params, load_params

PARAMS = tuple(name for name in Params.model_fields if name not in UNDECLARED)  # dvc.yaml's `params:`

CHECKED = "params.yaml is valid (stages/params.py)\n"  # constant: dependents rerun on their own params only


def main(argv: list[str] | None = None) -> None:
    args = cli.parser(__doc__).parse_args(argv)

    def body() -> None:
        params = load_params(args.params)  # ParamsError: one line, exit 1, nothing written
        write_text(params.paths.params_check(), CHECKED)

    cli.run(body, PARAMS, args.params)


if __name__ == "__main__":
    main()
