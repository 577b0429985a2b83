"""`vqa` / `python starter.py`: parse, build the settings once, run the command, exit with its code.

Exit status: 0 done (with --wait: analysed, defects or not), 1 could not be analysed /
no such stream, 2 invalid command line or settings, 3 Temporal unreachable, 130 interrupted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import NoReturn

from vqa.codec import PayloadKeyError
from vqa.settings import Settings, SettingsError

from .common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, UsageError, err, exit_now
from .parser import build_parser


def run(argv: Sequence[str] | None = None) -> int:
    """The command's exit code (argparse exits 2 itself on a malformed command line)."""
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        return asyncio.run(args.run(args, settings))
    except (UsageError, SettingsError) as exc:
        err(f"error: {exc}")
        return EXIT_USAGE
    except PayloadKeyError as exc:  # the stream's payloads are encrypted with a key this process lacks
        err(f"error: {exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> NoReturn:
    exit_now(run(argv))
