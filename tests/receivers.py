"""Real receivers for tests of outbound traffic: SMTP (aiosmtpd), HTTP, a hang, a hello page."""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.test_daemon import free_port


class HttpReceiver:
    """An HTTP server on loopback that answers 200 to every POST and keeps what came."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                received.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body.decode()}
                )
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def json_bodies(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.requests if r["path"] == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hello from {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def hello_server() -> Iterator[int]:
    """An HTTP server on loopback answering every GET with 200 and ``hello from PATH``.

    Yields:
        Its port on 127.0.0.1; the server is shut down and its thread joined on exit.
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class HangingReceiver:
    """Accepts connections and never answers (a receiver that hangs)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.stopped = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.stopped = True
        # shutdown() wakes the accept() under way (close() alone leaves the port listening
        # while the thread is blocked in it, and a connection accepted then is never closed).
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join()
        for conn in self.held:
            conn.close()


class SmtpReceiver:
    """aiosmtpd's SMTP server on a free loopback port; ``messages`` as parsed emails."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[email.message.EmailMessage] = []
        received = self.messages

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                content = envelope.original_content or envelope.content
                received.append(
                    email.message_from_bytes(content, policy=email.policy.default)  # type: ignore[arg-type]
                )
                return "250 Message accepted for delivery"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def body(self, index: int = 0) -> str:
        message = self.messages[index]
        part = message.get_body(preferencelist=("plain", "html"))
        assert part is not None
        return str(part.get_content())

    def close(self) -> None:
        self.controller.stop()


def down_port() -> int:
    """A loopback port nothing listens on (a receiver that is down)."""
    return free_port()
