"""The listening socket of agentrun's HTTP server (the console's and the daemon's).

Bound here rather than by uvicorn so that a port in use is reported before anything
starts, and with ``IPPROTO_TCP`` given explicitly: asyncio turns Nagle's algorithm off
(``TCP_NODELAY``) only on connections whose socket says it is TCP, and a socket made as
``socket(family, SOCK_STREAM)`` says protocol 0. With Nagle on, a response written in two
pieces (the headers, then the body; a chunked body's last chunk) waited for the client's
delayed ACK: every request after the first on a keep-alive connection took 40-48 ms instead
of 3 (``python bench/console.py``). No framework is imported here.
"""

from __future__ import annotations

import socket

#: Connections the kernel queues before the server accepts them.
BACKLOG = 128


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (0: any free port) and listening.

    Raises:
        OSError: the address cannot be bound (in use, not this machine's); the socket is
            closed first.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock
