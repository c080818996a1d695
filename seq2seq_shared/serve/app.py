"""The HTTP surface: POST /v1/translate, GET /v1/model, GET /health, the page at `/`,
and OpenAPI docs at /docs. Built by `create_app` around an engine (engine.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException

from .batcher import Batcher
from .engine import Options
from .errors import BodyLimit, ClientError, body, check_lines, validation_message

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    max_lines: int = 256  # lines per request
    max_chars: int = 50_000  # characters per request, all lines together
    max_batch_lines: int = 64  # lines decoded together, across requests
    max_wait_ms: float = 5.0  # how long a batch waits for more lines
    request_timeout: float = 60.0  # seconds a request may wait for its translations
    max_pending_lines: int = 4096  # lines waiting or decoding; more: 503 at once

    @property
    def max_body_bytes(self) -> int:
        """Room for max_chars characters JSON-escaped (up to 12 bytes: a surrogate pair
        of \\uXXXX) and the framing."""
        return 12 * self.max_chars + 8 * self.max_lines + 4096


class TranslateRequest(BaseModel):
    """Lines to translate, and how (the options `seq2seq-shared translate` has)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    text: list[str] = Field(description='One line per item; "" gives "".')
    beam_size: int = Field(1, ge=1, description="1: greedy search (the fastest).")
    length_penalty: float = Field(
        0.0, ge=0, le=10, allow_inf_nan=False, description="GNMT alpha; needs beam_size > 1."
    )
    n_best: int = Field(1, ge=1, description="Hypotheses per line (<= beam_size).")
    scores: bool = Field(False, description="Add each translation's log-probability.")
    alignments: bool = Field(False, description="Add each line's attention matrix.")


_JSON_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": TranslateRequest.model_json_schema()}},
    }
}


def parse_request(raw: bytes) -> TranslateRequest:
    """The body as a TranslateRequest, or ClientError: 400 if it is not UTF-8 JSON, 422 if
    its fields are wrong."""
    try:
        document = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ClientError(
            400,
            f"the body is not UTF-8 (byte {error.start} is 0x"
            f"{raw[error.start]:02x}); send UTF-8 JSON",
        ) from None
    except json.JSONDecodeError as error:
        raise ClientError(
            400,
            f"the body is not valid JSON ({error.msg} at line {error.lineno}"
            f", column {error.colno}); send JSON such as "
            f'{{"text": ["a line"]}}',
        ) from None
    except (RecursionError, ValueError) as error:  # (ValueError: an integer of 4,300+ digits)
        if not isinstance(error, RecursionError):
            raise ClientError(400, f"the body's JSON cannot be read: {error}") from None
        raise ClientError(
            400, 'the body\'s JSON is nested too deeply; send {"text": ["a line", ...]}'
        ) from None
    if not isinstance(document, dict):
        raise ClientError(
            422,
            f"the body is a JSON {type(document).__name__}, not an object; "
            f'send {{"text": ["a line", ...]}}',
        )
    try:
        return TranslateRequest.model_validate(document)
    except ValidationError as error:
        raise ClientError(422, validation_message(error.errors())) from None


async def _disconnect(request: Request) -> None:
    """Returns when the client has gone (after the body: uvicorn reports the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def create_app(engine, limits: Limits = Limits()) -> FastAPI:
    batcher = Batcher(engine.translate, limits.max_batch_lines, limits.max_wait_ms)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await asyncio.to_thread(batcher.stop)  # what is queued is decoded first

    app = FastAPI(
        title="seq2seq-shared",
        lifespan=lifespan,
        description="Translation with one LSTM shared by encoder and decoder.",
    )
    app.state.batcher, app.state.engine = batcher, engine

    @app.exception_handler(HTTPException)
    async def refused(request: Request, error: HTTPException):
        return JSONResponse(
            body(error.status_code, str(error.detail)),
            status_code=error.status_code,
            headers=error.headers,
        )

    @app.exception_handler(Exception)
    async def failed(request: Request, error: Exception):
        logger.exception("unexpected error answering %s", request.url.path)
        return JSONResponse(
            body(500, f"internal error: {type(error).__name__}: {error}"), status_code=500
        )

    @app.exception_handler(ClientError)
    async def client_error(request: Request, error: ClientError):
        return JSONResponse(
            body(error.status, error.message), status_code=error.status, headers=error.headers
        )

    @app.post("/v1/translate", openapi_extra=_JSON_BODY)
    async def translate(request: Request):
        """Translations of `text`, in order: {"translations": [{"text", ...}], "elapsed_ms"}."""
        started = time.perf_counter()
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            # (A browser sends text/plain or a form cross-site without asking first; JSON
            # it must ask for, and this server grants no other site that.)
            raise ClientError(
                415, f"Content-Type must be application/json, not {kind or 'missing'}"
            )
        asked = parse_request(await request.body())
        check_lines(asked.text, limits.max_lines, limits.max_chars)
        options = Options(
            asked.beam_size, asked.length_penalty, asked.n_best, asked.scores, asked.alignments
        )
        try:
            engine.check(options)
        except ValueError as error:
            raise ClientError(422, str(error)) from None
        if batcher.stats.pending_lines + len(asked.text) > limits.max_pending_lines:
            raise ClientError(
                503,
                f"{batcher.stats.pending_lines} lines are waiting already "
                f"(--max-pending-lines {limits.max_pending_lines}): the "
                f"server is busy; retry later",
                {"Retry-After": "5"},
            )
        work = asyncio.ensure_future(batcher.translate(asked.text, options))
        gone = asyncio.ensure_future(_disconnect(request))
        done, _ = await asyncio.wait(
            {work, gone}, timeout=limits.request_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        gone.cancel()
        if work not in done:
            work.cancel()  # its lines not yet decoding are dropped
            with contextlib.suppress(asyncio.CancelledError):
                await work
            if gone in done:
                return JSONResponse(body(499, "the client went away"), status_code=499)
            raise ClientError(
                503,
                f"not translated within {limits.request_timeout:g} s "
                f"(--request-timeout): the server is busy; retry later or "
                f"send fewer lines",
                {"Retry-After": "5"},
            )
        if work.exception() is not None:  # logged by the batcher; the server goes on
            return JSONResponse(
                body(500, f"translation failed: {work.exception()}"), status_code=500
            )
        return JSONResponse(
            {
                "translations": work.result(),
                "elapsed_ms": round(1000 * (time.perf_counter() - started), 1),
            }
        )

    @app.get("/v1/model")
    async def model():
        """What `seq2seq-shared info --json` says about the served model."""
        return JSONResponse(engine.info)

    @app.get("/health")
    async def health():
        """200 {"status": "ok"} while the decoding thread runs; 503 if it has died."""
        alive = batcher.alive()
        return JSONResponse(
            {
                "status": "ok" if alive else "decoder stopped",
                **engine.describe(),
                "batching": batcher.stats.as_dict(),
            },
            status_code=200 if alive else 503,
        )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(
            resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")
        )

    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    return app
