"""A webhook receiver on 127.0.0.1 for the tests: records every POST, can be down for a while."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Receiver:
    """What arrived (headers, body) at `url`; the first `fail_first` POSTs are answered 503."""

    url: str = ""
    fail_first: int = 0
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def delivered(self) -> dict[str, list[dict[str, Any]]]:
        """The documents accepted, by notification id (a list: duplicates may arrive)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for _, body in self.requests:
            doc = json.loads(body)
            out.setdefault(doc["id"], []).append(doc)
        return out

    def ids(self) -> list[str]:
        """The notification ids accepted, in order, duplicates kept."""
        return [json.loads(body)["id"] for _, body in self.requests]


@contextmanager
def serve_webhook(*, fail_first: int = 0) -> Iterator[Receiver]:
    state = Receiver(fail_first=fail_first)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with state.lock:
                if state.refused < state.fail_first:
                    state.refused += 1
                    self.send_error(503, "down")
                    return
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
