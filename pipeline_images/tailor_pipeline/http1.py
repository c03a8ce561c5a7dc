"""A small HTTP/1.1 server on asyncio, for the scorer's few routes.

Why not aiohttp: a decision is about a hundred microseconds of CPU, and aiohttp's request
and response objects, router, middleware hooks and a task per request cost 55-60 us more
per request than this server on the scorer's core (`bench/scorer.py`'s floor, a fixed
answer: 98 against 37 us of core time at 3,000 req/s, 76 against 21 at 6,000). Here a
request is parsed by ``httptools`` (llhttp, Node's parser) straight into a small
:class:`Request`, the handler runs synchronously in the protocol callback (the scorer
never awaits while it ranks, so there is nothing to schedule) and the answer is written in
one call.

What it does: keep-alive and pipelining (answers in request order), ``Expect:
100-continue``, chunked request bodies, a limit on the head (431) and on the body (413,
from ``Content-Length`` before reading it, or as a chunked body grows), 400 for what does
not parse, each refusal followed by a lingering close (a client still uploading reads the
answer, not a reset), idle keep-alive connections closed after ``keepalive_s``, a request
that does not arrive whole within ``request_s`` answered 408, back-pressure (a client that
does not read its answers is not read from), and a graceful stop: stop listening, close
idle connections, answer what is in flight with ``Connection: close``. Its own refusals
are JSON, ``{"error": ...}``, like the scorer's. What it does not: TLS, HTTP/2, upgrades,
streaming answers; the scorer needs none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

import httptools

_log = logging.getLogger("tailor.http")

MAX_HEAD_BYTES = 64 * 1024
# How long a refused request's connection is still read (and dropped) before it is closed.
LINGER_SECONDS = 2.0


@dataclass(slots=True)
class Request:
    method: str
    path: str  # percent-decoded, without the query
    # Lower-cased names; a repeated header keeps its last value.
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[Request], Response]


def json_response(body: bytes, status: int = 200, *headers: tuple[str, str]) -> Response:
    return Response(status, body, "application/json", headers)


def error_response(status: int, message: str) -> Response:
    """What the server answers itself (413, 431, 400, 408, 500): ``{"error": message}``, as
    the scorer's own refusals."""
    return json_response(json.dumps({"error": message}).encode(), status)


