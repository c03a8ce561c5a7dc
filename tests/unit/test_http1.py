"""The scorer's HTTP/1.1 server, byte for byte over a real loopback socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from tailor_pipeline import http1

LIMITS = http1.Limits(max_body_bytes=1000, keepalive_s=60.0, request_s=30.0)


def echo(request: http1.Request) -> http1.Response:
    if request.path == "/boom":
        raise RuntimeError("a bug in a handler")
    said = f"{request.method} {request.path} {request.headers.get('x-tag', '-')} ".encode()
    return http1.Response(200, said + request.body, headers=(("X-Seen", "yes"),))


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


def exchange(
    talk: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[object]],
    limits: http1.Limits = LIMITS,
) -> object:
    async def run() -> object:
        async with http1.serving(echo, limits) as base:
            host, port = base.removeprefix("http://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            try:
                return await talk(reader, writer)
            finally:
                writer.close()

    return asyncio.run(run())


def test_a_keep_alive_connection_answers_pipelined_requests_in_order() -> None:
    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> object:
        writer.write(
            b"POST /a%20b?q=1 HTTP/1.1\r\nHost: x\r\nX-Tag: one\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        return [await read_answer(reader), await read_answer(reader)]

    (s1, h1, b1), (s2, _, b2) = exchange(talk)  # type: ignore[misc]
    assert (s1, b1) == (200, b"POST /a b one abc")
    assert (h1["x-seen"], "connection" in h1, "date" in h1) == ("yes", False, True)
    assert (s2, b2) == (200, b"GET /second - ")


def test_a_chunked_body_is_read_whole() -> None:
    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> object:
        writer.write(
            b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        )
        return await read_answer(reader)

    status, _, body = exchange(talk)  # type: ignore[misc]
    assert (status, body) == (200, b"POST /c - abcde")


def test_expect_100_continue_is_answered_before_the_body_is_sent() -> None:
    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> object:
        writer.write(
            b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.write(b"hi")
        return interim, await read_answer(reader)

    interim, (status, _, body) = exchange(talk)  # type: ignore[misc]
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert (status, body) == (200, b"POST /e - hi")


def test_a_body_over_the_limit_is_refused_before_it_is_read() -> None:
    async def declared(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> object:
        writer.write(b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        answer = await read_answer(reader)
        return answer, await reader.read()  # then the server closes the connection

    (status, headers, body), rest = exchange(declared)  # type: ignore[misc]
    assert (status, json.loads(body)) == (413, {"error": "body over 1000 bytes"})
    assert (headers["connection"], rest) == ("close", b"")

    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> object:
        writer.write(b"POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(3):
            writer.write(b"190\r\n" + b"x" * 400 + b"\r\n")
        return await read_answer(reader)

    assert exchange(chunked)[0] == 413  # type: ignore[index]


def test_a_client_still_sending_a_refused_body_reads_the_refusal() -> None:
    """The server answers 413 before the body, then reads and drops what the client still
    sends until it stops: closing at once would reset the connection under a client
    mid-upload, which then sees a broken pipe instead of the answer."""

    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> object:
        body = b"x" * (3 << 20)
        writer.write(b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        await asyncio.sleep(0.1)  # the refusal is on its way before the body
        writer.write(body)
        await writer.drain()
        writer.write_eof()
        return await read_answer(reader)

    assert exchange(talk)[0] == 413  # type: ignore[index]


def test_a_head_over_the_limit_and_garbage_are_refused() -> None:
    async def huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> object:
        writer.write(b"GET / HTTP/1.1\r\n" + b"X-Pad: " + b"p" * (70 * 1024) + b"\r\n\r\n")
        return await read_answer(reader)

    assert exchange(huge)[0] == 431  # type: ignore[index]

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> object:
        writer.write(b"\x16\x03\x01 this is TLS, not HTTP\r\n\r\n")
        return await read_answer(reader)

    status, headers, _ = exchange(garbage)  # type: ignore[misc]
    assert (status, headers["connection"]) == (400, "close")


def test_a_failing_handler_is_a_500_and_the_connection_goes_on() -> None:
    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> object:
        writer.write(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n")
        return [(await read_answer(reader))[0], (await read_answer(reader))[2]]

    assert exchange(talk) == [500, b"GET /after - "]


def test_connection_close_and_http_1_0_close_after_the_answer() -> None:
    for request in (
        b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /x HTTP/1.0\r\n\r\n",
    ):

        async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> object:
            writer.write(request)  # noqa: B023 (awaited within the iteration)
            answer = await read_answer(reader)
            return answer[0], answer[1]["connection"], await reader.read()

        assert exchange(talk) == (200, "close", b"")


def test_idle_and_slow_connections_are_closed() -> None:
    quick = http1.Limits(max_body_bytes=1000, keepalive_s=0.2, request_s=0.2)

    async def idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> object:
        writer.write(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        await read_answer(reader)
        return await asyncio.wait_for(reader.read(), 5)  # EOF: the server closed it

    assert exchange(idle, quick) == b""

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> object:
        writer.write(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        return await read_answer(reader)

    assert exchange(slow, quick)[0] == 408  # type: ignore[index]


def test_stopping_closes_idle_connections_and_finishes_one_in_flight() -> None:
    async def run() -> tuple[bytes, tuple[int, dict[str, str], bytes]]:
        server = http1.Server(echo, LIMITS)
        port = await server.start("127.0.0.1", 0)
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
        busy_reader, busy_writer = await asyncio.open_connection("127.0.0.1", port)
        busy_writer.write(b"POST /late HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
        await asyncio.sleep(0.1)  # both connections are known to the server
        stopping = asyncio.create_task(server.stop(grace_s=5.0))
        closed = await asyncio.wait_for(idle_reader.read(), 5)
        busy_writer.write(b"cd")
        answer = await read_answer(busy_reader)
        await stopping
        for writer in (idle_writer, busy_writer):
            writer.close()
        return closed, answer

    closed, (status, headers, body) = asyncio.run(run())
    assert closed == b""
    assert (status, headers["connection"], body) == (200, "close", b"POST /late - abcd")
