"""A loopback HTTP proxy in front of the real kube-apiserver that answers chosen requests with errors.

autotune talks plain HTTP to the proxy; the proxy forwards over TLS to the apiserver and streams
responses back (watches included). ``inject`` makes the next matching requests fail with a
Kubernetes ``Status`` body (409/429/500/403...), so retry behaviour is tested against real traffic.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection", "host"}


@dataclass
class Fault:
    status: int
    count: int  # how many matching requests fail
    methods: frozenset[str] = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
    path_contains: str = "dynamographdeployments"
    retry_after: int | None = None
    hit: int = 0


@dataclass
class FaultProxy:
    upstream_port: int
    ca_file: Path
    port: int = 0
    faults: list[Fault] = field(default_factory=list)
    log: list[tuple[str, str, int]] = field(default_factory=list)  # (method, path, status) as answered
    cut_watches_after_s: float | None = None  # drop watch streams mid-flight (no terminating chunk)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def inject(
        self,
        status: int,
        count: int,
        *,
        methods: set[str] | None = None,
        path_contains: str = "dynamographdeployments",
        retry_after: int | None = None,
    ) -> Fault:
        f = Fault(status, count, frozenset(methods) if methods else Fault.methods, path_contains, retry_after)
        with self._lock:
            self.faults.append(f)
        return f

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.log.clear()

    def _take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.hit < f.count and method in f.methods and f.path_contains in path:
                    f.hit += 1
                    return f
        return None

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.log.append((method, path, status))

    def start(self) -> FaultProxy:
        proxy = self
        ctx = ssl.create_default_context(cafile=str(self.ca_file))

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                fault = proxy._take(self.command, self.path)
                if fault is not None:
                    blob = json.dumps(
                        {
                            "kind": "Status",
                            "apiVersion": "v1",
                            "status": "Failure",
                            "message": f"injected {fault.status}",
                            "reason": "Injected",
                            "code": fault.status,
                        }
                    ).encode()
                    proxy._record(self.command, self.path, fault.status)  # before answering: no race with asserts
                    self.send_response(fault.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(blob)))
                    if fault.retry_after is not None:
                        self.send_header("Retry-After", str(fault.retry_after))
                    self.end_headers()
                    self.wfile.write(blob)
                    return
                conn = http.client.HTTPSConnection("127.0.0.1", proxy.upstream_port, context=ctx, timeout=120)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    proxy._record(self.command, self.path, resp.status)
                    self.send_response(resp.status)
                    for k, v in resp.getheaders():
                        if k.lower() not in _HOP and k.lower() != "content-length":
                            self.send_header(k, v)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    cut = proxy.cut_watches_after_s if "watch=true" in self.path else None
                    if cut is not None and conn.sock is not None:
                        conn.sock.settimeout(cut)
                    while True:  # re-chunk so watch events reach the client as they happen
                        try:
                            chunk = resp.read1(65536)
                        except TimeoutError:
                            chunk = None
                        if chunk is None:  # lost watch: close without the final chunk
                            self.close_connection = True
                            self.connection.shutdown(2)
                            return
                        if not chunk:
                            break
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True
                finally:
                    conn.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True, name="fault-proxy").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
