"""The HTTP server's listening socket: connections it accepts have Nagle's algorithm off."""

from __future__ import annotations

import asyncio
import socket

import pytest

from runner.web.listener import listening_socket


def test_accepted_connections_send_small_writes_at_once() -> None:
    """A response written in pieces must not wait for the client's delayed ACK (40 ms)."""
    seen: list[int] = []

    async def main() -> None:
        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conn = writer.get_extra_info("socket")
            seen.append(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(accepted, sock=listening_socket("127.0.0.1", 0))
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        writer.close()
        server.close()
        await server.wait_closed()

    asyncio.run(main())
    assert seen and seen[0] != 0


def test_a_port_in_use_is_an_os_error_and_the_socket_is_closed() -> None:
    first = listening_socket("127.0.0.1", 0)
    try:
        with pytest.raises(OSError, match="in use"):
            listening_socket("127.0.0.1", first.getsockname()[1])
    finally:
        first.close()
