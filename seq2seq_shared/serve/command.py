"""`seq2seq-shared serve`: load the model, then open the port (loopback by default)."""

from __future__ import annotations

import logging
import math
import signal
import socket
from pathlib import Path

import click

from ..config import DecodeConfig, ServeLimits
from ..console import import_keras_quietly

logger = logging.getLogger(__name__)


_LIMITS = ServeLimits()


def _limit(name: str, kind, text: str):
    """A `serve` option for one field of `ServeLimits`, its default read from there."""
    return click.option(
        f"--{name.replace('_', '-')}",
        name,
        type=kind,
        default=getattr(_LIMITS, name),
        show_default=True,
        help=text,
    )


@click.command()
@click.option(
    "--model-dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (the server has no authentication: keep it on "
    "loopback unless a proxy guards it).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port (0: any free one, printed at start).",
)
@_limit("max_batch_lines", click.IntRange(1), "Lines decoded together, across requests.")
@_limit("max_wait_ms", click.FloatRange(0), "How long a batch waits for more lines.")
@_limit("max_lines", click.IntRange(1), "Lines per request (more: 413).")
@_limit("max_chars", click.IntRange(1), "Characters per request, all lines (more: 413).")
@_limit("max_beam_size", click.IntRange(1), "Largest beam_size a request may ask for.")
@_limit(
    "request_timeout",
    click.FloatRange(0, min_open=True),
    "Seconds a request may wait for its translations (then 503).",
)
@_limit(
    "max_pending_lines",
    click.IntRange(1),
    "Lines waiting or decoding; a request that would pass it: 503 at once.",
)
@_limit(
    "body_timeout",
    click.FloatRange(0, min_open=True),
    "Seconds a client may take to send a request's body (then 408).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=DecodeConfig.batch_size,
    show_default=True,
    help="Sentences per decoder call (a merged batch is sorted by length, then cut).",
)
@click.option(
    "--shortlist",
    is_flag=True,
    help="Decode with the release's vocabulary shortlist (`seq2seq-shared shortlist`).",
)
@click.option(
    "--access-log/--no-access-log", default=False, show_default=True, help="Log every request."
)
def serve(
    model_dir: Path,
    host: str,
    port: int,
    batch_size: int,
    shortlist: bool,
    access_log: bool,
    **limits,
) -> None:
    """Serve a model over HTTP: POST /v1/translate, GET /v1/model, GET /health, a page
    to try it at /, API docs at /docs. SIGTERM or Ctrl-C: stop accepting, finish the
    requests in flight (at most --body-timeout + --request-timeout + 5 s; any still
    running then get a JSON 503), exit 0. Needs the serve extra: pip install "seq2seq-shared[serve]"."""
    try:
        import fastapi  # noqa: F401
        import swagger_ui_bundle  # noqa: F401
        import uvicorn
    except ImportError as error:
        raise click.ClickException(
            f"serve needs the serve extra ({error.name} is missing): "
            f'pip install "seq2seq-shared[serve]"'
        ) from None
    from ..runtime import is_release

    if not is_release(model_dir):  # (a release is served with NumPy alone)
        import_keras_quietly()
    from .app import create_app
    from .engine import Engine

    settings = ServeLimits(**limits)
    engine = Engine(model_dir, batch_size, settings.max_beam_size, shortlist)
    engine.warm_up()
    app = create_app(engine, settings)
    listener = _listen(host, port)  # only now: the model is loaded and compiled
    bound_host, bound_port = listener.getsockname()[:2]
    if host not in ("127.0.0.1", "::1", "localhost"):
        logger.warning("listening on %s: anyone who can reach it can use this server", host)
    click.echo(
        f"serving {model_dir} on http://{bound_host}:{bound_port}/ (Ctrl-C to stop)", err=True
    )
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=access_log,
        timeout_graceful_shutdown=grace_seconds(settings),
    )
    _run(uvicorn.Server(config), listener, app.state.stopped)


def grace_seconds(settings: ServeLimits) -> int:
    """How long a stop waits for the requests in flight: the longest a request may take
    (its body, then its translations), and 5 s more. Those still running then get 503."""
    return math.ceil(settings.body_timeout + settings.request_timeout + 5)


def _run(server, listener: socket.socket, stopped: list) -> None:
    """Serve until SIGTERM or Ctrl-C; exit 0 after a graceful stop."""
    # uvicorn stops gracefully on SIGTERM/SIGINT, then raises the signal again for the
    # handler that was there before it: this one ignores it, so a graceful stop exits 0.
    saved = {
        number: signal.signal(number, lambda *_: None) for number in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        server.run(sockets=[listener])
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)
    if not server.started:
        raise click.ClickException("the server did not start (see the messages above)")
    if stopped:
        click.echo(
            f"stopped: {len(stopped)} request(s) still running at the end of the grace "
            f"period were answered 503",
            err=True,
        )
    else:
        click.echo("stopped: every request in flight was answered", err=True)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {error.strerror}; pass another --port or --host"
        ) from None
    listener.listen(2048)
    return listener
