"""Start (or attach to) the monitoring workflow of one stream; inspect and stop streams.

    python starter.py SOURCE [--wait [--json]] [--dev] [--stream-id ID]
                             [--window-seconds S] [--parallel N] [--detectors a,b] [--set det.option=value]
                             [--group QUEUE=det,det]
                             [--results DIR|s3://bucket/prefix|none]

    python starter.py status ID [--json]    the stream's status (the workflow's `status` query)
    python starter.py list [--json]         the streams Temporal knows, newest first
    python starter.py stop ID               ask a stream's analysis to stop (status `stopped`)

`python starter.py start SOURCE ...` is the same as the SOURCE form; `vqa` (installed by
`pip install -e .`) is the same command. With no SOURCE, a demo clip with known defects is
generated and analysed. Exit status with --wait: 0 analysed (defects or not), 1 could not
be analysed, 2 invalid command line, 3 Temporal unreachable. The command is cli/ (cli/main.py).
"""

from __future__ import annotations

from cli.common import UsageError
from cli.main import main
from cli.parser import build_parser as _parser
from cli.render import format_status
from cli.request import build_request
from cli.start import start_or_attach

# What scripts and tests import from here.
__all__ = ["UsageError", "_parser", "build_request", "format_status", "main", "start_or_attach"]

if __name__ == "__main__":
    main()
