"""Errors for bad input: params, data, models. A stage reports them as one line and exits 1."""


def first_line(exc: BaseException, limit: int = 120) -> str:
    """A library error's first line, cut at ``limit`` characters, for an error line of our own
    that names the file: the rest of a library's message is detail the user did not ask for."""
    line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return line if len(line) <= limit else line[:limit] + "..."


class InputError(ValueError):
    """Something the user gave us cannot be used; the message names it and says why."""


class ParamsError(InputError):
    """A params file that cannot be used; the message names the file and the dotted key."""


class DataError(InputError):
    """Input data that cannot be used; the message names the source and what is wrong."""


class ModelError(InputError):
    """A model that cannot be loaded as configured; the message names the param."""


class Interrupted(BaseException):
    """A signal asked the stage to stop (BaseException: nothing may swallow it as an error)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
