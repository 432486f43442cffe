"""One logging setup for every twitch-bi process: JSON lines off a terminal, console on one."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

import structlog
from structlog.tracebacks import ExceptionDictTransformer

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_REDACTED = "***"

# Third-party loggers that talk at info about every request or file; we log one line per
# unit of work ourselves, so they only get a say from warning up.
_CHATTY = ("dlt", "urllib3", "watchdog", "filelock", "fsspec", "asyncio")


def register_secret(value: str | None) -> None:
    """Redact this value wherever it would appear in a log line from now on.

    Also the forms it takes on the way out: URL-encoded (a form body), and for a URL
    (a healthcheck ping URL) without its trailing slash and its path alone, which is the
    part that works as a key and what an HTTP error message quotes.
    """
    if not value or len(value) < 4:
        return
    forms = {value, quote(value, safe=""), quote_plus(value)}
    parts = urlsplit(value)
    if parts.scheme in ("http", "https") and parts.netloc:
        forms.add(value.rstrip("/"))
        path = parts.path.strip("/")
        if len(path) >= 16:
            forms.add(path)
    with _secrets_lock:
        _secrets.update(form for form in forms if len(form) >= 4)


def redact(text: str) -> str:
    """Replace every registered secret inside the text."""
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, _REDACTED)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(item) for item in value]
    return value


def _redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    if not _secrets:
        return event_dict
    return {key: _redact_value(value) for key, value in event_dict.items()}


def _add_service(service: str) -> structlog.types.Processor:
    def add_service(
        _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        event_dict.setdefault("service", service)
        return event_dict

    return add_service


def _use_console(log_format: str | None) -> bool:
    if log_format:
        return log_format.lower() == "console"
    return sys.stdout.isatty()


def configure_logging(
    service: str,
    *,
    level: str = "info",
    log_format: str | None = None,
    secrets: Iterable[str | None] = (),
) -> None:
    """Send structlog and stdlib logging (dbt, dlt, watchdog) through one renderer on stdout."""
    for secret in secrets:
        register_secret(secret)

    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        _add_service(service),
    ]
    # Tracebacks are rendered before secrets are redacted, and without local variables:
    # structlog and rich show locals by default, cut to 80 characters, and a secret cut in
    # half is no longer recognised.
    renderer: structlog.types.Processor
    tracebacks: list[structlog.types.Processor]
    if _use_console(log_format):
        renderer = structlog.dev.ConsoleRenderer()
        tracebacks = [structlog.processors.format_exc_info]
    else:
        renderer = structlog.processors.JSONRenderer(ensure_ascii=False)
        tracebacks = [
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))
        ]

    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *tracebacks,
            _redact_secrets,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _CHATTY:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    # dlt installs its own handler on its logger; ours is the only one we want.
    logging.getLogger("dlt").handlers[:] = []
    logging.getLogger("dlt").propagate = True
