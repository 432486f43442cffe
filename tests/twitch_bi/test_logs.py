"""Logging: secrets are redacted in every form they take, tracebacks included."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from urllib.parse import quote_plus

import pytest
import structlog

from twitch_bi.logs import configure_logging, redact, register_secret


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state; put it back for the other tests."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def test_a_secret_is_redacted_also_url_encoded() -> None:
    secret = "p@ss w0rd/with&odd+chars"
    register_secret(secret)

    text = redact(f"plain {secret} form client_secret={quote_plus(secret)}")

    assert text == "plain *** form client_secret=***"


def test_a_ping_url_is_redacted_with_or_without_slash_and_by_its_path() -> None:
    register_secret("https://hc-ping.com/0b5e1f0c-5f4e-4a51-9a1f-3b9c2d7e8f10/")

    text = redact(
        "https://hc-ping.com/0b5e1f0c-5f4e-4a51-9a1f-3b9c2d7e8f10/fail and "
        "Max retries exceeded with url: /0b5e1f0c-5f4e-4a51-9a1f-3b9c2d7e8f10/start"
    )

    assert "0b5e1f0c" not in text
    assert text == "***fail and Max retries exceeded with url: /***/start"


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("log_format", ["json", "console"])
def test_tracebacks_show_no_local_variables_and_are_redacted(
    capsys: pytest.CaptureFixture[str], log_format: str
) -> None:
    secret = "tr4ceb4ck-secret-value"
    configure_logging("test", log_format=log_format, secrets=[secret])
    log = structlog.get_logger("test_logs")

    def fails(credential: str) -> None:
        local_copy = credential[:10]  # half a secret: redaction could not see it
        raise RuntimeError(f"refused {credential} ({len(local_copy)})")

    try:
        fails(secret)
    except RuntimeError:
        log.exception("crawl_failed")

    out = capsys.readouterr().out
    assert "crawl_failed" in out and "refused ***" in out
    assert secret not in out and secret[:10] not in out
    if log_format == "json":
        frames = json.loads(out)["exception"][0]["frames"]
        assert all("locals" not in frame for frame in frames)
