"""Errors for bad input: params, data, models. A stage reports them as one line and exits 1."""


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
