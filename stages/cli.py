"""What every stage's ``main()`` shares: arguments, logging, and turning bad input into one line.

Bad params, data or model settings raise errors that name what is wrong; here they become a
single ``error: ...`` line and exit status 1 instead of a stack trace.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from stages.errors import InputError
from stages.params import PARAMS_FILE

log = logging.getLogger(__name__)


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser whose --help shows the stage's docstring."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default=str(PARAMS_FILE), help="params file (default: %(default)s)")
    return p


def run(body: Callable[[], None]) -> None:
    """Run a stage body with logging set up; expected failures exit 1 with one line."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    try:
        body()
    except InputError as exc:
        sys.exit(f"error: {exc}")
