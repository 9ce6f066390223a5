"""A throw-away HTTP server whose answer does not end: a service gone wrong, or a URL pointing at
something that streams. It counts what it sent, so a test can tell that its client stopped
reading rather than taking all it was given."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.support.services import serving

PIECE = 64 * 1024


@dataclass
class Flood:
    """What the server sent, one entry per answer once it is over."""

    url: str = ""
    sent: list[int] = field(default_factory=list)  # body bytes written
    cut_off: list[bool] = field(default_factory=list)  # the client closed before the end
    _over: threading.Condition = field(default_factory=threading.Condition)

    def answers(self, count: int, timeout_s: float = 30.0) -> list[bool]:
        """``cut_off`` once ``count`` answers are over (a closed connection is noticed at the
        server's next write)."""
        with self._over:
            self._over.wait_for(lambda: len(self.cut_off) >= count, timeout=timeout_s)
            return list(self.cut_off)

    def _record(self, sent: int, cut_off: bool) -> None:
        with self._over:
            self.sent.append(sent)
            self.cut_off.append(cut_off)
            self._over.notify_all()


@contextmanager
def flooding(
    *, start: bytes = b"", cap: int, piece: bytes = b" " * PIECE, every_s: float = 0.0
) -> Iterator[Flood]:
    """A server answering every GET and POST with 200 and a chunked body: ``start``, then
    ``piece`` after ``piece`` (every ``every_s`` seconds) until ``cap`` bytes are sent or the
    client goes away. The default pieces are JSON whitespace: a valid answer's beginning, its
    end never coming."""
    flood = Flood()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # chunked transfer encoding

        def do_GET(self) -> None:
            self._flood()

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._flood()

        def _flood(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            sent, chunk = 0, start or piece
            try:
                while sent < cap:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                    sent += len(chunk)
                    chunk = piece
                    if every_s:
                        time.sleep(every_s)
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except OSError:  # the client closed the connection: it stopped reading
                flood._record(sent, True)
                return
            flood._record(sent, False)

        def log_message(self, format: str, *args: Any) -> None:
            return

    with serving(Handler) as url:
        flood.url = url
        yield flood
