"""How the server says no: one JSON shape, {"error": message, "status": code}, for every
refusal (400 invalid JSON, 413 too large, 422 wrong fields or values, 404/405, 503
timed out, 500), and a body-size limit applied before a body is read whole."""

from __future__ import annotations

import asyncio
import json
import re
import unicodedata
from collections.abc import Sequence
from typing import Any


class ClientError(Exception):
    """A request the server refuses with `status` and a message naming the problem."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def body(status: int, message: str, **extra) -> dict:
    return {"error": message, "status": status, **extra}


def validation_message(errors: Sequence[Any]) -> str:
    """Pydantic's validation errors as one message naming each wrong field."""
    problems = []
    for error in errors:
        location = _location(error.get("loc", ()))
        problems.append(
            f"{location}: {error.get('msg', 'invalid')}"
            if location
            else error.get("msg", "invalid")
        )
    return "; ".join(problems)


def _location(parts) -> str:
    """('body', 'text', 2) -> 'text[2]'."""
    text = ""
    for part in parts:
        if part == "body" and not text:
            continue
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def check_lines(lines: list[str], max_lines: int, max_chars: int) -> None:
    """ClientError (413) for too much text, (422) for a line no translation can come from:
    a control character (tab excepted) or a lone surrogate (invalid Unicode)."""
    if len(lines) > max_lines:
        raise ClientError(
            413,
            f"{len(lines)} lines is over this server's limit of {max_lines} "
            f"per request (--max-lines); send them in several requests",
        )
    total = sum(map(len, lines))
    if total > max_chars:
        raise ClientError(
            413,
            f"{total} characters is over this server's limit of {max_chars} "
            f"per request (--max-chars); send them in several requests",
        )
    for number, line in enumerate(lines):
        found = _UNTRANSLATABLE.search(line)
        if found:
            character, position = found.group(), found.start()
            kind = (
                "a lone surrogate (not valid Unicode)"
                if unicodedata.category(character) == "Cs"
                else "a control character"
            )
            raise ClientError(
                422,
                f"text[{number}] has {kind}, U+{ord(character):04X}, at "
                f"position {position}: send one line per item, without "
                f"line breaks or control characters (tab is allowed)",
            )


# Unicode's control characters (category Cc) but tab, and lone surrogates (Cs).
_UNTRANSLATABLE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff]")


def _replay(body: bytes, receive):
    """A `receive` that hands the app the body read already, then what comes after it."""
    replayed = False

    async def replay():
        nonlocal replayed
        if replayed:
            return await receive()  # (what comes after the body: a disconnect)
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class BodyLimit:
    """ASGI middleware: 413 for a body over `max_bytes`, by its Content-Length, or for a
    chunked body as soon as the bytes read pass the limit. A body within it is read here,
    whole, and handed on."""

    # Read (and drop) up to this much of a refused body, so that the client, still
    # sending, reads the 413 instead of a connection reset; past it, just close.
    DRAIN = 1 << 20

    def __init__(self, app, max_bytes: int, timeout: float = 10.0, stopped: list | None = None):
        """`stopped`: gets one item per request cut short by the server's stop."""
        self.app, self.max_bytes, self.timeout = app, max_bytes, timeout
        self.stopped = stopped if stopped is not None else []

    @staticmethod
    async def _drain(receive, budget: int = DRAIN) -> None:
        while budget > 0:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return
            budget -= len(message.get("body", b""))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracked(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._handle(scope, receive, tracked)
        except asyncio.CancelledError:  # the server's stop ran out of time for this request
            self.stopped.append(scope.get("path"))
            if not started:  # an answer in JSON, not the server's plain-text 500
                await self._answer(send, 503, "the server is stopping; retry elsewhere or later")

    async def _handle(self, scope, receive, send) -> None:
        length = dict(scope.get("headers", [])).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            if int(length) <= self.max_bytes + self.DRAIN:
                await self._drain(receive)
            return await self._refuse(send, int(length))
        chunks, size = [], 0
        while True:
            try:  # a client that stalls mid-body would hold its connection for ever
                message = await asyncio.wait_for(receive(), self.timeout)
            except TimeoutError:
                return await self._answer(
                    send,
                    408,
                    f"the body did not arrive within "
                    f"{self.timeout:g} s (--body-timeout); send it whole",
                )
            if message["type"] == "http.disconnect":
                return  # the client left mid-body: nothing to answer
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                if message.get("more_body", False):
                    await self._drain(receive, self.max_bytes + self.DRAIN - size)
                return await self._refuse(send, size)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _refuse(self, send, size: int) -> None:
        await self._answer(
            send,
            413,
            f"the body ({size} bytes or more) is over this server's "
            f"limit of {self.max_bytes} bytes; send fewer lines per request",
        )

    @staticmethod
    async def _answer(send, status: int, message: str) -> None:
        content = json.dumps(body(status, message)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(content)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})
