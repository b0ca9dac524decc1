"""A real HTTP reverse proxy on 127.0.0.1 in front of a store emulator or web server, whose outages a test
controls: answer every request with an error status (503 SlowDown, 500, 429, with or without Retry-After),
or reset every connection, from a chosen request on, for a number of failed answers or a number of seconds
measured by the proxy itself. Tests wait on its counters, never on sleeps.
"""

from __future__ import annotations

import http.client
import http.server
import socket
import struct
import threading
import time
from dataclasses import dataclass

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "te", "upgrade"}


@dataclass
class Outage:
    status: int | None = 503  # None: reset the connection instead of answering
    retry_after: str | None = None
    start_after: int = 0  # forwarded requests matching `method` before the outage begins
    method: str | None = None  # counted for start_after (None: any)
    failures: int | None = None  # the outage ends after this many failed answers ...
    seconds: float | None = None  # ... or this long after its first failed answer (None: until restore())
    only_method: str | None = None  # fail only this method (others pass through)


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.lock = threading.Lock()
        self.forwarded: list[str] = []  # "METHOD path" of requests passed to the upstream
        self.failed: list[str] = []  # "METHOD path" of requests answered with an error or reset
        self.outage: Outage | None = None
        self._matching = 0
        self._first_failure: float | None = None
        self.ended = threading.Event()
        # gate(method, path, headers) -> None to go on, or (status, body[, Retry-After]) to answer instead (a
        # store checking the credentials a request was signed with, a scripted series of errors)
        self.gate = None
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _error(self, line: str, status: int, payload: bytes, retry_after: str | None = None) -> None:
                with outer.lock:
                    outer.failed.append(line)
                self.send_response(status)
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                line = f"{self.command} {self.path}"
                fault = outer._fault_for(self.command)
                if fault is not None and fault.status is None:  # RST instead of an answer: ECONNRESET
                    with outer.lock:
                        outer.failed.append(line)
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return
                if fault is not None:
                    payload = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
                               b"<Message>Please reduce your request rate.</Message></Error>"
                               if fault.status == 503 else b"")
                    return self._error(line, fault.status, payload, fault.retry_after)
                refused = outer.gate(self.command, self.path, self.headers) if outer.gate is not None else None
                if refused is not None:
                    return self._error(line, *refused)
                with outer.lock:
                    outer.forwarded.append(line)
                conn = http.client.HTTPConnection(*outer.upstream, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                    if body or self.command in ("PUT", "POST"):
                        headers["Content-Length"] = str(len(body))
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in _HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = do_PATCH = _handle  # noqa: N815

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        # polled every 50 ms (not 0.5 s), so that close() returns at once
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def _fault_for(self, method: str) -> Outage | None:
        with self.lock:
            outage = self.outage
            if outage is None:
                return None
            if self._matching < outage.start_after:
                if outage.method is None or outage.method == method:
                    self._matching += 1
                return None
            if outage.only_method is not None and method != outage.only_method:
                return None
            now = time.monotonic()
            if self._first_failure is None:
                self._first_failure = now
            over = ((outage.failures is not None and len(self.failed) >= outage.failures)
                    or (outage.seconds is not None and now - self._first_failure >= outage.seconds))
            if over:
                self.outage = None
                self.ended.set()
                return None
            return outage

    def start(self, outage: Outage) -> None:
        with self.lock:
            self.outage, self._matching, self._first_failure = outage, 0, None
            self.failed.clear()
            self.ended.clear()

    def restore(self) -> None:
        with self.lock:
            self.outage = None
            self.ended.set()

    def count(self, method: str, *, failed: bool = False) -> int:
        with self.lock:
            return sum(1 for line in (self.failed if failed else self.forwarded) if line.startswith(method + " "))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
