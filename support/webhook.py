"""A webhook receiver on 127.0.0.1 for the tests: records every POST, can be down for a while."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Receiver:
    """What arrived (headers, body) at `url`. The first `fail_first` POSTs, and the POSTs whose
    ordinal (1 = the first POST received) is in `refuse_posts`, are answered 503.

    `attempts` has every POST, refused or not: (time.monotonic() at arrival, its X-VQA-Event-Id, status).
    """

    url: str = ""
    fail_first: int = 0
    refuse_posts: frozenset[int] = frozenset()
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    refused: int = 0
    attempts: list[tuple[float, str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def delivered(self) -> dict[str, list[dict[str, Any]]]:
        """The documents accepted, by notification id (a list: duplicates may arrive)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for _, body in self.requests:
            doc = json.loads(body)
            out.setdefault(doc["id"], []).append(doc)
        return out

    def bodies(self) -> dict[str, list[bytes]]:
        """The bodies accepted, as sent, by notification id."""
        out: dict[str, list[bytes]] = {}
        for _, body in self.requests:
            out.setdefault(json.loads(body)["id"], []).append(body)
        return out

    def ids(self) -> list[str]:
        """The notification ids accepted, in order, duplicates kept."""
        return [json.loads(body)["id"] for _, body in self.requests]


@contextmanager
def serve_webhook(*, fail_first: int = 0, refuse_posts: frozenset[int] = frozenset()) -> Iterator[Receiver]:
    state = Receiver(fail_first=fail_first, refuse_posts=refuse_posts)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with state.lock:
                ordinal = len(state.attempts) + 1
                event_id = self.headers.get("X-VQA-Event-Id", "")
                if ordinal <= state.fail_first or ordinal in state.refuse_posts:
                    state.refused += 1
                    state.attempts.append((time.monotonic(), event_id, 503))
                    self.send_error(503, "down")
                    return
                state.attempts.append((time.monotonic(), event_id, 204))
                state.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
