"""A small OpenAI-compatible chat-completions HTTP server on loopback.

It hosts a *backend*: a callable that takes the decoded request body of
``POST /v1/chat/completions`` and returns the response body, or raises
:class:`BackendHTTPError` to answer with an error status. Two backends use it:

- the embedded local model (:mod:`runner.models.local`), so litellm reaches it through its
  ``openai/`` provider over real HTTP, exactly as it reaches a hosted provider;
- the fake server of :mod:`runner.testing`, which scripts replies, errors and delays.

Built on the standard library's ``ThreadingHTTPServer``; it binds ``127.0.0.1`` on a free
port and runs in a daemon thread until :meth:`OpenAIServer.stop`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Backend = Callable[[dict[str, Any]], dict[str, Any]]

#: Largest request body accepted, in bytes.
MAX_REQUEST_BYTES = 32 * 1024 * 1024


class BackendHTTPError(Exception):
    """Raised by a backend to answer with ``status`` and an OpenAI-style error body.

    ``headers`` are added to the response (for example ``Retry-After``).
    """

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes; with Nagle's algorithm on, the body waited for
    # the client's delayed ACK of the headers, about 40 ms on every response.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default per-request stderr log."""

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        """``GET /v1/models``: the one model this server serves."""
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": self.server.model_name}]})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        """``POST /v1/chat/completions``: hand the request to the backend."""
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BYTES:
            self._send(413, {"error": {"message": "request too large", "type": "invalid_request"}})
            return
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError as error:
            self._send(400, {"error": {"message": f"bad JSON: {error}", "type": "invalid_request"}})
            return
        try:
            response = self.server.backend(request)
        except BackendHTTPError as error:
            body = {
                "error": {"message": error.message, "type": "backend_error", "code": error.status}
            }
            self._send(error.status, body, error.headers)
            return
        except Exception as error:  # a backend bug: answer 500, keep serving
            self._send(
                500,
                {"error": {"message": f"{type(error).__name__}: {error}", "type": "server_error"}},
            )
            return
        self._send(200, response)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    backend: Backend
    model_name: str


class OpenAIServer:
    """Serve ``backend`` at ``http://127.0.0.1:PORT/v1`` in a background thread.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, backend: Backend, model_name: str = "model") -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.backend = backend
        self._server.model_name = model_name
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The loopback port the server listens on."""
        return int(self._server.server_address[1])

    @property
    def api_base(self) -> str:
        """Base URL to give an OpenAI client: ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> OpenAIServer:
        """Start serving in a daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, name="openai-server", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