class _Refused(Exception):
    """A request the server answers itself (too large, late) and then closes on."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


_REASONS = {s.value: s.phrase for s in http.HTTPStatus}


class _Clock:
    """The Date header, formatted once a second rather than once a request."""

    def __init__(self) -> None:
        self._second = 0
        self._date = b""

    def date(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._date = email.utils.formatdate(now, usegmt=True).encode()
        return self._date


@dataclass
class Limits:
    max_body_bytes: int
    keepalive_s: float = 75.0  # as nginx: longer than most clients keep an idle connection
    request_s: float = 30.0


class _Connection(asyncio.Protocol):
    def __init__(self, server: Server) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: dict[str, str] = {}
        self._head_bytes = 0
        self._body: list[bytes] = []
        self._body_bytes = 0
        self.active = 0.0  # loop time of the last request's end (or of the connection)
        self.receiving: float | None = None  # loop time a request began, until it is whole
        self.closing = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self.active = self._server.loop.time()
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._transport = None

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            refused = exc.__context__
            if isinstance(refused, _Refused):
                self._refuse(refused.status, str(refused))
            else:  # a bug of ours in a callback: the client is owed an answer all the same
                _log.error("HTTP callback failed", exc_info=refused or exc)
                self._refuse(500, "internal error")
        except httptools.HttpParserUpgrade:
            # The request before the upgrade was answered; this server speaks nothing else.
            self.close()
        except httptools.HttpParserError as exc:
            self._refuse(400, f"malformed request: {exc}")

    def pause_writing(self) -> None:
        # The client does not read its answers: stop reading its requests until it does.
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None and not self.closing:
            self._transport.resume_reading()

    # httptools callbacks

    def on_message_begin(self) -> None:
        self.receiving = self._server.loop.time()
        self._url = b""
        self._headers = {}
        self._head_bytes = 0
        self._body = []
        self._body_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._grow_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._grow_head(len(name) + len(value) + 4)
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        length = self._headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self._limits.max_body_bytes:
            raise _Refused(413, f"body over {self._limits.max_body_bytes} bytes")
        if self._headers.get("expect", "").lower() == "100-continue" and self._transport:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self._limits.max_body_bytes:
            raise _Refused(413, f"body over {self._limits.max_body_bytes} bytes")
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self.closing:
            return
        self.receiving = None
        request = Request(
            self._parser.get_method().decode("ascii", "replace"),
            unquote(httptools.parse_url(self._url).path.decode("latin-1")),
            self._headers,
            b"".join(self._body),
        )
        try:
            response = self._server.handler(request)
        except Exception:
            _log.exception("Handler failed for %s %s", request.method, request.path)
            response = error_response(500, "internal error")
        keep = self._parser.should_keep_alive() and not self._server.stopping
        self._write(response, keep)
        self.active = self._server.loop.time()
        if not keep:
            self.close()

    # ours

    @property
    def _limits(self) -> Limits:
        return self._server.limits

    def _grow_head(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > MAX_HEAD_BYTES:
            raise _Refused(431, f"request head over {MAX_HEAD_BYTES} bytes")

    def _write(self, response: Response, keep_alive: bool) -> None:
        if self._transport is None:
            return
        status = response.status
        head = [
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, "Unknown").encode()),
            b"Content-Type: %s\r\n" % response.content_type.encode(),
            b"Content-Length: %d\r\n" % len(response.body),
            b"Date: %s\r\n" % self._server.clock.date(),
        ]
        head.extend(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in response.headers)
        if not keep_alive:
            head.append(b"Connection: close\r\n")
        head.append(b"\r\n")
        head.append(response.body)
        self._transport.write(b"".join(head))

    def _refuse(self, status: int, message: str) -> None:
        """Answer and hang up without a reset: the client may still be sending (a body
        refused from its Content-Length). Closing with its bytes unread would reset the
        connection, and a client mid-upload would see a broken pipe, not this answer. So
        (a lingering close, as nginx and Apache do) say we are done writing, drop what
        still arrives, and close when the client does, or after ``LINGER_SECONDS``."""
        if self.closing:
            return
        self._write(error_response(status, message), keep_alive=False)
        self.closing = True
        self.receiving = None
        self.active = self._server.loop.time()
        transport = self._transport
        if transport is None:
            return
        if transport.can_write_eof():
            transport.write_eof()
        transport.resume_reading()
        self._server.loop.call_later(LINGER_SECONDS, self.close)

    def eof_received(self) -> bool:
        return False  # the client is done: close (after what we write is sent)

    def late(self) -> None:
        """The request did not arrive whole in time."""
        self._refuse(408, "request not received in time")

    def close(self) -> None:
        self.closing = True
        if self._transport is not None:
            self._transport.close()


@dataclass
class Server:
    handler: Handler
    limits: Limits
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop)
    clock: _Clock = field(default_factory=_Clock)
    connections: set[_Connection] = field(default_factory=set)
    stopping: bool = False
    _server: asyncio.Server | None = None
    _sweeper: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen; the port bound (``port`` 0: any free one)."""
        self._server = await self.loop.create_server(
            lambda: _Connection(self), host, port, reuse_address=True, backlog=1024
        )
        self._sweeper = self.loop.create_task(self._sweep())
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop listening, close idle connections, let requests in flight finish (each is
        answered with ``Connection: close``) for up to ``grace_s``, then drop the rest."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for connection in list(self.connections):
            if connection.receiving is None:
                connection.close()
        deadline = self.loop.time() + grace_s
        while self.connections and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        for connection in list(self.connections):
            connection.close()
        if self._server is not None:
            await self._server.wait_closed()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = self.loop.time()
            for connection in list(self.connections):
                if connection.receiving is not None:
                    if now - connection.receiving > self.limits.request_s:
                        connection.late()
                elif now - connection.active > self.limits.keepalive_s:
                    connection.close()


@contextlib.asynccontextmanager
async def serving(
    handler: Handler, limits: Limits, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """A running server for the block; its base URL (tests and benches)."""
    server = Server(handler, limits)
    bound = await server.start(host, port)
    try:
        yield f"http://{host}:{bound}"
    finally:
        await server.stop(grace_s=1.0)
