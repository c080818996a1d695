"""The HTTP surface: POST /v1/translate, GET /v1/model, GET /health, the page at `/`,
and OpenAPI docs at /docs (Swagger UI served from the package's own assets, so the page
works offline). Built by `create_app` around an engine (engine.py); the routes read the
engine, batcher and limits from `request.app.state`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from importlib import resources

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException

from ..config import DecodeConfig, ServeLimits
from .batcher import Batcher
from .engine import Options
from .errors import BodyLimit, ClientError, body, check_lines, validation_message

logger = logging.getLogger(__name__)


class TranslateRequest(BaseModel):
    """Lines to translate, and how (the options `seq2seq-shared translate` has)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    text: list[str] = Field(description='One line per item; "" gives "".')
    beam_size: int = Field(
        DecodeConfig.beam_size, ge=1, description="1: greedy search (the fastest)."
    )
    length_penalty: float = Field(
        DecodeConfig.length_penalty,
        ge=0,
        le=10,
        allow_inf_nan=False,
        description="GNMT alpha; needs beam_size > 1.",
    )
    n_best: int = Field(
        DecodeConfig.n_best, ge=1, description="Hypotheses per line (<= beam_size)."
    )
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


router = APIRouter()
DOCS_ASSETS = "/docs-assets"  # Swagger UI's files, from the swagger-ui-bundle package


def create_app(engine, limits: ServeLimits = ServeLimits()) -> FastAPI:
    """The app around `engine` (engine.py): routes, error handlers, the body limit."""
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
        docs_url=None,
        redoc_url=None,
    )
    app.state.batcher, app.state.engine, app.state.limits = batcher, engine, limits
    app.add_exception_handler(HTTPException, _refused)
    app.add_exception_handler(ClientError, _client_error)
    app.add_exception_handler(Exception, _failed)
    app.include_router(router)
    _mount_docs_assets(app)
    app.state.stopped = []  # requests the server's stop cut short (answered 503)
    app.add_middleware(
        BodyLimit,
        max_bytes=limits.max_body_bytes,
        timeout=limits.body_timeout,
        stopped=app.state.stopped,
    )
    return app


def _mount_docs_assets(app: FastAPI) -> None:
    from starlette.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")


async def _refused(request: Request, error: Exception):
    assert isinstance(error, HTTPException)
    return JSONResponse(
        body(error.status_code, str(error.detail)),
        status_code=error.status_code,
        headers=error.headers,
    )


async def _failed(request: Request, error: Exception):
    logger.exception("unexpected error answering %s", request.url.path)
    return JSONResponse(
        body(500, f"internal error: {type(error).__name__}: {error}"), status_code=500
    )


async def _client_error(request: Request, error: Exception):
    assert isinstance(error, ClientError)
    return JSONResponse(
        body(error.status, error.message), status_code=error.status, headers=error.headers
    )


@router.post("/v1/translate", openapi_extra=_JSON_BODY)
async def translate(request: Request):
    """Translations of `text`, in order: {"translations": [{"text", ...}], "elapsed_ms"}."""
    started = time.perf_counter()
    asked, options = _read_request(request, await request.body())
    limits: ServeLimits = request.app.state.limits
    batcher: Batcher = request.app.state.batcher
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
            f"not translated within {limits.request_timeout:g} s (--request-timeout): the "
            f"server is busy; retry later or send fewer lines",
            {"Retry-After": "5"},
        )
    if work.exception() is not None:  # logged by the batcher; the server goes on
        return JSONResponse(body(500, f"translation failed: {work.exception()}"), status_code=500)
    elapsed_ms = round(1000 * (time.perf_counter() - started), 1)
    return JSONResponse({"translations": work.result(), "elapsed_ms": elapsed_ms})


def _read_request(request: Request, raw: bytes) -> tuple[TranslateRequest, Options]:
    """The request and its options, checked against the server's limits and load."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        # (A browser sends text/plain or a form cross-site without asking first; JSON
        # it must ask for, and this server grants no other site that.)
        raise ClientError(415, f"Content-Type must be application/json, not {kind or 'missing'}")
    limits: ServeLimits = request.app.state.limits
    asked = parse_request(raw)
    check_lines(asked.text, limits.max_lines, limits.max_chars)
    options = Options(
        asked.beam_size, asked.length_penalty, asked.n_best, asked.scores, asked.alignments
    )
    try:
        request.app.state.engine.check(options)
    except ValueError as error:
        raise ClientError(422, str(error)) from None
    pending = request.app.state.batcher.stats.pending_lines
    if pending + len(asked.text) > limits.max_pending_lines:
        raise ClientError(
            503,
            f"{pending} lines are waiting already (--max-pending-lines "
            f"{limits.max_pending_lines}): the server is busy; retry later",
            {"Retry-After": "5"},
        )
    return asked, options


@router.get("/v1/model")
async def model(request: Request):
    """What `seq2seq-shared info --json` says about the served model."""
    return JSONResponse(request.app.state.engine.info)


@router.get("/health")
async def health(request: Request):
    """200 {"status": "ok"} while the decoding thread runs; 503 if it has died."""
    batcher: Batcher = request.app.state.batcher
    alive = batcher.alive()
    return JSONResponse(
        {
            "status": "ok" if alive else "decoder stopped",
            **request.app.state.engine.describe(),
            "batching": batcher.stats.as_dict(),
        },
        status_code=200 if alive else 503,
    )


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page():
    return HTMLResponse(
        resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")
    )


@router.get("/docs", response_class=HTMLResponse, include_in_schema=False)
async def docs():
    """The API's Swagger UI, its scripts and styles from this server, not a CDN."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="seq2seq-shared API",
        swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
    )
