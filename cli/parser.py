"""The starter's command line, one parser: `start` (also the bare SOURCE form), `status`, `list`, `stop`.

A first word `status`/`stop` followed by an ID, or `list` (or `start`) when no file of
that name exists, is that command; anything else is a SOURCE, as `start SOURCE`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import detectors

from .admin import list_command, run_admin, status_command, stop_command
from .start import run_start

# A command whose first argument is an ID: the command only when an ID follows it.
_WITH_ID = ("status", "stop")
# A command without one: the command unless a file of that name is there (then it is a SOURCE).
_WITHOUT_ID = ("start", "list")


def names_a_command(argv: Sequence[str]) -> bool:
    """Whether the first word is a command rather than a SOURCE (the rule in this module's doc)."""
    if not argv:
        return False
    if argv[0] in _WITH_ID:
        return any(not a.startswith("-") for a in argv[1:])
    if argv[0] in _WITHOUT_ID:
        return not Path(argv[0]).exists()
    return False


class CommandLine(argparse.ArgumentParser):
    """An ArgumentParser that reads the SOURCE form as `start SOURCE ...`."""

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        argv = list(sys.argv[1:] if args is None else args)
        if argv not in (["-h"], ["--help"]) and not names_a_command(argv):
            argv = ["start", *argv]
        return super().parse_known_args(argv, namespace)


def build_parser() -> argparse.ArgumentParser:
    p = CommandLine(
        description="Start (or attach to) the monitoring workflow of a stream; inspect and stop streams.",
        epilog="`SOURCE [options]` with no command is `start SOURCE [options]`.",
    )
    commands = p.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=argparse.ArgumentParser)
    _add_start(commands.add_parser("start", help="start (or attach to) the monitoring workflow of one stream (the default)",
                                   description="Start (or attach to) the monitoring workflow of one stream."))
    status = commands.add_parser("status", help="the stream's status: position, windows, defects so far")
    status.add_argument("stream_id", metavar="ID")
    status.add_argument("--json", action="store_true", help="print the StreamStatus JSON")
    status.set_defaults(run=partial(run_admin, status_command))
    _add_list(commands.add_parser("list", help="the streams Temporal knows, newest first"))
    stop = commands.add_parser("stop", help="stop the stream's analysis (status `stopped`)")
    stop.add_argument("stream_id", metavar="ID")
    stop.set_defaults(run=partial(run_admin, stop_command))
    return p


def _add_start(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", nargs="?", help="file path, file://, http(s):// or s3://bucket/key URL; omitted: a generated demo clip")
    p.add_argument("--wait", action="store_true", help="wait for the end and print the defects")
    p.add_argument("--json", action="store_true", help="with --wait: print exactly one StreamReport JSON on stdout")
    p.add_argument("--dev", action="store_true", help="start a local Temporal dev server and a worker if none run")
    p.add_argument("--stream-id", help="the stream's id (default: from SOURCE's file name)")
    p.add_argument("--window-seconds", type=float, default=10.0, help="window length in seconds (default 10)")
    p.add_argument(
        "--parallel", type=int, default=4, metavar="N",
        help="windows of a file or VOD playlist analysed at once, on any workers (default 4; live: always 1)",
    )
    p.add_argument(
        "--renditions", metavar="NAME,NAME",
        help="a channel (HLS master playlist): decode only these renditions (names as `status` lists them, or "
        "lowest, highest); default all. Manifest checks always cover all",
    )
    p.add_argument("--detectors", help="comma-separated detectors to run (default: all): " + ",".join(detectors.REGISTRY))
    p.add_argument("--set", action="append", metavar="DET.OPTION=VALUE", help="a detector option, repeatable")
    p.add_argument(
        "--group", action="append", metavar="QUEUE=DET,DET",
        help="run these detectors on task queue QUEUE, where `worker.py --detectors DET,DET --task-queue QUEUE` "
        "workers serve them (one more activity per window, decoding the window itself); repeatable",
    )
    p.add_argument(
        "--results", metavar="URI",
        help="where the report and window results are written: a directory, s3://bucket/prefix or 'none' "
        "(default: the worker's VQA_RESULTS, else $VQA_HOME/results)",
    )
    p.add_argument(
        "--notify", metavar="URL",
        help="webhook that receives each defect opened and closed, HMAC-signed with the worker's "
        "VQA_WEBHOOK_SECRET (default: the worker's VQA_NOTIFY_URL, if any)",
    )
    p.add_argument("--windows-per-run", type=int, default=500, help=argparse.SUPPRESS)
    p.set_defaults(run=run_start)


def _add_list(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.add_argument("--limit", type=int, default=100, help="at most this many streams (default 100)")
    p.add_argument("--open-defects", action="store_true", help="only streams with a defect going on now")
    p.add_argument("--source", help="only streams of this source (as started)")
    p.add_argument("--state", help="only streams in this state: probing, running, completed, failed, stopped")
    p.add_argument("--defect-kind", help="only streams that had a defect of this kind (e.g. freeze)")
    p.add_argument("--query", help="a Temporal visibility query added to the others (AND)")
    p.set_defaults(run=partial(run_admin, list_command))
