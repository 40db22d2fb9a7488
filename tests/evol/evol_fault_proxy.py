"""A small HTTP proxy that sits in front of a real `vllm serve` and injects teacher failures.

vLLM cannot fail on demand, so this proxy does it deterministically: a request whose body
contains a rule's marker string gets that rule's fault for its first `times` occurrences, and
everything else is forwarded to the real server unchanged. Faults:

    http500    answer HTTP 500 with an error body
    timeout    hold the request for `delay_s` (past the client's timeout), then forward it
    malformed  answer 200 with a body that is not JSON
    no_choices answer 200 with JSON that lacks `choices`
    refuse     drop the connection unanswered and stop listening for `delay_s`, so that every
               connection attempt in that window is refused (the server "going away" mid-run)
    down       answer 503 every time until `heal()` is called (a fault that outlasts the retries)
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

FAULTS = ("http500", "timeout", "malformed", "no_choices", "refuse", "down")


@dataclass
class Rule:
    marker: str
    fault: str
    times: int = 1
    delay_s: float = 0.0

    def __post_init__(self) -> None:
        if self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}")


class FaultProxy:
    def __init__(self, upstream: str, rules: list[Rule], port: int) -> None:
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname, parts.port
        self.rules = rules
        self.port = port
        self.seen: Counter[str] = Counter()
        """Requests received per rule marker (faulted or not)."""
        self.injected: Counter[str] = Counter()
        """Faults injected per kind."""
        self.refused_window = False
        self.forwarded = 0
        self._healed = False
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._restarter: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "FaultProxy":
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._forward(b"")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                rule = proxy._take_fault(body)
                if rule is None:
                    self._forward(body)
                elif rule.fault == "http500":
                    self._reply(500, b'{"error": {"message": "injected internal error"}}')
                elif rule.fault == "down":
                    self._reply(503, b'{"error": {"message": "injected: server down"}}')
                elif rule.fault == "malformed":
                    self._reply(200, b"<html>this is not JSON</html>")
                elif rule.fault == "no_choices":
                    self._reply(200, b'{"object": "chat.completion", "usage": {}}')
                elif rule.fault == "timeout":
                    time.sleep(rule.delay_s)
                    try:
                        self._forward(body)
                    except OSError:
                        pass  # the client gave up long ago
                elif rule.fault == "refuse":
                    self.close_connection = True
                    proxy._refuse_for(rule.delay_s)

            def _reply(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _forward(self, body: bytes) -> None:
                conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=300)
                headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                conn.close()
                with proxy._lock:
                    proxy.forwarded += 1
                self._reply(response.status, payload)

        self._handler = Handler
        self._listen()
        return self

    def _listen(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def _take_fault(self, body: bytes) -> Rule | None:
        text = body.decode("utf-8", errors="replace")
        with self._lock:
            for rule in self.rules:
                if rule.marker in text:
                    self.seen[rule.marker] += 1
                    if rule.fault == "down" and not self._healed:
                        self.injected[rule.fault] += 1
                        return rule
                    if rule.fault != "down" and self.seen[rule.marker] <= rule.times:
                        self.injected[rule.fault] += 1
                        return rule
                    return None
        return None

    def _refuse_for(self, seconds: float) -> None:
        """Close the listening socket now and open it again after `seconds` (in the background)."""
        server = self._server

        def cycle() -> None:
            server.shutdown()
            server.server_close()
            self.refused_window = True
            time.sleep(seconds)
            self._listen()

        self._restarter = threading.Thread(target=cycle, daemon=True)
        self._restarter.start()

    def heal(self) -> None:
        with self._lock:
            self._healed = True

    def stop(self) -> None:
        if self._restarter is not None:
            self._restarter.join()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
