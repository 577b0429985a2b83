"""What every command shares: exit codes, the one-line errors on stderr, and how a command exits."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """The command line asks for something invalid: exit 2, before anything starts."""


def err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def info(message: str, *, always: bool = False) -> None:
    """Progress for people: on a terminal, or when --dev asks for it (the UI link).

    Scripts reading stderr then see only the one line that says why a stream failed.
    """
    if always or sys.stderr.isatty():
        err(message)


def exit_now(code: int) -> NoReturn:
    """Flush and exit without finalizers: avoids the temporalio interpreter-exit abort (sdk-python #300)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
